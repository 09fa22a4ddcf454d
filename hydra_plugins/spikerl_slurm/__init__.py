"""SpikeRL's SLURM launcher (hydra/launcher=slurm), in the namespace where Hydra looks for plugins."""
