"""Decoders: the output population's spikes [T, B, act_dim * pop_dim] -> the action before its tanh,
[B, act_dim]. Each reads an action from its own population through one weight per neuron and a bias
(a grouped linear map, like Conv1d with groups=act_dim); they differ in how they read time.

A decoder is built from a factory `decoder(act_dim, pop_dim)` (a Hydra partial, `actor.decoder`), has
`unsquashed(spikes)`, and `forward(spikes)` = tanh of it.

When the actor is exported (spikerl/export/), a decoder splits into what runs on the chip and what runs
on the host: `chip_layers()` (non-spiking layers after the spiking ones, as `ChipLayer`s; none for the
rate decoder), `chip_output(spikes)` (what the chip then outputs) and `host_part()`, the object that turns
that output into the action on the host with `host_state`, `from_host` and `host_ops` (as the encoders'
in spikerl/snn/encoders.py). The host part is this module's own code, so the host cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .encoders import host_ops

READOUTS = ("last", "max", "mean")


def read_membrane(v: torch.Tensor, readout: str) -> torch.Tensor:
    """Membranes [T, B, A] -> [B, A]: the last, the mean, or the one of largest magnitude (`max`)."""
    if readout == "last":
        return v[-1]
    if readout == "mean":
        return v.mean(0)
    high, low = v.max(0).values, v.min(0).values
    return torch.where(high.abs() > low.abs(), high, low)


@dataclass(frozen=True)
class ChipLayer:
    """One synapse layer and its neurons as a chip computes them: input [T, B, n_in] -> W x + b into
    neurons with c <- alpha c + x, v <- beta v + c, spiking when v > threshold, then v <- 0 (`reset`
    "zero") or v <- v - threshold ("subtract"), or, with threshold None, a non-spiking membrane;
    `recurrent`: weights from the layer's own spikes of the previous step (connections inside the output
    populations), if any."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    alpha: float
    beta: float
    threshold: float | None
    reset: str = "zero"
    recurrent: torch.Tensor | None = None
    graded: float = 1.0  # the spike's value (snnTorch's graded_spikes_factor)
    names: tuple[str, str] | None = None  # its synapse and neuron nodes' names (None: fc<i>, lif<i>)


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

    # exported: all of it on the host, from the output population's spikes
    def chip_layers(self) -> list[ChipLayer]:
        return []

    def chip_output(self, spikes: torch.Tensor) -> torch.Tensor:
        return spikes

    def host_part(self) -> nn.Module:
        return self

    def host_state(self) -> tuple[dict, dict]:
        config = {"act_dim": self.act_dim, "pop_dim": self.pop_dim,
                  "formula": "tanh(sum_p mean_t(spikes[t, a * pop_dim + p]) * weight[a, p] + bias[a])"}
        return config, {"weight": _array(self.weight), "bias": _array(self.bias)}

    @classmethod
    def from_host(cls, config: dict, arrays: dict) -> PopulationDecoder:
        dec = PopulationDecoder(int(config["act_dim"]), int(config["pop_dim"]))
        with torch.no_grad():
            dec.weight.copy_(torch.from_numpy(np.asarray(arrays["weight"])))
            dec.bias.copy_(torch.from_numpy(np.asarray(arrays["bias"])))
        return dec

    def host_ops(self, timesteps: int) -> dict:
        cells = self.act_dim * self.pop_dim
        # rate sums, grouped weights, bias; the mean's division and the grouped weights
        return host_ops(adds=cells * timesteps + cells + self.act_dim, mults=2 * cells, tanhs=self.act_dim)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


class MembraneReadout:
    """The host side of a decoder whose membranes the chip computes: tanh of the membranes [T, B, A] read
    by `readout` (MembraneDecoder's; DSRL's readout reads the last)."""

    def __init__(self, act_dim: int, readout: str = "last"):
        if readout not in READOUTS:
            raise ValueError(f"decoder readout must be one of {list(READOUTS)}, got {readout!r}")
        self.act_dim, self.readout = int(act_dim), readout

    def __call__(self, membranes: torch.Tensor) -> torch.Tensor:
        return torch.tanh(read_membrane(membranes, self.readout))

    def host_state(self) -> tuple[dict, dict]:
        return {"act_dim": self.act_dim, "readout": self.readout,
                "formula": "tanh of the membranes (the graph's output) read by `readout`: last (the last step's), "
                           "mean (over the steps) or max (the largest in magnitude)"}, {}

    @classmethod
    def from_host(cls, config: dict, arrays: dict) -> MembraneReadout:
        return cls(config["act_dim"], config["readout"])

    def host_ops(self, timesteps: int) -> dict:
        a = self.act_dim
        adds, mults = {"last": (0, 0), "mean": (a * timesteps, a), "max": (2 * a * timesteps, 0)}[self.readout]
        return host_ops(adds=adds, mults=mults, tanhs=a)


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

    # exported: the decoder neurons on the chip (non-spiking, v <- decay v + W z + b), the readout on the host
    def chip_layers(self) -> list[ChipLayer]:
        return [ChipLayer(self.full(), self.bias, alpha=0.0, beta=self.decay, threshold=None,
                          names=("decoder", "decoder_membrane"))]

    def chip_output(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.membranes(spikes)

    def host_part(self) -> MembraneReadout:
        return MembraneReadout(self.act_dim, self.readout)

    def extra_repr(self) -> str:
        return f"act_dim={self.act_dim}, pop_dim={self.pop_dim}, decay={self.decay}, readout={self.readout!r}"
