"""Critics: twin Q networks for TD3's clipped double-Q learning."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .actors import mlp


class TwinQ(nn.Module):
    """Two independent ReLU MLPs Q1, Q2 over the concatenated (observation, action)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256)):
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        self.q1 = mlp(sizes)
        self.q2 = mlp(sizes)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q1_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.q1(torch.cat([obs, act], dim=-1)).squeeze(-1)
