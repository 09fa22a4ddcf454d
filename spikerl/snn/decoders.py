"""Decoders: the output population's spikes [T, B, act_dim * pop_dim] -> the action before its tanh,
[B, act_dim]. Each reads an action from its own population through one weight per neuron and a bias
(a grouped linear map, like Conv1d with groups=act_dim); they differ in how they read time.

A decoder is built from a factory `decoder(act_dim, pop_dim)` (a Hydra partial, `actor.decoder`), has
`unsquashed(spikes)`, and `forward(spikes)` = tanh of it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

READOUTS = ("last", "max", "mean")


def read_membrane(v: torch.Tensor, readout: str) -> torch.Tensor:
    """Membranes [T, B, A] -> [B, A]: the last, the mean, or the one of largest magnitude (`max`)."""
    if readout == "last":
        return v[-1]
    if readout == "mean":
        return v.mean(0)
    high, low = v.max(0).values, v.min(0).values
    return torch.where(high.abs() > low.abs(), high, low)


class PopulationDecoder(nn.Module):
    """PopSAN's decoder: each neuron's firing rate over the T steps, then the grouped linear map."""

    def __init__(self, act_dim: int, pop_dim: int):
        super().__init__()
        self.act_dim, self.pop_dim = act_dim, pop_dim
        bound = 1.0 / math.sqrt(pop_dim)  # as PyTorch's Conv1d initialises a kernel of pop_dim inputs
        self.weight = nn.Parameter(torch.empty(act_dim, pop_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(act_dim).uniform_(-bound, bound))

    def grouped(self, x: torch.Tensor) -> torch.Tensor:
        """[..., act_dim * pop_dim] -> [..., act_dim]: W x + b, action by action."""
        return (x.unflatten(-1, (self.act_dim, self.pop_dim)) * self.weight).sum(-1) + self.bias

    def unsquashed(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.grouped(spikes.mean(0))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.unsquashed(spikes))


class MembraneDecoder(PopulationDecoder):
    """ILC-SAN's membrane decoder (lucifer2859/ILC-SAN, ilcsan-td3/popsan.py, `PopSpikeActor.forward`):
    a decoder neuron per action integrates the grouped linear map of each step's spikes with a
    voltage decay, v_t = decay v_{t-1} + W z_t + b from v_0 = 0, and the action is read from its
    membrane: `last` v_T; `mean` the mean of v_1..v_T; `max` the v_t of largest magnitude (the
    largest if it is larger in magnitude than the smallest, else the smallest, as published)."""

    def __init__(self, act_dim: int, pop_dim: int, decay: float = 1.0, readout: str = "last"):
        super().__init__(act_dim, pop_dim)
        if readout not in READOUTS:
            raise ValueError(f"decoder readout must be one of {list(READOUTS)}, got {readout!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decoder decay must be in [0, 1], got {decay}")
        self.decay, self.readout = float(decay), readout

    def full(self) -> torch.Tensor:
        """The grouped weights as one [act_dim, act_dim * pop_dim] matrix (zero across actions)."""
        return torch.block_diag(*self.weight.unsqueeze(1))

    def grouped(self, x: torch.Tensor) -> torch.Tensor:
        """W x + b as one matrix product with the full matrix: the decoder runs on the chip in the NIR
        export (an Affine node into the decoder neurons), which must compute the same to the bit."""
        return nn.functional.linear(x, self.full(), self.bias)

    def membranes(self, spikes: torch.Tensor) -> torch.Tensor:
        """The decoder membranes v_1..v_T [T, B, act_dim]."""
        drive = self.grouped(spikes)
        v, out = torch.zeros_like(drive[0]), []
        for t in range(drive.shape[0]):
            v = self.decay * v + drive[t]
            out.append(v)
        return torch.stack(out)

    def unsquashed(self, spikes: torch.Tensor) -> torch.Tensor:
        return read_membrane(self.membranes(spikes), self.readout)

    def extra_repr(self) -> str:
        return f"act_dim={self.act_dim}, pop_dim={self.pop_dim}, decay={self.decay}, readout={self.readout!r}"
