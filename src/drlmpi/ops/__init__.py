"""Pure tensor math shared by algorithms (no MPI, no state)."""
