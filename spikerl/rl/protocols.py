"""What the training loop needs from the parts that vary, as typed protocols: the learner
(spikerl/rl/learners/) and the metric writers. An actor is any module from normalised observations
[B, obs_dim] to actions in [-1, 1] [B, act_dim] (spikerl/snn/actors.py, rl/networks.MLPActor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from .replay import Batch


class Learner(Protocol):
    """Acts (deterministically, or to explore) and learns from replay batches. The loop also reads its
    counters."""

    updates: int  # learner iterations so far
    skipped: int  # optimizer steps skipped for non-finite gradients
    consecutive_skips: int  # the current run of skipped steps (too long a run stops training)
    act_noise: float  # Gaussian noise the collector adds to `explore`'s actions
    shared_noise: bool  # one noise draw for all of an action's dimensions

    def act(self, obs: torch.Tensor) -> torch.Tensor: ...

    def explore(self, obs: torch.Tensor) -> torch.Tensor: ...

    batches_per_update: int  # replay batches an update takes (`lead`, then the critic's `batch`)

    def update(self, batch: Batch, lead: Sequence[Batch] = ()) -> dict[str, torch.Tensor]: ...  # 0-dim tensors

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class MetricWriter(Protocol):
    """Takes logged rows (`step` plus namespaced metrics) and run totals; must never raise into training."""

    def write(self, row: dict) -> None: ...

    def summarize(self, values: dict) -> None: ...

    def close(self) -> None: ...
