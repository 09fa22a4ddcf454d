"""Spiking neurons: snnTorch `Synaptic` neurons configured per method, and their surrogate gradients.

The surrogates are module-level classes (not closures) so that neurons holding them can be pickled
and deep-copied.
"""

from __future__ import annotations

import snntorch
import torch


class _RectangularSpike(torch.autograd.Function):
    """Heaviside forward; gradient 1 inside |x| < half_width, else 0 (PopSAN's pseudo-gradient)."""

    @staticmethod
    def forward(ctx, x, half_width):
        ctx.save_for_backward(x)
        ctx.half_width = half_width
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() < ctx.half_width).to(grad_output.dtype), None


class _FastSigmoidSpike(torch.autograd.Function):
    """Heaviside forward; gradient 1 / (1 + slope |x|)^2 (SuperSpike's fast sigmoid, used by DSRL)."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output / (ctx.slope * x.abs() + 1.0) ** 2, None


class Rectangular:
    """Rectangular surrogate. snnTorch passes `mem - threshold`, so half_width=0.5 at threshold 0.5
    reproduces PopSAN's window |v - 0.5| < 0.5."""

    def __init__(self, half_width: float = 0.5):
        self.half_width = float(half_width)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _RectangularSpike.apply(x, self.half_width)


class FastSigmoid:
    """Fast-sigmoid surrogate with the given slope."""

    def __init__(self, slope: float = 100.0):
        self.slope = float(slope)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _FastSigmoidSpike.apply(x, self.slope)


SURROGATES = {"rectangular": Rectangular, "fast_sigmoid": FastSigmoid}


def make_surrogate(name: str, **kwargs):
    try:
        return SURROGATES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}") from None


def current_lif(
    *,
    current_decay: float,
    voltage_decay: float,
    threshold: float,
    surrogate,
    spiking: bool = True,
) -> snntorch.Synaptic:
    """A current-based LIF neuron: c = a c + I; v = b v (1 - s_prev) + c; s = v > threshold.

    `reset_delay=False` resets the membrane right after the spike, so the stored membrane is the
    post-reset value and the next step computes exactly b * v * (1 - s_prev) + c (snnTorch's default
    delayed reset would also drop the current step's input). With `spiking=False` the neuron only
    integrates (no threshold, no reset): a readout whose membrane is the output.

    snnTorch registers every neuron in a global list that only grows; SpikeRL never uses that list
    (state is passed explicitly), so the neuron is taken out of it to let models be garbage collected.
    """
    neuron = snntorch.Synaptic(
        alpha=current_decay,
        beta=voltage_decay,
        threshold=threshold,
        spike_grad=surrogate,
        reset_mechanism="zero" if spiking else "none",
        reset_delay=False,
    )
    instances = snntorch.SpikingNeuron.instances
    if instances and instances[-1] is neuron:
        instances.pop()
    return neuron


def clear_neuron_state(module: torch.nn.Module) -> None:
    """Drop the state snnTorch keeps in its buffers after a forward call (it may hold an autograd
    graph, which breaks deepcopy and keeps memory alive). SpikeRL always passes state explicitly."""
    for m in module.modules():
        if isinstance(m, snntorch.Synaptic):
            m.syn = torch.zeros(0, device=m.syn.device)
            m.mem = torch.zeros(0, device=m.mem.device)
