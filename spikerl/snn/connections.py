"""Connections inside the output population (ILC-SAN's intra-layer connections).

The output layer of a population-coded actor holds `pop_dim` neurons per action. ILC-SAN (lucifer2859/ILC-SAN,
ilcsan-td3/popsan.py, `SpikeMLP.neuron_model`) adds to their synaptic current, at every timestep,

    bias     a constant per neuron,
    self     each neuron's own spike of the previous step times a weight,
    lateral  the previous spikes of the other neurons of the same action's population, weighted,

any subset of the three (`intra` is all of them). A connection never crosses actions: the weights are one
[pop_dim, pop_dim] block per action. `forward(z_prev)` is the recurrent input W z_{t-1} [B, N], the bias is
`bias` (None without it); the neuron kernels add both to the layer's input current (through_time.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

KINDS = ("bias", "self", "lateral")
ALIASES = {"intra": KINDS, "none": ()}  # ILC-SAN's --connections names for all and none


def connection_kinds(names: str | Iterable[str]) -> tuple[str, ...]:
    """`intra`, `none`, one kind or a list of kinds -> the kinds in canonical order; anything else is
    refused in one line."""
    names = [names] if isinstance(names, str) else list(names)
    kinds = set()
    for name in names:
        if name in ALIASES:
            kinds.update(ALIASES[name])
        elif name in KINDS:
            kinds.add(name)
        else:
            raise ValueError(f"unknown connection {name!r}; choose from {[*KINDS, *ALIASES]} or a list of "
                             f"{list(KINDS)}")
    return tuple(k for k in KINDS if k in kinds)


class IntraConnections(nn.Module):
    """The output population's own connections. Initialised as published: with lateral weights, as
    ILC-SAN's grouped Conv1d (uniform in +-1/sqrt(pop_dim), weight and bias); self weights alone and a
    bias without lateral weights, from N(0, 1) (its `nn.Parameter(torch.randn(...))`)."""

    def __init__(self, act_dim: int, pop_dim: int, kinds: str | Iterable[str] = "intra"):
        super().__init__()
        self.act_dim, self.pop_dim = act_dim, pop_dim
        self.kinds = connection_kinds(kinds)
        n, bound = act_dim * pop_dim, 1.0 / math.sqrt(pop_dim)
        lateral, own = "lateral" in self.kinds, "self" in self.kinds
        self.weight = self.self_weight = self.bias = None
        if lateral:
            # weight[a, j, k]: spike k of action a's population into neuron j of the same population
            self.weight = nn.Parameter(torch.empty(act_dim, pop_dim, pop_dim).uniform_(-bound, bound))
            mask = torch.ones(pop_dim, pop_dim) - (0.0 if own else torch.eye(pop_dim))
            self.register_buffer("mask", mask, persistent=False)
        elif own:
            self.self_weight = nn.Parameter(torch.randn(n))
        if "bias" in self.kinds:
            self.bias = nn.Parameter(torch.empty(n).uniform_(-bound, bound) if lateral else torch.randn(n))

    @property
    def recurrent(self) -> bool:
        """Whether the previous spikes feed back (self or lateral weights), not only a bias."""
        return self.weight is not None or self.self_weight is not None

    def matrix(self) -> torch.Tensor:
        """The recurrent weights as blocks [act_dim, pop_dim (to), pop_dim (from)]."""
        if self.weight is not None:
            return self.weight * self.mask
        if self.self_weight is not None:
            return torch.diag_embed(self.self_weight.view(self.act_dim, self.pop_dim))
        return torch.zeros(self.act_dim, self.pop_dim, self.pop_dim)

    def full(self) -> torch.Tensor:
        """The recurrent weights as one [N, N] matrix (zero across actions): what the NIR export writes."""
        return torch.block_diag(*self.matrix())

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """The recurrent current W z [B, N] from the previous step's spikes z [B, N]. One matrix product
        with the full matrix, as the exported graph computes it, so that the two agree to the bit (the
        blocks are small: N = act_dim * pop_dim)."""
        if self.self_weight is not None:
            return spikes * self.self_weight
        return nn.functional.linear(spikes, self.full())

    def extra_repr(self) -> str:
        return f"act_dim={self.act_dim}, pop_dim={self.pop_dim}, kinds={list(self.kinds)}"
