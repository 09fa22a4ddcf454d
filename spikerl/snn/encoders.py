"""Observation encoders: turn a normalised observation [B, D] into input for T timesteps, [T, B, N].

Every encoder has `num_outputs` (N) and `forward(obs, timesteps, generator=None)`; the spiking actors are
built with an encoder factory (`encoder(obs_dim) -> Encoder`) so that the encoder is a config choice.

An encoder runs on the host when the actor is exported (spikerl/export/host.py), as the same module:
`host_state()` gives its settings and arrays, `from_host` rebuilds it from them, `host_ops(timesteps)`
counts its float operations per action, `deterministic` says whether it draws random numbers, and
`input_range(obs_bound)` what the graph's input carries: None for spikes (0/1), else the (low, high)
of its real values for observations within +-obs_bound (None where unbounded).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def host_ops(adds=0, mults=0, exps=0, tanhs=0, randoms=0) -> dict:
    """A part's float operations per action on the host (exp, tanh and random numbers are counted apart)."""
    return {"adds": adds, "mults": mults, "exps": exps, "tanhs": tanhs, "randoms": randoms}


class _ThresholdStraightThrough(torch.autograd.Function):
    """Spike when x > threshold; the gradient passes straight through (PopSAN's encoder pseudo-grad)."""

    @staticmethod
    def forward(ctx, x, threshold):
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


class _BernoulliStraightThrough(torch.autograd.Function):
    """Spike with probability x (x in [0, 1]), drawn from `generator` (None: torch's global one); the
    gradient passes straight through."""

    @staticmethod
    def forward(ctx, x, generator=None):
        # uniform_ on a tensor shaped like x, not torch.rand(x.shape): torch.compile cannot build the latter
        # over the acting graph's symbolic batch size (the same numbers eagerly)
        return (torch.empty_like(x).uniform_(generator=generator) < x).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


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

    def forward(self, obs: torch.Tensor, timesteps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        act = self.activation(obs)
        if self.spikes == "real":
            return act.unsqueeze(0).expand(timesteps, *act.shape)
        if self.spikes == "poisson":
            return torch.stack([_BernoulliStraightThrough.apply(act, generator) for _ in range(timesteps)])
        volt = torch.zeros_like(act)
        out = []
        for _ in range(timesteps):
            volt = volt + act
            spike = _ThresholdStraightThrough.apply(volt, self.threshold)
            volt = volt - spike * self.threshold
            out.append(spike)
        return torch.stack(out)

    @property
    def deterministic(self) -> bool:
        return self.spikes != "poisson"

    def input_range(self, obs_bound: float | None) -> tuple[float, float] | None:
        return (0.0, 1.0) if self.spikes == "real" else None

    def host_state(self) -> tuple[dict, dict]:
        config = {"pop_dim": self.pop_dim, "spikes": self.spikes, "threshold": self.threshold, "squash": self.squash,
                  "input_index": "obs dim d, receptive field p -> input d * pop_dim + p"}
        return config, {"mean": _array(self.mean[0]), "std": _array(self.std[0])}

    @classmethod
    def from_host(cls, config: dict, arrays: dict) -> PopulationEncoder:
        mean, std = arrays["mean"], arrays["std"]
        enc = cls(mean.shape[0], int(config["pop_dim"]), spikes=config["spikes"], threshold=config["threshold"],
                  squash=config.get("squash", "none"))
        with torch.no_grad():
            enc.mean.copy_(torch.from_numpy(np.asarray(mean)).unsqueeze(0))
            enc.std.copy_(torch.from_numpy(np.asarray(std)).unsqueeze(0))
        return enc

    def host_ops(self, timesteps: int) -> dict:
        cells = self.num_outputs
        adds, mults = cells, 3 * cells  # o - mean; square, x -0.5, / std^2
        if self.spikes == "regular":
            adds, mults = adds + 3 * cells * timesteps, mults + cells * timesteps  # integrate, compare, subtract
        elif self.spikes == "poisson":
            adds += cells * timesteps  # compare with a random number
        return host_ops(adds, mults, exps=cells, tanhs=self.obs_dim if self.squash == "tanh" else 0,
                        randoms=cells * timesteps if self.spikes == "poisson" else 0)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


class _Stateless(nn.Module):
    """An encoder with no parameters: the observation size is all the host needs to rebuild it."""

    deterministic = True

    def __init__(self, obs_dim: int):
        super().__init__()
        self.obs_dim = obs_dim

    def host_state(self) -> tuple[dict, dict]:
        return {"obs_dim": self.obs_dim, "input_index": self.INPUT_INDEX}, {}

    @classmethod
    def from_host(cls, config: dict, arrays: dict):
        return cls(int(config["obs_dim"]))


def split_sign(obs: torch.Tensor) -> torch.Tensor:
    """[B, D] -> [B, 2D]: the positive parts of the observation's dims, then their negative parts."""
    return torch.cat([obs.clamp(min=0), (-obs).clamp(min=0)], dim=-1)


class TwoNeuronEncoder(_Stateless):
    """DSRL's encoding: two input neurons per dim carrying the positive and the negative part of the
    (already max-abs normalised) observation, as a constant input current at every timestep."""

    INPUT_INDEX = "d -> max(o_d, 0); obs_dim + d -> max(-o_d, 0), every timestep"

    @property
    def num_outputs(self) -> int:
        return 2 * self.obs_dim

    def forward(self, obs: torch.Tensor, timesteps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        current = split_sign(obs)
        return current.unsqueeze(0).expand(timesteps, *current.shape)

    def input_range(self, obs_bound: float | None) -> tuple[float, float | None]:
        return 0.0, obs_bound

    def host_ops(self, timesteps: int) -> dict:
        return host_ops(adds=2 * self.obs_dim)  # the positive and negative parts


class RawEncoder(_Stateless):
    """The normalised observation itself as the input current at every timestep (ILC-SAN's
    `--encode layer`: the first hidden layer does the encoding)."""

    INPUT_INDEX = "d -> o_d, every timestep"

    @property
    def num_outputs(self) -> int:
        return self.obs_dim

    def forward(self, obs: torch.Tensor, timesteps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return obs.unsqueeze(0).expand(timesteps, *obs.shape)

    def input_range(self, obs_bound: float | None) -> tuple[float | None, float | None]:
        return (None, None) if obs_bound is None else (-obs_bound, obs_bound)

    def host_ops(self, timesteps: int) -> dict:
        return host_ops()
