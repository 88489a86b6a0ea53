"""Running the experiments: runs and their records, sweeps, tables, checkpoints, the CLI."""
