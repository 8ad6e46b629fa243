"""Thin communication helpers, named after the MPI pattern they use."""
