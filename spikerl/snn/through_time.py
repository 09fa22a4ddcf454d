"""Stepping one layer of current-based LIF neurons through T timesteps of input current [T, B, N],
from zero state. Returns the spikes [T, B, N] and the final (post-reset) membrane [B, N].

Three backends compute the same recurrence from the same snnTorch `Synaptic` module (its constants,
surrogate and reset rule); `actor.neuron_backend` chooses:

    snntorch  snnTorch's own forward, step by step (about twenty tensor operations a step)
    fused     the same step in five tensor operations, differentiated by autograd
    bptt      (default) one autograd node per layer: the forward steps without recording a graph and
              the backward is backpropagation through time written out, with every per-timestep
              factor computed for all T at once

All three are valid for `reset_delay=False`, which `current_lif` always sets: the stored membrane is
then post-reset, never above threshold, so snnTorch's delayed-reset term is zero. Tests check spikes,
membranes and gradients equal across backends.
"""

from __future__ import annotations

import warnings
from functools import partial

import torch
from torch import nn

from .neurons import clear_neuron_state

RESET_SUBTRACT, RESET_ZERO, RESET_NONE = 0, 1, 2  # snnTorch's reset_mechanism_val


def run_through_time(neuron: nn.Module, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """snnTorch's forward, one call per timestep."""
    syn = torch.zeros_like(current[0])
    mem = torch.zeros_like(current[0])
    spikes = []
    for t in range(current.shape[0]):
        spk, syn, mem = neuron(current[t], syn, mem)
        spikes.append(spk)
    clear_neuron_state(neuron)  # snnTorch kept the last state (and its graph) in the module
    return torch.stack(spikes), mem


def run_through_time_fused(neuron: nn.Module, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The step in five tensor operations (`lif_forward`), from the neuron's own constants and
    surrogate, differentiated by autograd."""
    alpha, beta = neuron.alpha.clamp(0, 1), neuron.beta.clamp(0, 1)
    spikes, _, mem = lif_forward(current, alpha, beta, neuron.threshold, neuron.reset_mechanism_val,
                                 neuron.spike_grad)
    return spikes, mem


def heaviside(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def lif_forward(current: torch.Tensor, alpha, beta, threshold, reset: int, spike=heaviside):
    """c_t = a c_{t-1} + I_t;  u_t = b m_{t-1} + c_t;  z_t = spike(u_t - th);  m_t = reset(u_t, z_t).
    Returns the spikes z, the pre-reset membranes u (both [T, B, N]) and the last m. The bptt kernels
    run it without autograd and the hard step; the `fused` backend with autograd and the surrogate."""
    syn = torch.zeros_like(current[0])
    mem = torch.zeros_like(current[0])
    pre, spikes = [], []
    for t in range(current.shape[0]):
        syn = alpha * syn + current[t]
        u = beta * mem + syn
        z = spike(u - threshold)
        if reset == RESET_ZERO:
            mem = u - z * u
        elif reset == RESET_SUBTRACT:
            mem = u - z * threshold
        else:
            mem = u
        pre.append(u)
        spikes.append(z)
    return torch.stack(spikes), torch.stack(pre), mem


def lif_backward(grad_spikes, grad_mem, pre, spikes, alpha: float, beta: float, threshold: float, reset: int,
                 grad_shape, param: float) -> torch.Tensor:
    """Backpropagation through time of `lif_forward`, differentiating the spike by the surrogate slope
    `grad_shape(u - th, param)` and the reset as autograd would. Returns dL/dI [T, B, N]."""
    g = grad_shape(pre - threshold, param).to(pre.dtype)  # dz_t/du_t, every t at once
    if reset == RESET_ZERO:  # m = u - z u
        dm_du = (1.0 - spikes) - pre * g
    elif reset == RESET_SUBTRACT:  # m = u - z th
        dm_du = 1.0 - threshold * g
    else:
        dm_du = torch.ones_like(pre)
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
_compiled: dict[str, object] = {}  # torch.compile'd kernels, shared by every layer of the process
_compile_failed: list[str] = []  # why compiling failed, once it has: the eager kernels are used from then on


def _run_kernel(name: str, compiled: bool, *args):
    """Run kernel `name`, eager or compiled. A compiled kernel fuses a layer's whole time loop into
    one C++ loop on the CPU (one kernel on a GPU). Shapes are dynamic, so the training batch, the
    evaluation batch and every layer width share a graph; batch 1 gets one of its own. If compiling
    fails (no C++ compiler, an unsupported platform) the run warns once and goes on eagerly."""
    if not compiled or _compile_failed:
        return KERNELS[name](*args)
    if name not in _compiled:
        _compiled[name] = torch.compile(KERNELS[name], dynamic=True, fullgraph=True)
    try:
        return _compiled[name](*args)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        _compile_failed.append(reason)
        warnings.warn(f"compile: torch.compile failed ({reason}); using the eager kernels", stacklevel=2)
        return KERNELS[name](*args)


class _LIFThroughTime(torch.autograd.Function):
    """One autograd node for a layer's T steps: saves the pre-reset membranes and the spikes."""

    @staticmethod
    def forward(ctx, current, alpha, beta, threshold, reset, surrogate, compiled):
        spikes, pre, mem = _run_kernel("forward", compiled, current, alpha, beta, threshold, reset)
        ctx.save_for_backward(pre, spikes)
        ctx.constants = alpha, beta, threshold, reset, surrogate.grad_shape, surrogate.param
        ctx.compiled = compiled
        return spikes, mem

    @staticmethod
    def backward(ctx, grad_spikes, grad_mem):
        pre, spikes = ctx.saved_tensors
        grad = _run_kernel("backward", ctx.compiled, grad_spikes, grad_mem, pre, spikes, *ctx.constants)
        return grad, None, None, None, None, None, None


def run_through_time_bptt(neuron: nn.Module, current: torch.Tensor, compiled: bool = False):
    """One autograd node per layer (see the module docstring). The neuron's constants are fixed
    numbers here: a neuron that learns them takes the `fused` path."""
    if any(isinstance(p, nn.Parameter) for p in (neuron.alpha, neuron.beta, neuron.threshold)):
        return run_through_time_fused(neuron, current)
    alpha, beta = float(neuron.alpha.clamp(0, 1)), float(neuron.beta.clamp(0, 1))
    return _LIFThroughTime.apply(current, alpha, beta, float(neuron.threshold), int(neuron.reset_mechanism_val),
                                 neuron.spike_grad, compiled)


NEURON_BACKENDS = {"snntorch": run_through_time, "fused": run_through_time_fused, "bptt": run_through_time_bptt}


def neuron_backend(name: str, compiled: bool = False):
    """The backend `name`. `compiled` runs the bptt kernels through torch.compile; the other backends,
    kept as references, always run eagerly."""
    if name not in NEURON_BACKENDS:
        raise ValueError(f"neuron_backend must be one of {sorted(NEURON_BACKENDS)}, got {name!r}")
    return partial(run_through_time_bptt, compiled=True) if compiled and name == "bptt" else NEURON_BACKENDS[name]
