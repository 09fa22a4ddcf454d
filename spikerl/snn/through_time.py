"""Stepping one layer of current-based LIF neurons through T timesteps of input current [T, B, N],
from zero state. Returns the spikes [T, B, N] and the final (post-reset) membrane [B, N].

Three backends compute the same recurrence from a layer's `LIFSpec` (spikerl/snn/neurons.py);
`actor.neuron_backend` chooses:

    snntorch  snnTorch's own forward, step by step (about twenty tensor operations a step)
    fused     the same step in a few tensor operations, differentiated by autograd
    bptt      (default) one autograd node per layer: the forward steps without recording a graph and
              the backward is backpropagation through time written out, with every per-timestep
              factor computed for all T at once

Tests check spikes, membranes and gradients equal across backends.
"""

from __future__ import annotations

from functools import partial

import torch

from ..runtime.compiler import CompiledOrEager
from .neurons import LIFSpec, run_snntorch, step_input


def heaviside(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def lif_forward(current: torch.Tensor, alpha: float, beta: float, threshold: float, reset: float,
                reset_grad: float, spike=heaviside, recurrent=None):
    """c_t = a c_{t-1} + I_t;  u_t = b m_{t-1} + c_t;  z_t = spike(u_t - th);  m_t = u_t - reset z_t u_t
    (reset 1: a spiking neuron's reset to zero; 0: an integrator). Returns the spikes z, the pre-reset
    membranes u (both [T, B, N]) and the last m. The bptt kernels run it without autograd and the hard
    step; the `fused` backend with autograd and the surrogate, where `reset_grad` 0 keeps the gradient
    out of the reset's z (LIFSpec.reset_gradient). (`reset` and `reset_grad` are numbers, not flags, so
    that a compiled kernel serves every kind of layer with one graph.) A layer with connections to its
    own previous spikes (spikerl/snn/connections.py) adds `recurrent(z_{t-1})` to I_t."""
    syn = torch.zeros_like(current[0])
    mem = torch.zeros_like(current[0])
    z = torch.zeros_like(current[0])
    pre, spikes = [], []
    for t in range(current.shape[0]):
        syn = alpha * syn + step_input(current, t, recurrent, z)
        u = beta * mem + syn
        z = spike(u - threshold)
        z_reset = reset_grad * z + (1.0 - reset_grad) * z.detach()  # equal to z; only its gradient differs
        mem = u - reset * z_reset * u
        pre.append(u)
        spikes.append(z)
    return torch.stack(spikes), torch.stack(pre), mem


def lif_backward(grad_spikes, grad_mem, pre, spikes, alpha: float, beta: float, threshold: float, reset: float,
                 reset_grad: float, grad_shape, param: float) -> torch.Tensor:
    """Backpropagation through time of `lif_forward`, differentiating the spike by the surrogate slope
    `grad_shape(u - th, param)` and the reset as autograd would. Returns dL/dI [T, B, N]."""
    g = grad_shape(pre - threshold, param).to(pre.dtype)  # dz_t/du_t, every t at once
    dm_du = 1.0 - reset * (spikes + reset_grad * pre * g)  # m = u - reset z u
    from_spikes = grad_spikes * g
    grad_m, grad_syn = grad_mem, torch.zeros_like(grad_mem)
    grads = []
    for t in range(pre.shape[0] - 1, -1, -1):
        grad_u = from_spikes[t] + grad_m * dm_du[t]  # dL/du_t
        grad_m = grad_u * beta  # dL/dm_{t-1}
        grad_syn = grad_u + alpha * grad_syn  # dL/dc_t = dL/dI_t
        grads.append(grad_syn)
    return torch.stack(grads[::-1])


KERNELS = {"forward": lif_forward, "backward": lif_backward}
_compiled: dict[str, CompiledOrEager] = {}  # the compiled kernels, shared by every layer of the process


def compile_failures() -> dict[str, str]:
    """Kernel -> why compiling it failed, for the kernels that run eagerly for that reason."""
    return {name: kernel.failed for name, kernel in _compiled.items() if kernel.failed}


def _run_kernel(name: str, compiled: bool, *args):
    """Run kernel `name`, eager or compiled. A compiled kernel fuses a layer's whole time loop into
    one C++ loop on the CPU (one kernel on a GPU). Shapes are dynamic, so every batch size (batch 1
    included: the batch dimension is unbacked) and every layer width share one graph. If compiling
    fails, the kernel warns once and runs eagerly (runtime/compiler.py). Inside a larger compiled
    graph (a learner's whole update) the kernel is traced into that graph instead."""
    if not compiled or torch.compiler.is_compiling():
        return KERNELS[name](*args)
    if name not in _compiled:
        _compiled[name] = CompiledOrEager(KERNELS[name], dynamic=True, unbacked=(0, 1), name=f"the {name} kernel")
    return _compiled[name](*args)


class _LIFThroughTime(torch.autograd.Function):
    """One autograd node for a layer's T steps: saves the pre-reset membranes and the spikes."""

    @staticmethod
    def forward(ctx, current, spec: LIFSpec, compiled: bool):
        constants = spec.alpha, spec.beta, spec.threshold, float(spec.spiking), float(spec.reset_gradient)
        # detached: the kernel needs no graph, and acting and training then share one compiled graph
        spikes, pre, mem = _run_kernel("forward", compiled, current.detach(), *constants)
        ctx.save_for_backward(pre, spikes)
        ctx.constants = *constants, spec.surrogate.grad_shape, spec.surrogate.param
        ctx.compiled = compiled
        return spikes, mem

    @staticmethod
    def backward(ctx, grad_spikes, grad_mem):
        pre, spikes = ctx.saved_tensors
        grad = _run_kernel("backward", ctx.compiled, grad_spikes, grad_mem, pre, spikes, *ctx.constants)
        return grad, None, None


def run_through_time_fused(spec: LIFSpec, current: torch.Tensor, recurrent=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The step in a few tensor operations (`lif_forward`) with the surrogate, differentiated by autograd."""
    spikes, _, mem = lif_forward(current, spec.alpha, spec.beta, spec.threshold, float(spec.spiking),
                                 float(spec.reset_gradient), spec.surrogate, recurrent)
    return spikes, mem


def run_through_time_bptt(spec: LIFSpec, current: torch.Tensor, compiled: bool = False, recurrent=None):
    """One autograd node per layer (see the module docstring). A layer fed back its own spikes
    (`recurrent`) runs the fused step instead: autograd differentiates the loop, which a compiled update
    traces into its one graph like the rest."""
    if recurrent is not None:
        return run_through_time_fused(spec, current, recurrent)
    return _LIFThroughTime.apply(current, spec, compiled)


NEURON_BACKENDS = {"snntorch": run_snntorch, "fused": run_through_time_fused, "bptt": run_through_time_bptt}


def neuron_backend(name: str, compiled: bool = False):
    """The backend `name`, a function (LIFSpec, current) -> (spikes, membrane). `compiled` runs the bptt
    kernels through torch.compile; the other backends, kept as references, always run eagerly."""
    if name not in NEURON_BACKENDS:
        raise ValueError(f"neuron_backend must be one of {sorted(NEURON_BACKENDS)}, got {name!r}")
    return partial(run_through_time_bptt, compiled=True) if compiled and name == "bptt" else NEURON_BACKENDS[name]

