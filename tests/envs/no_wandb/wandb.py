"""On PYTHONPATH first, this hides the installed wandb package: `import wandb` fails as where it is missing."""

raise ImportError("No module named 'wandb' (hidden by tests/envs/no_wandb)")
