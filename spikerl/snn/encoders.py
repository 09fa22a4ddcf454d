"""Observation encoders: turn a normalised observation [B, D] into input for T timesteps, [T, B, N].

Every encoder has `num_outputs` (N) and `forward(obs, timesteps)`; the spiking actors are built with
an encoder factory (`encoder(obs_dim) -> Encoder`) so that the encoder is a config choice.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _ThresholdStraightThrough(torch.autograd.Function):
    """Spike when x > threshold; the gradient passes straight through (PopSAN's encoder pseudo-grad)."""

    @staticmethod
    def forward(ctx, x, threshold):
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


class _BernoulliStraightThrough(torch.autograd.Function):
    """Spike with probability x (x in [0, 1]); the gradient passes straight through."""

    @staticmethod
    def forward(ctx, x):
        return (torch.rand_like(x) < x).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


class PopulationEncoder(nn.Module):
    """PopSAN's population coding: each observation dim drives `pop_dim` Gaussian receptive fields.

    activation a = exp(-(o - mean)^2 / (2 std^2)), means evenly spaced over `mean_range`, both means
    and stds learnable. `spikes="regular"`: deterministic spikes from integrating a each step, firing
    above `threshold` and subtracting it; `spikes="poisson"`: a Bernoulli spike with probability a;
    `spikes="real"`: no spikes, a itself at every step (ILC-SAN's and MDC-SAN's real-valued population
    input, their `--encode pop`). `squash="tanh"` feeds tanh(o) to the fields instead of o (CaRe-BN's
    actor, which sees the raw observation).
    """

    def __init__(
        self,
        obs_dim: int,
        pop_dim: int = 10,
        mean_range: tuple[float, float] = (-3.0, 3.0),
        std: float = math.sqrt(0.15),
        spikes: str = "regular",
        threshold: float = 0.999,
        squash: str = "none",
    ):
        super().__init__()
        if squash not in ("none", "tanh"):
            raise ValueError(f"encoder squash must be 'none' or 'tanh', got {squash!r}")
        self.squash = squash
        if spikes not in ("regular", "poisson", "real"):
            raise ValueError(f"encoder spikes must be 'regular', 'poisson' or 'real', got {spikes!r}")
        if pop_dim < 2:
            raise ValueError(f"encoder pop_dim must be at least 2, got {pop_dim}")
        self.obs_dim, self.pop_dim = obs_dim, pop_dim
        self.spikes, self.threshold = spikes, float(threshold)
        lo, hi = mean_range
        means = torch.linspace(lo, hi, pop_dim).repeat(obs_dim, 1)
        self.mean = nn.Parameter(means.unsqueeze(0))  # [1, D, P]
        self.std = nn.Parameter(torch.full((1, obs_dim, pop_dim), float(std)))

    @property
    def num_outputs(self) -> int:
        return self.obs_dim * self.pop_dim

    def activation(self, obs: torch.Tensor) -> torch.Tensor:
        """Receptive-field activation [B, D * P] in (0, 1]."""
        if self.squash == "tanh":
            obs = torch.tanh(obs)
        a = torch.exp(-0.5 * (obs.unsqueeze(-1) - self.mean) ** 2 / self.std**2)
        return a.reshape(obs.shape[0], -1)

    def forward(self, obs: torch.Tensor, timesteps: int) -> torch.Tensor:
        act = self.activation(obs)
        if self.spikes == "real":
            return act.unsqueeze(0).expand(timesteps, *act.shape)
        if self.spikes == "poisson":
            return torch.stack([_BernoulliStraightThrough.apply(act) for _ in range(timesteps)])
        volt = torch.zeros_like(act)
        out = []
        for _ in range(timesteps):
            volt = volt + act
            spike = _ThresholdStraightThrough.apply(volt, self.threshold)
            volt = volt - spike * self.threshold
            out.append(spike)
        return torch.stack(out)


def split_sign(obs: torch.Tensor) -> torch.Tensor:
    """[B, D] -> [B, 2D]: the positive parts of the observation's dims, then their negative parts."""
    return torch.cat([obs.clamp(min=0), (-obs).clamp(min=0)], dim=-1)


class TwoNeuronEncoder(nn.Module):
    """DSRL's encoding: two input neurons per dim carrying the positive and the negative part of the
    (already max-abs normalised) observation, as a constant input current at every timestep."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.obs_dim = obs_dim

    @property
    def num_outputs(self) -> int:
        return 2 * self.obs_dim

    def forward(self, obs: torch.Tensor, timesteps: int) -> torch.Tensor:
        current = split_sign(obs)
        return current.unsqueeze(0).expand(timesteps, *current.shape)


class RawEncoder(nn.Module):
    """The normalised observation itself as the input current at every timestep (ILC-SAN's
    `--encode layer`: the first hidden layer does the encoding)."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.obs_dim = obs_dim

    @property
    def num_outputs(self) -> int:
        return self.obs_dim

    def forward(self, obs: torch.Tensor, timesteps: int) -> torch.Tensor:
        return obs.unsqueeze(0).expand(timesteps, *obs.shape)
