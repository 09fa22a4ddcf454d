"""Where a rank's networks live: decided once per rank, here, and passed down as a `torch.device`."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def device_type(requested: str) -> str:
    """`auto`: CUDA when this machine has a GPU, else CPU."""
    return "cuda" if requested in ("auto", "cuda") and torch.cuda.is_available() else "cpu"


def rank_device(requested: str, local_rank: int) -> torch.device:
    """The device this rank's networks live on: its own GPU (by local rank) or the CPU."""
    if device_type(requested) == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")
