"""Actors. All share one interface: `Actor(obs_dim, act_dim, ...)`, `forward(obs) -> action` with
obs normalised, shape [B, obs_dim], and action in [-1, 1], shape [B, act_dim] (the learner scales it
to the action space); `forward` is tanh of `unsquashed(obs)`, which a Gaussian policy (SAC) takes as
its mean.

Spiking actors run time-major ([T, B, N]) and layer by layer: a layer's input is known for all T
timesteps before the layer runs (no recurrence goes back a layer; connections inside the output
layer feed its own spikes forward in time), so each layer is one matmul over T * B rows, then its
neurons step through time. Neuron state lives in forward locals only.

LIF neurons are snnTorch `Synaptic` modules (constants, surrogate, reset rule), read once into a
`LIFSpec` per layer. `neuron_backend` chooses who steps them through time (spikerl/snn/through_time.py):
`snntorch` calls their forward; `fused` and `bptt` (default, fastest) compute the same recurrence from
the spec. Other neuron models (spikerl/snn/neurons.py) step themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn

from .connections import IntraConnections, connection_kinds
from .decoders import ChipLayer, MembraneReadout, PopulationDecoder
from .encoders import TwoNeuronEncoder
from .neurons import LIFSpec, current_lif, make_neuron, make_surrogate
from .through_time import neuron_backend


class SpikingLayers(nn.Module):
    """Fully connected layers of spiking neurons: [T, B, n_in] -> spikes [T, B, sizes[-1]].
    `neuron` is every layer's neuron settings, or a list of one per layer (spikerl/snn/neurons.py,
    `make_neuron`: snnTorch's current-based LIF by default, with `current_lif`'s settings and optionally
    `reset_gradient`; `model: dynamic` for MDC-SAN's dynamic neuron, which every backend computes with
    the same autograd loop). `connections` (spikerl/snn/connections.py), if given, are the last
    layer's connections to itself: its bias joins the input current, its weights feed the layer's
    spikes of each step into the next. `normalization` (spikerl/snn/normalization.py), if given, builds
    a layer between each layer's synapses and its neurons."""

    def __init__(
        self, n_in: int, sizes: Sequence[int], neuron: Mapping | Sequence[Mapping], surrogate: dict, bias: bool = True,
        backend: str = "bptt", compile: bool = False, connections: IntraConnections | None = None,
        normalization: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        self.run = neuron_backend(backend, compile)
        spike_fn = make_surrogate(**surrogate)
        widths = [n_in, *sizes]
        per_layer = [neuron] * len(sizes) if isinstance(neuron, Mapping) else list(neuron)
        self.linears = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(widths, widths[1:]))
        built = [make_neuron(n, spike_fn) for n in per_layer]
        self.neurons = nn.ModuleList(module for module, _ in built)
        self.specs = tuple(spec for _, spec in built)
        self.connections = connections
        # between each layer's synapses and its neurons (spikerl/snn/normalization.py), if any
        self.norms = nn.ModuleList(normalization(n) for n in sizes) if normalization is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.linears)):
            x = self.layer(i, x)
        return x

    def bias(self, i: int) -> torch.Tensor | None:
        """Layer i's input bias: its synapses', plus, for the last layer, its connections' (one sum, as
        the NIR export's one Affine node holds it)."""
        own = self.linears[i].bias
        extra = self.connections.bias if self.connections is not None and i == len(self.linears) - 1 else None
        return own if extra is None else extra if own is None else own + extra

    def chip_layers(self) -> list[ChipLayer]:
        """The layers as a chip computes them (spikerl/export/); ValueError naming what has no such form."""
        if self.norms is not None:
            raise ValueError(f"the NIR export does not write normalisation layers ({type(self.norms[0]).__name__}, "
                             f"CaRe-BN): fold them into the synapses first")
        other = next((spec for spec in self.specs if not hasattr(spec, "chip")), None)
        if other is not None:
            raise ValueError(f"NIR has no node for {other.name}")
        last = len(self.linears) - 1
        conn = self.connections
        return [ChipLayer(linear.weight, self.bias(i), *spec.chip(),
                          recurrent=conn.full() if i == last and conn is not None and conn.recurrent else None,
                          graded=float(getattr(module, "graded_spikes_factor", 1.0)))
                for i, (linear, spec, module) in enumerate(zip(self.linears, self.specs, self.neurons))]

    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Layer i's spikes [T, B, N] from its input [T, B, n_in]."""
        spec, linear = self.specs[i], self.linears[i]
        # the LIF through the chosen backend; another neuron model through its own `run`
        run = partial(self.run, spec) if isinstance(spec, LIFSpec) else spec.run
        conn = self.connections if i == len(self.linears) - 1 else None
        # under bf16 autocast the matmul runs in bf16; the membrane recurrence stays fp32
        current = nn.functional.linear(x, linear.weight, self.bias(i)).float()
        if self.norms is not None:
            current = self.norms[i](current)
        return run(current, recurrent=conn if conn is not None and conn.recurrent else None)[0]


def lif_settings(neuron: Mapping) -> dict:
    """A neuron config without `reset_gradient`, which is the spec's, not snnTorch's."""
    return {k: v for k, v in neuron.items() if k != "reset_gradient"}


class SpikingActor(nn.Module):
    """What the spiking actors share: an encoder of the observation over `timesteps` steps into fully
    connected spiking layers of widths `sizes`, and the action, tanh of what the subclass's `decode`
    reads from their spikes.

    Exported (spikerl/export/), the actor splits into the chip (`chip_layers`: the spiking layers and any
    non-spiking layers after them, whose output is `chip_output`) and the host (the encoder, and
    `host_decoder`, which turns the chip's output into the action), each part's own code."""

    spiking = True

    def __init__(self, obs_dim: int, encoder: Callable[[int], nn.Module], sizes: Sequence[int], timesteps: int,
                 neuron: Mapping | Sequence[Mapping], surrogate: dict, bias: bool, neuron_backend: str,
                 compile: bool, connections: IntraConnections | None = None,
                 normalization: Callable[[int], nn.Module] | None = None):
        super().__init__()
        self.timesteps = timesteps
        self.encoder = encoder(obs_dim)
        self.snn = SpikingLayers(self.encoder.num_outputs, sizes, neuron, surrogate, bias=bias, backend=neuron_backend,
                                 compile=compile, connections=connections, normalization=normalization)

    def spikes(self, obs: torch.Tensor) -> torch.Tensor:
        """The last spiking layer's spikes [T, B, sizes[-1]]."""
        return self.snn(self.encoder(obs, self.timesteps))

    def decode(self, spikes: torch.Tensor) -> torch.Tensor:
        """The action before its tanh from the last spiking layer's spikes [T, B, N]."""
        raise NotImplementedError

    def unsquashed(self, obs: torch.Tensor) -> torch.Tensor:
        """The action before its tanh (PopSAN-SAC's mean: the same network with an identity output)."""
        return self.decode(self.spikes(obs))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.unsquashed(obs))

    def chip_layers(self) -> list[ChipLayer]:
        raise NotImplementedError

    def chip_output(self, spikes: torch.Tensor) -> torch.Tensor:
        """What the chip outputs from the last spiking layer's spikes (spikes, or readout membranes)."""
        raise NotImplementedError

    def host_decoder(self):
        """The part that turns `chip_output` into the action on the host (spikerl/snn/decoders.py)."""
        raise NotImplementedError

    def recalibration(self) -> tuple[int, int, int] | None:
        """(every env steps, batches, batch size) of the normalisation layers' recalibration, or None."""
        norms = self.snn.norms
        if norms is None or not hasattr(norms[0], "recalibrating"):
            return None
        return norms[0].recalibrate_every, norms[0].recalibration_batches, norms[0].recalibration_batch_size

    @torch.no_grad()
    def recalibrate(self, batches: Sequence[torch.Tensor]) -> None:
        """Forward `batches` of normalised observations with the normalisation layers recalibrating:
        their statistics pooled over all of them become the moving ones."""
        norms = list(self.snn.norms or [])
        try:
            for i, obs in enumerate(batches):
                for norm in norms:
                    norm.recalibrating = (i, len(batches))
                self(obs)
        finally:
            for norm in norms:
                norm.recalibrating = None


class PopSpikingActor(SpikingActor):
    """PopSAN's population-coded spiking actor: population encoder -> LIF hidden layers -> LIF output
    populations (out_pop_dim neurons per action) -> rate decoding. Neurons are snnTorch `Synaptic`
    with PopSAN's constants by default (current decay 0.5, voltage decay 0.75, threshold 0.5,
    rectangular surrogate of half-width 0.5).

    The same actor composes ILC-SAN's: `connections` inside each output population
    (spikerl/snn/connections.py: a kind, `intra`, or a list of kinds; default none) and `decoder`, a
    factory (act_dim, pop_dim) -> decoder (spikerl/snn/decoders.py; default PopSAN's rate decoder); and
    CaRe-BN's `normalization`, a factory (features) -> layer between every layer's synapses and neurons
    (spikerl/snn/normalization.py; default none)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        encoder: Callable[[int], nn.Module],
        hidden_sizes: Sequence[int] = (256, 256),
        out_pop_dim: int = 10,
        timesteps: int = 5,
        neuron: dict | None = None,
        surrogate: dict | None = None,
        neuron_backend: str = "bptt",
        compile: bool = False,
        connections: str | Sequence[str] = (),
        decoder: Callable[[int, int], nn.Module] = PopulationDecoder,
        normalization: Callable[[int], nn.Module] | None = None,
    ):
        kinds = connection_kinds(connections)
        connected = IntraConnections(act_dim, out_pop_dim, kinds) if kinds else None
        super().__init__(obs_dim, encoder, [*hidden_sizes, act_dim * out_pop_dim], timesteps,
                         neuron or {"current_decay": 0.5, "voltage_decay": 0.75, "threshold": 0.5},
                         surrogate or {"name": "rectangular", "half_width": 0.5}, True, neuron_backend, compile,
                         connected, normalization)
        self.decoder = decoder(act_dim, out_pop_dim)

    def decode(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.decoder.unsquashed(spikes)

    def chip_layers(self) -> list[ChipLayer]:
        return [*self.snn.chip_layers(), *self.decoder.chip_layers()]

    def chip_output(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.decoder.chip_output(spikes)

    def host_decoder(self):
        return self.decoder.host_part()


class MembraneReadoutActor(SpikingActor):
    """A spiking actor read out by a non-spiking layer (`readout`, a Linear, into neurons of
    `readout_spec`, which the subclass sets) whose membrane after the last timestep, through tanh, is
    the action: on the chip the readout's membranes are the output, the host takes their tanh."""

    readout: nn.Linear
    readout_spec: LIFSpec

    def decode(self, spikes: torch.Tensor) -> torch.Tensor:
        """The readout's membrane after the last timestep: the action before its tanh."""
        _, membrane = self.snn.run(self.readout_spec, self.readout(spikes).float())
        return membrane

    def chip_layers(self) -> list[ChipLayer]:
        spec = self.readout_spec
        names = ("readout", "integrator" if spec.alpha == 0.0 and spec.beta == 1.0 else "li")
        readout = ChipLayer(self.readout.weight, self.readout.bias, spec.alpha, spec.beta, None, names=names)
        return [*self.snn.chip_layers(), readout]

    def chip_output(self, spikes: torch.Tensor) -> torch.Tensor:
        """The readout's last membrane [B, act_dim] (the chip's output at the last step)."""
        return self.decode(spikes)

    def host_decoder(self) -> MembraneReadout:
        return MembraneReadout(self.readout.out_features, "last")


DSRL_NEURON = {"current_decay": 0.5, "voltage_decay": 0.5, "threshold": 1.0, "reset_gradient": False}


class DSRLSpikingActor(MembraneReadoutActor):
    """DSRL's spiking actor as its published code computes it (mahmoudakl/dsrl, src/model.py,
    `TD3ActorDSNN.forward`): two-neuron input coding -> bias-free LIF hidden layers -> a bias-free,
    non-spiking readout whose membrane after the last timestep, through tanh, is the action. Weights
    are drawn from N(0, 1/sqrt(fan_in)).

    Layer by layer, as published: `neuron` is the hidden layers' (current decay 0.5, voltage decay
    0.5, reset to zero by masked assignment, so no gradient through the reset; keys it leaves out keep
    these values); `first_layer`
    overrides it for the first hidden layer, whose input drives the membrane directly (no synaptic
    current: current decay 0); `readout` overrides it for the readout, which only sums its input
    (no current, no leak: mem = mem + W s). The published `simulation_time` of 5 steps spends its
    step 0 on initialising the state, so `timesteps` = 4 network updates reproduce it."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        encoder: Callable[[int], nn.Module],
        hidden_sizes: Sequence[int] = (400, 300),
        timesteps: int = 4,
        neuron: dict | None = None,
        first_layer: dict | None = None,
        readout: dict | None = None,
        surrogate: dict | None = None,
        neuron_backend: str = "bptt",
        compile: bool = False,
    ):
        neuron = {**DSRL_NEURON, **(neuron or {})}
        first = {**neuron, **({"current_decay": 0.0} if first_layer is None else first_layer)}
        per_layer = [first] + [neuron] * (len(hidden_sizes) - 1)
        readout = {**neuron, **({"current_decay": 0.0, "voltage_decay": 1.0} if readout is None else readout)}
        surrogate = surrogate or {"name": "fast_sigmoid", "slope": 100.0}
        super().__init__(obs_dim, encoder, hidden_sizes, timesteps, per_layer, surrogate, False, neuron_backend,
                         compile)
        self.readout = nn.Linear(hidden_sizes[-1], act_dim, bias=False)
        self.readout_neuron = current_lif(**lif_settings(readout), surrogate=make_surrogate(**surrogate),
                                          spiking=False)
        self.readout_spec = LIFSpec.of(self.readout_neuron)
        for linear in [*self.snn.linears, self.readout]:
            nn.init.normal_(linear.weight, 0.0, 1.0 / math.sqrt(linear.in_features))


class ConvertedActor(MembraneReadoutActor):
    """An ANN actor converted into integrate-and-fire neurons (spikerl/convert.py): the normalised
    observation as a constant input current, split into its positive and negative parts (two input
    neurons per dim, as DSRL's: a chip's graded spikes are non-negative), integrate-and-fire hidden
    layers (threshold 1, reset by subtraction or to zero: spikerl/snn/neurons.py, IFSpec) whose firing
    rates stand for the ANN's ReLU activations, and a non-spiking integrator readout with a bias whose
    membrane after the last timestep, through tanh, is the action. The conversion sets the weights (each
    layer's scaled by its input's and its own activation scale, the readout's by 1 / T as well, so its
    membrane is the time mean of what the ANN's last layer computes from the rates); built here, the
    actor has random weights like any other."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256), timesteps: int = 32,
                 reset: str = "subtract", neuron_backend: str = "bptt", compile: bool = False):
        if timesteps < 1:
            raise ValueError(f"a converted actor needs at least one timestep, got {timesteps}")
        surrogate = {"name": "fast_sigmoid", "slope": 100.0}  # for gradients only; the conversion trains nothing
        super().__init__(obs_dim, TwoNeuronEncoder, hidden_sizes, timesteps,
                         {"model": "if", "threshold": 1.0, "reset": reset}, surrogate, True, neuron_backend, compile)
        self.readout = nn.Linear(hidden_sizes[-1], act_dim)
        self.readout_spec = LIFSpec.of(current_lif(current_decay=0.0, voltage_decay=1.0, threshold=1.0,
                                                   surrogate=make_surrogate(**surrogate), spiking=False))
