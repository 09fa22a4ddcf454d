"""Spiking neurons, and the one place that touches snnTorch.

snnTorch `Synaptic` modules define each layer's neurons (constants, surrogate, reset rule) and are what
the actors hold and save. Everything else reads them through `LIFSpec.of`, once, into a frozen spec of
plain numbers that the kernels in `through_time` compute with; `run_snntorch` (snnTorch's own forward,
the reference backend) is the only caller of a module's forward and the only user of its state buffers.

The surrogates are module-level classes (not closures) so that neurons holding them can be pickled
and deep-copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class LIFSpec:
    """A layer's current-based LIF neurons as numbers: c = alpha c + I; u = beta m + c;
    z = surrogate(u - threshold); m = u - z u when `spiking` (reset to zero), else m = u.

    `reset_gradient` is the reset's convention in the backward pass: True differentiates m = u - z u
    through the spike z too (snnTorch's and PopSAN's code); False treats the reset as a masked
    assignment, m = 0 where z, so dm/du = 1 - z and nothing flows through z (DSRL's code)."""

    alpha: float
    beta: float
    threshold: float
    spiking: bool
    surrogate: Surrogate
    module: snntorch.Synaptic = field(compare=False, repr=False)  # for the snnTorch reference backend
    reset_gradient: bool = True

    @classmethod
    def of(cls, neuron: snntorch.Synaptic, reset_gradient: bool = True) -> LIFSpec:
        """Read a `Synaptic` built by `current_lif` (the reset's gradient convention is not a snnTorch
        setting, so it comes beside it). Anything the kernels do not compute (learned constants, a
        subtract or delayed reset) is refused rather than computed wrongly."""
        mechanism = neuron.reset_mechanism
        learned = [n for n in ("alpha", "beta", "threshold") if isinstance(getattr(neuron, n), torch.nn.Parameter)]
        if learned or mechanism not in ("zero", "none") or neuron.reset_delay:
            raise ValueError(f"SpikeRL's neuron kernels need fixed constants and reset_delay=False with a zero or no "
                             f"reset; got learned {learned}, reset {mechanism!r}, reset_delay={neuron.reset_delay}")
        return cls(alpha=float(neuron.alpha.clamp(0, 1)), beta=float(neuron.beta.clamp(0, 1)),
                   threshold=float(neuron.threshold), spiking=mechanism == "zero", surrogate=neuron.spike_grad,
                   module=neuron, reset_gradient=bool(reset_gradient))

    def chip(self) -> tuple[float, float, float | None, str]:
        """(current decay, voltage decay, threshold or None for a readout, reset) as a chip layer holds them."""
        return self.alpha, self.beta, self.threshold if self.spiking else None, "zero"


def step_input(current: torch.Tensor, t: int, recurrent, spikes: torch.Tensor) -> torch.Tensor:
    """A layer's input at step t: I_t, plus `recurrent` of its own spikes of step t - 1 when the layer
    is fed them back (intra-layer connections; nothing at the first step, whose previous spikes are 0)."""
    return current[t] if recurrent is None or t == 0 else current[t] + recurrent(spikes)


def run_snntorch(spec: LIFSpec, current: torch.Tensor, recurrent=None) -> tuple[torch.Tensor, torch.Tensor]:
    """snnTorch's own forward, one call per timestep, from zero state: spikes [T, B, N] and the final
    (post-reset) membrane [B, N]. The reference the faster backends are tested against. `recurrent`, if
    given, maps the previous step's spikes to more input current (intra-layer connections).

    snnTorch always differentiates its reset through the spike. For `reset_gradient=False` the
    membrane carried on keeps snnTorch's value and only its gradient is replaced by the masked
    assignment's, (1 - z) du, with u = beta m + c the pre-reset membrane of snnTorch's own update."""
    neuron = spec.module
    syn = torch.zeros_like(current[0])
    mem = torch.zeros_like(current[0])
    spikes = []
    spk = torch.zeros_like(current[0])
    for t in range(current.shape[0]):
        previous = mem
        spk, syn, mem = neuron(step_input(current, t, recurrent, spk), syn, mem)
        if spec.spiking and not spec.reset_gradient:
            pre = neuron.beta.clamp(0, 1) * previous + syn
            mem = mem.detach() + (1.0 - spk.detach()) * (pre - pre.detach())
        spikes.append(spk)
    # snnTorch keeps the last state (and its autograd graph) in the module's buffers, which breaks
    # deepcopy and holds memory: drop it, state is always passed explicitly here
    neuron.syn = torch.zeros(0, device=neuron.syn.device)
    neuron.mem = torch.zeros(0, device=neuron.mem.device)
    return torch.stack(spikes), mem


@dataclass(frozen=True)
class DynamicSpec:
    """MDC-SAN's dynamic neuron (lucifer2859/ILC-SAN, ilcsan-td3/mdcsan.py, `SpikeMLP.neuron_model`;
    the PDSAN paper, arXiv 2106.07854): a synaptic current c = alpha c + I and a second-order voltage v
    with a resistance variable r. After a spike z of the previous step, v = v (1 - z) + theta_r z and
    r = r + theta_s z; then, from those v and r,

        v <- v + (v^2 - v - r + c)        r <- r + (theta_v v - theta_u r)        z = surrogate(v - threshold)

    Gradients flow through the reset's spike, as published.

    A neuron model other than the LIF brings its own `run` (every backend, and a compiled update,
    which traces the loop into its graph, computes it with autograd); `name` is what messages call it."""

    alpha: float
    threshold: float
    theta_v: float
    theta_u: float
    theta_r: float
    theta_s: float
    surrogate: Surrogate
    spiking: bool = True
    name = "MDC-SAN's dynamic neuron (a second-order voltage with a resistance variable)"

    def run(self, current: torch.Tensor, recurrent=None) -> tuple[torch.Tensor, torch.Tensor]:
        """T steps from zero state: the spikes [T, B, N] and the last voltage [B, N]. `recurrent` maps
        the previous step's spikes to more input current (intra-layer connections)."""
        syn = torch.zeros_like(current[0])
        v = torch.zeros_like(current[0])
        r = torch.zeros_like(current[0])
        z = torch.zeros_like(current[0])
        spikes = []
        for t in range(current.shape[0]):
            syn = self.alpha * syn + step_input(current, t, recurrent, z)
            v = v * (1.0 - z) + self.theta_r * z
            r = r + self.theta_s * z
            # as published: v + (v^2 - v - r + c) and r + (theta_v v - theta_u r), from the same v and r
            v, r = v + (v * v - v - r + syn), r + (self.theta_v * v - self.theta_u * r)
            z = self.surrogate(v - self.threshold)
            spikes.append(z)
        return torch.stack(spikes), v


class DynamicNeuron(torch.nn.Module):
    """A layer's dynamic neurons (`DynamicSpec`), held by the actor like its snnTorch neurons. The
    constants are MDC-SAN's published ones by default; they are fixed, not learned, as published."""

    def __init__(self, *, current_decay: float = 0.5, threshold: float = 0.5, theta_v: float = -0.172,
                 theta_u: float = 0.529, theta_r: float = 0.021, theta_s: float = 0.132, surrogate):
        super().__init__()
        self.spec = DynamicSpec(float(current_decay), float(threshold), float(theta_v), float(theta_u),
                                float(theta_r), float(theta_s), surrogate)

    def extra_repr(self) -> str:
        s = self.spec
        return (f"current_decay={s.alpha}, threshold={s.threshold}, theta_v={s.theta_v}, theta_u={s.theta_u}, "
                f"theta_r={s.theta_r}, theta_s={s.theta_s}")


RESETS = ("subtract", "zero")


@dataclass(frozen=True)
class IFSpec:
    """Integrate-and-fire neurons without leak or synaptic current, the neuron of ANN-to-SNN conversion
    (spikerl/convert.py): u = m + I; z = surrogate(u - threshold); then m = u - threshold z (reset by
    subtraction, which keeps the charge above the threshold: rate coding's residual) or m = u - z u
    (reset to zero). Spikes where u > threshold, strictly, as NIR, snnTorch and Lava do.

    With subtraction the pre-reset u is carried, u_t = u_{t-1} + (I_t - threshold z_{t-1}): the same
    numbers, summed in the order of the NIR form (an integrator fed its own spikes times -threshold:
    spikerl/export/nir_graph.py), so that the export's round trip holds to the bit."""

    threshold: float
    reset: str
    surrogate: Surrogate
    spiking: bool = True
    name = "integrate-and-fire neurons"

    def __post_init__(self):
        if self.reset not in RESETS:
            raise ValueError(f"integrate-and-fire reset must be one of {list(RESETS)}, got {self.reset!r}")

    def run(self, current: torch.Tensor, recurrent=None) -> tuple[torch.Tensor, torch.Tensor]:
        """T steps from zero state: the spikes [T, B, N] and the last (post-reset) membrane [B, N]."""
        u = torch.zeros_like(current[0])
        z = torch.zeros_like(current[0])
        spikes = []
        for t in range(current.shape[0]):
            x = step_input(current, t, recurrent, z)
            u = u + (x - self.threshold * z) if self.reset == "subtract" else (u - z * u) + x
            z = self.surrogate(u - self.threshold)
            spikes.append(z)
        return torch.stack(spikes), u - z * (self.threshold if self.reset == "subtract" else u)

    def chip(self) -> tuple[float, float, float, str]:
        """(current decay, voltage decay, threshold, reset) as a chip layer holds them (spikerl/snn/decoders.py)."""
        return 0.0, 1.0, self.threshold, self.reset


class IFNeuron(torch.nn.Module):
    """A layer's integrate-and-fire neurons (`IFSpec`), held by the actor like its snnTorch neurons."""

    def __init__(self, *, threshold: float = 1.0, reset: str = "subtract", surrogate):
        super().__init__()
        self.spec = IFSpec(float(threshold), reset, surrogate)

    def extra_repr(self) -> str:
        return f"threshold={self.spec.threshold}, reset={self.spec.reset!r}"


NEURON_MODELS = ("lif", "dynamic", "if")


def make_neuron(settings, surrogate) -> tuple[torch.nn.Module, LIFSpec | DynamicSpec]:
    """A layer's neurons from its config (`model`: lif, the default, dynamic, or if; the model's constants;
    a LIF layer may add `reset_gradient`): the module the actor holds and the spec the kernels use.
    A new neuron model is a spec with `run` and `name` and a module here, an entry in NEURON_MODELS,
    its config and its tests; the actors, the checkpoints and the export need no change (the export
    takes a spec with `chip()`, its constants as a chip holds them, and refuses any other in one line,
    with its `name`)."""
    settings = dict(settings)
    model = settings.pop("model", "lif")
    if model not in NEURON_MODELS:
        raise ValueError(f"unknown neuron model {model!r}; choose one of {list(NEURON_MODELS)}")
    if model in ("dynamic", "if"):
        module = (DynamicNeuron if model == "dynamic" else IFNeuron)(**settings, surrogate=surrogate)
        return module, module.spec
    reset_gradient = settings.pop("reset_gradient", True)
    module = current_lif(**settings, surrogate=surrogate)
    return module, LIFSpec.of(module, reset_gradient)
