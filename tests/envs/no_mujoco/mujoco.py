"""On PYTHONPATH first, this hides the installed mujoco package: `import mujoco` fails as where it is missing."""

raise ImportError("No module named 'mujoco' (hidden by tests/envs/no_mujoco)")
