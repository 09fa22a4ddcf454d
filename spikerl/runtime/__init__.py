"""The process runtime: device choice, distributed ranks and collectives, mixed precision,
checkpoint files, stop signals and jobs a scheduler runs (submitit's preemption and requeue, SLURM's
ranks). Imports nothing else of SpikeRL but its error base (spikerl.errors, a leaf)."""
