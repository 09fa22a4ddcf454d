"""Spiking neurons: snnTorch `Synaptic` neurons configured per method, and their surrogate gradients.

The surrogates are module-level classes (not closures) so that neurons holding them can be pickled
and deep-copied.
"""

from __future__ import annotations

from collections.abc import Callable

import snntorch
import torch


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside step forward; backward multiplies by `grad_shape(x, param)`, the surrogate's slope."""

    @staticmethod
    def forward(ctx, x, param, grad_shape):
        ctx.save_for_backward(x)
        ctx.param, ctx.grad_shape = param, grad_shape
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.grad_shape(x, ctx.param).to(grad_output.dtype), None, None


def rectangular_slope(x: torch.Tensor, half_width: float) -> torch.Tensor:
    return x.abs() < half_width


def fast_sigmoid_slope(x: torch.Tensor, slope: float) -> torch.Tensor:
    return 1.0 / (slope * x.abs() + 1.0) ** 2


class Surrogate:
    """A spike function x > 0 whose gradient is `grad_shape(x, param)`. Subclasses set `grad_shape` to a
    module-level function, so that compiled kernels can share it between neurons."""

    grad_shape: Callable[[torch.Tensor, float], torch.Tensor]

    def __init__(self, param: float):
        self.param = float(param)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SurrogateSpike.apply(x, self.param, self.grad_shape)


class Rectangular(Surrogate):
    """Rectangular surrogate: gradient 1 inside |x| < half_width (PopSAN's pseudo-gradient).
    snnTorch passes `mem - threshold`, so half_width=0.5 at threshold 0.5 reproduces PopSAN's window
    |v - 0.5| < 0.5."""

    grad_shape = staticmethod(rectangular_slope)

    def __init__(self, half_width: float = 0.5):
        super().__init__(half_width)
        self.half_width = self.param


class FastSigmoid(Surrogate):
    """Fast-sigmoid surrogate: gradient 1 / (1 + slope |x|)^2 (SuperSpike's, used by DSRL)."""

    grad_shape = staticmethod(fast_sigmoid_slope)

    def __init__(self, slope: float = 100.0):
        super().__init__(slope)
        self.slope = self.param


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
