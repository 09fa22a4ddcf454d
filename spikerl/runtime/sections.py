"""The `dist` and `precision` config sections: their keys and the rules on their values. Kept apart from
the code that uses them, which needs torch, so that spikerl.config answers a mistake in them before torch
is imported."""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("auto", "gloo", "nccl", "mpi")
PRECISION_MODES = ("fp32", "bf16", "fp16")  # what a run computes in
PRECISION_CHOICES = (*PRECISION_MODES, "auto")  # what a user may ask for: auto is bf16 where it pays, else fp32


@dataclass
class DistConfig:
    """The `dist` config section (spikerl/runtime/distributed.py)."""

    world_size: int = 1  # processes in the job, over all nodes
    backend: str = "auto"  # auto | gloo | nccl | mpi
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0  # 0: a free port (single node only)
    timeout_s: float = 300.0  # a collective waiting longer than this fails the job

    CHOICES = {"backend": BACKENDS}
    POSITIVE = ("world_size", "nnodes", "timeout_s")


@dataclass
class PrecisionConfig:
    """The `precision` config section (spikerl/runtime/precision.py)."""

    mode: str = "fp32"

    CHOICES = {"mode": PRECISION_CHOICES}
