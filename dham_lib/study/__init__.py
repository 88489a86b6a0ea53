"""Running the experiments: cells, sweeps, results tables, checkpoints, the command line."""
