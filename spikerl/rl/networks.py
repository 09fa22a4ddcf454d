"""Non-spiking networks: the ReLU MLP, the ANN baseline actor and TD3's twin Q critic."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPActor(nn.Module):
    """The ANN baseline: a ReLU MLP with a tanh output (TD3's deterministic actor)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp([obs_dim, *hidden_sizes, act_dim])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


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
