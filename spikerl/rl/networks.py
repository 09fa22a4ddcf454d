"""Non-spiking networks: the ReLU MLP, the ANN baseline actor and the ensemble of Q-networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..snn.encoders import split_sign


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPActor(nn.Module):
    """The ANN baseline: a ReLU MLP with a tanh output (TD3's deterministic actor)."""

    spiking = False  # no chip part to export: its energy is its dense MACs (spikerl/export/energy.py)

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp([obs_dim, *hidden_sizes, act_dim])

    def unsquashed(self, obs: torch.Tensor) -> torch.Tensor:
        """The action before its tanh (a Gaussian policy's mean)."""
        return self.net(obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.unsquashed(obs))


class QEnsemble(nn.Module):
    """`n` independent ReLU MLPs over the concatenated (observation, action), named q1 ... qn: one for
    DDPG, two for TD3 and SAC (the learner says how many). `forward` gives every Q-value, [n, B].
    With `split_sign` the observation enters as its positive and its negative parts, 2 x obs_dim
    inputs (DSRL's critic sees the two-neuron coded state its actor sees)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256), n: int = 2,
                 split_sign: bool = False):
        super().__init__()
        if n < 1:
            raise ValueError(f"a Q ensemble needs at least one network, got n={n}")
        self.n, self.split_sign = n, bool(split_sign)
        sizes = [obs_dim * (2 if split_sign else 1) + act_dim, *hidden_sizes, 1]
        for i in range(n):
            self.add_module(f"q{i + 1}", mlp(sizes))  # q1, q2: the state_dict keys of a twin critic

    def inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        if self.split_sign:
            obs = split_sign(obs)
        return torch.cat([obs, act], dim=-1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = self.inputs(obs, act)
        return torch.stack([net(x).squeeze(-1) for net in self.children()])

    def q1_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The first network's Q-value alone (TD3's and DDPG's actor loss)."""
        return self.q1(self.inputs(obs, act)).squeeze(-1)
