"""SpikeRL: population-coded spiking actors trained with off-policy RL (TD3, DDPG, SAC), fast,
distributed and energy-measured.

Subpackages, each importing only the ones listed before it:

    runtime/    the process: device, distributed ranks, mixed precision, checkpoints, stop signals
    snn/        spiking networks: snnTorch neurons and their kernels, encoders, spiking actors
    telemetry/  what a run reports while it runs: metric writers (JSON lines, W&B), energy
    rl/         the learning: learners (TD3, DDPG, SAC), networks, replay, normaliser, envs, collector,
                evaluation, loop
    export/     a trained spiking actor as NIR for neuromorphic hardware, and its energy per action
                (python -m spikerl.export)
    analysis/   reading finished runs: GPS-UP, time to a return, the comparison report and its plots

The modules here are the entry points and the composition root: `run` (python -m spikerl.run),
`evaluate`, `compare`, `api` (the same from Python: train, evaluate, export, compare), `config` (schema
and validation), `job` (one rank's job), `launch` (its ranks) and `callbacks` (Hydra's).
"""

from .api import train

__all__ = ["train"]
