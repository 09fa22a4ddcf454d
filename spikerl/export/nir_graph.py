"""A trained spiking actor as a NIR graph (what runs on a neuromorphic chip) plus the host side.

On the chip: the layers of current-based LIF neurons, each an Affine (Linear when bias-free) node
feeding a CubaLIF node; a layer without a synaptic current (current decay 0: DSRL's first layer) is a
LIF node; a non-spiking readout is a CubaLI (LI) node whose membrane is the output, or an I node
(an integrator) where it does not leak either (DSRL's).
On the host (spikerl/export/host.py, the actor's own parts): the observation normaliser, the encoder
(NIR has no node for the regular population encoder's subtract reset, nor for DSRL's two-neuron
split), the decoder (PopSAN's grouped rate read-out and tanh; NIR has no tanh) and the action scaling,
as PopSAN kept them on Loihi.

snnTorch `Synaptic` -> CubaLIF, with one actor timestep = `DT` seconds (snnTorch's own exporter's
convention): tau_syn = DT / (1 - alpha), tau_mem = DT / (1 - beta), w_in = tau_syn / DT,
r = tau_mem / DT, v_leak = 0, v_threshold = threshold, v_reset = 0. Forward Euler at DT gives back
snnTorch's I <- alpha I + x and v <- beta v + I when the membrane integrates the current of the same
step (`UPDATE_ORDER`; see spikerl/export/simulate.py). With alpha = 0 the current is the input itself:
LIF (LI) with tau = tau_mem and the same r gives v <- beta v + x; with beta = 1 too, I with r = 1 / DT
gives v <- v + x. Time constants are stored in float64 so that 1 - DT / tau gives back the float32
alpha and beta exactly.

A bundle folder holds `actor.nir` (the graph, written with `nir.write`), `host.npz` (arrays) and
`bundle.json` (everything else, and how the round trip was checked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch

from ..errors import BAD_INPUT, SpikeRLError
from ..rl.evaluation import trained_actor
from .host import Host, HostError
from .quantize import QuantizedGraph, QuantizeError, from_written, quantize
from .simulate import SPIKE_SOURCES, simulate
from .snntorch_reader import check_with_snntorch

DT = 1e-4  # seconds per actor timestep in the NIR graph
UPDATE_ORDER = "current-first"  # the membrane integrates this step's synaptic current (snnTorch, Loihi)
# 3: a loihi bundle states its pipeline schedule (quantize.py); 2: the host's parts named by class
# (spikerl/export/host.py), read as 3 (it lacks only the schedule); 1 named the parts by kind
BUNDLE_FORMAT = 3
READS_FORMATS = (2, 3)
GRAPH_FILE, HOST_FILE, INFO_FILE = "actor.nir", "host.npz", "bundle.json"


class ExportError(SpikeRLError):
    """An actor or bundle that cannot be exported or read; the message is one line for the user."""

    exit_code = BAD_INPUT


def refuse_unexportable(actor) -> None:
    """ExportError (one line) for an actor NIR cannot express: an ANN, an actor that is not a SpikeRL
    spiking actor, a decoder without a host side, layers without a chip form."""
    spiking = getattr(actor, "spiking", None)
    if spiking is False:
        raise ExportError(f"the {type(actor).__name__} actor (an ANN) has no spiking part to export to NIR "
                          "(use --energy-only for its MACs per action)")
    if spiking is not True:
        raise ExportError(f"{type(actor).__name__} is not a spiking actor SpikeRL can export to NIR")
    decoder = getattr(actor, "decoder", None)
    if decoder is not None and not all(hasattr(decoder, m) for m in ("chip_layers", "chip_output", "host_part")):
        raise ExportError(f"the NIR export does not know the decoder {type(decoder).__name__}: give it chip_layers, "
                          f"chip_output and host_part (spikerl/snn/decoders.py)")
    try:
        actor.chip_layers()
    except ValueError as exc:
        raise ExportError(f"{exc}: this actor cannot be exported to NIR, nor its energy per action estimated") from None




def neuron_node(layer, n: int, dt: float = DT):
    """A layer's neurons (a ChipLayer: snnTorch `Synaptic` constants) as a NIR neuron node: CubaLIF
    (CubaLI for a non-spiking readout); LIF (LI) where the layer has no synaptic current (alpha = 0);
    IF (I for a readout) where it neither has a current nor leaks (alpha = 0, beta = 1)."""
    alpha, beta, spiking = layer.alpha, layer.beta, layer.threshold is not None
    integrator = alpha == 0.0 and beta == 1.0
    if not (0.0 <= alpha < 1.0 and (0.0 <= beta < 1.0 or integrator)):
        raise ExportError(f"NIR's neuron nodes need decaying current and voltage (0 <= alpha, beta < 1), or neither "
                          f"for a readout; got alpha={alpha}, beta={beta}")
    if layer.graded != 1.0:
        raise ExportError(f"NIR spikes are 0/1; this layer's snnTorch graded_spikes_factor is {layer.graded}")
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    if integrator:  # an integrate-and-fire neuron (ANN-to-SNN conversion's), or an integrator readout
        return nir.IF(r=full(1.0 / dt), v_threshold=full(layer.threshold), v_reset=full(0.0)) if spiking \
            else nir.I(r=full(1.0 / dt))
    tau_mem = dt / (1.0 - beta)
    membrane = {"r": full(tau_mem / dt), "v_leak": full(0.0)}
    threshold = {"v_threshold": full(layer.threshold), "v_reset": full(0.0)} if spiking else {}
    if alpha == 0.0:
        return (nir.LIF if spiking else nir.LI)(tau=full(tau_mem), **membrane, **threshold)
    tau_syn = dt / (1.0 - alpha)
    common = {"tau_syn": full(tau_syn), "tau_mem": full(tau_mem), **membrane, "w_in": full(tau_syn / dt)}
    return (nir.CubaLIF if spiking else nir.CubaLI)(**common, **threshold)


def subtracting_neurons(layer, n: int, name: str, dt: float = DT) -> tuple[dict, list, str]:
    """Integrate-and-fire neurons that reset by subtracting the threshold, which NIR's IF (reset to
    v_reset) cannot state, as three standard nodes: an integrator `<name>_v` (I), a Threshold `<name>`
    (the spikes, z = v > threshold) and a Linear `<name>_reset` (-threshold on the diagonal) on the
    recurrent edge back into the integrator. A recurrent edge carries the previous step's spikes, so
    v_t = v_{t-1} + x_t - threshold z_{t-1}: the pre-reset membrane of the subtracting neuron.
    Returns the nodes, the edges among them, and the node the layer's input goes into."""
    if not (layer.alpha == 0.0 and layer.beta == 1.0 and layer.threshold is not None):
        raise ExportError(f"reset by subtraction is written for integrate-and-fire neurons only; got alpha="
                          f"{layer.alpha}, beta={layer.beta}, threshold={layer.threshold}")
    if layer.graded != 1.0:
        raise ExportError(f"NIR spikes are 0/1; this layer's snnTorch graded_spikes_factor is {layer.graded}")
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    v, reset = f"{name}_v", f"{name}_reset"
    nodes = {v: nir.I(r=full(1.0 / dt)), name: nir.Threshold(threshold=full(layer.threshold)),
             reset: nir.Linear(weight=np.diag(full(-layer.threshold)).astype(np.float32))}
    return nodes, [(v, name), (name, reset), (reset, v)], v


def synapse_node(weight: torch.Tensor, bias: torch.Tensor | None):
    if bias is None:
        return nir.Linear(weight=_numpy(weight))
    return nir.Affine(weight=_numpy(weight), bias=_numpy(bias))


def build_graph(actor, dt: float = DT) -> tuple[nir.NIRGraph, list[str]]:
    """The actor's chip part (`chip_layers`) as a NIR graph, and the names of its neuron nodes in order.

    Each layer is an Affine (Linear when bias-free) node into its neuron node. Connections inside the
    output population (ILC-SAN) are a Linear node on a recurrent edge from the layer's neurons back to
    them (an edge that closes a cycle carries the previous step's spikes: spikerl/export/simulate.py);
    their bias is part of the layer's. Non-spiking layers after the spiking ones (DSRL's readout, a
    membrane decoder: one I or LI neuron per action) end the graph, their membranes its output."""
    refuse_unexportable(actor)
    nodes = {"input": nir.Input(input_type={"input": np.array([actor.encoder.num_outputs])})}
    edges, neurons, previous = [], [], "input"
    for i, layer in enumerate(actor.chip_layers(), 1):
        n = layer.weight.shape[0]
        syn, neu = layer.names or (f"fc{i}", f"lif{i}")
        nodes[syn] = synapse_node(layer.weight, layer.bias)
        if layer.reset == "subtract":
            own, inner, into = subtracting_neurons(layer, n, neu, dt)
        else:
            own, inner, into = {neu: neuron_node(layer, n, dt)}, [], neu
        nodes.update(own)
        edges += [(previous, syn), (syn, into), *inner]
        if layer.recurrent is not None:
            nodes["intra"] = nir.Linear(weight=_numpy(layer.recurrent))
            edges += [(neu, "intra"), ("intra", into)]
        neurons.append(neu)
        previous = neu
    nodes["output"] = nir.Output(output_type={"output": np.array([n])})
    edges.append((previous, "output"))
    metadata = {"producer": "spikerl", "dt": float(dt), "update_order": UPDATE_ORDER,
                "timesteps": int(actor.timesteps),
                "recurrent_edges": "an edge that closes a cycle carries its source's output of the previous step"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata), neurons


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


@dataclass
class Bundle:
    """An exported actor: the NIR graph, its neuron nodes in order, the host side and bundle.json."""

    graph: nir.NIRGraph
    neurons: list[str]
    host: Host
    info: dict
    quant: QuantizedGraph | None = None  # a quantised bundle: the graph under a target's rules

    @property
    def dt(self) -> float:
        return float(self.info["dt"])

    @torch.inference_mode()
    def run(self, raw_obs: torch.Tensor, encoder_input: torch.Tensor | None = None,
            generator: torch.Generator | None = None, record: bool = False) -> dict:
        """Raw observations [B, obs_dim] -> {"action" [B, act_dim] in [-1, 1], "encoder_input" [T, B, N],
        "output" (the graph's output [T, B, N]), "trace" (every node's (input, output), with record)}."""
        raw_obs = raw_obs.float()
        if encoder_input is None:
            encoder_input = self.host.encode(self.host.normalise(raw_obs), generator)
        if self.quant is not None:
            outputs, trace = self.quant.simulate(encoder_input, record=True)
        else:
            outputs, trace = simulate(self.graph, encoder_input, dt=self.dt, order=self.info["update_order"],
                                      record=True)
        output = outputs["output"]
        return {"action": self.host.decode(output), "encoder_input": encoder_input, "output": output,
                "trace": trace if record else None}


def _action_scaler(env_id: str):
    from ..rl.envs import ActionScaler, make_vec_env

    envs = make_vec_env(env_id, 1)
    try:
        return ActionScaler(envs.single_action_space)
    finally:
        envs.close()


def build_bundle(state: dict, source: str = "", actor=None, normalizer=None) -> Bundle:
    """The bundle of a checkpoint's actor, in memory. Raises ExportError for an actor that cannot be
    exported (the MLP actor, anything NIR cannot express)."""
    if actor is None:
        actor, normalizer = trained_actor(state)
    meta = state["meta"]
    graph, neurons = build_graph(actor)
    host = Host.of(actor, normalizer, _action_scaler(meta["env_id"]))
    host_config = host.state()[0]
    info = {
        "format": BUNDLE_FORMAT,
        "producer": "spikerl.export",
        "nir_version": getattr(nir, "__version__", "unknown"),
        "source": {"checkpoint": str(source), "method": meta.get("method"), "actor_name": meta.get("actor_name"),
                   "env_id": meta["env_id"], "env_steps": (state.get("counters") or {}).get("env_steps"),
                   "precision": meta.get("precision")},
        "obs_dim": meta["obs_dim"], "act_dim": meta["act_dim"], "timesteps": int(actor.timesteps),
        "dt": DT, "update_order": UPDATE_ORDER,
        "neuron_mapping": ("snnTorch Synaptic (alpha, beta, threshold, reset to zero) -> CubaLIF with tau_syn = "
                           "dt / (1 - alpha), tau_mem = dt / (1 - beta), w_in = tau_syn / dt, r = tau_mem / dt, "
                           "v_leak = 0, v_threshold = threshold, v_reset = 0 (CubaLI without the threshold); "
                           "alpha = 0 -> LIF (LI) with tau = tau_mem and the same r, v_leak, v_threshold, v_reset; "
                           "alpha = 0 and beta = 1 (a readout) -> I with r = 1 / dt; one actor timestep = dt seconds; "
                           "forward Euler at dt with the membrane integrating the current of the same step "
                           "(current-first, as snnTorch and Lava's Loihi LIF do) gives back I <- alpha I + x, "
                           "v <- beta v + I; integrating the previous step's current (plain forward Euler, NIR's "
                           "reference integrator) makes each layer one step later"),
        "graph": {"file": GRAPH_FILE, "input": "input", "output": "output", "neurons": neurons,
                  "nodes": {name: type(node).__name__ for name, node in graph.nodes.items()}},
        "host": host_config,
        "split": {"chip": "the NIR graph: Affine/Linear synapses and CubaLIF or LIF neurons (a CubaLI, LI or I "
                          "readout)",
                  "host": "normaliser, encoder, decoder (rate read-out or readout membrane, tanh), action scaling"},
        "arithmetic": "float32 weights and states (an actor trained under bf16 autocast is checked in float32)",
    }
    return Bundle(graph, neurons, host, info)


def write_bundle(bundle: Bundle, folder: Path) -> None:
    """Write the bundle's three files into `folder` (created; it must not exist)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    nir.write(folder / GRAPH_FILE, bundle.graph)
    np.savez(folder / HOST_FILE, **bundle.host.state()[1], **(bundle.quant.arrays() if bundle.quant else {}))
    (folder / INFO_FILE).write_text(json.dumps(bundle.info, indent=2) + "\n")


def read_bundle(folder: str | Path) -> Bundle:
    """Read a bundle folder back: the graph with `nir.read`, the host side from host.npz and bundle.json."""
    folder = Path(folder)
    try:
        info = json.loads((folder / INFO_FILE).read_text())
        graph = nir.read(folder / GRAPH_FILE)
        with np.load(folder / HOST_FILE) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"cannot read the bundle in {folder}: {type(exc).__name__}") from None
    if info.get("format") not in READS_FORMATS:
        raise ExportError(f"{folder} holds bundle format {info.get('format')!r}; this SpikeRL reads "
                          f"{' and '.join(map(str, READS_FORMATS))}: export it again")
    quant = from_written(info["quantization"], graph, arrays) if info.get("quantization") else None
    try:
        host = Host.read(info["host"], arrays)
    except (HostError, KeyError, ValueError) as exc:
        raise ExportError(f"cannot read the host side of the bundle in {folder}: {exc}") from None
    return Bundle(graph, list(info["graph"]["neurons"]), host, info, quant)


def graph_input_range(encoder, normalizer, target: str) -> float | None:
    """What `quantize` takes as `input_range` for an actor's encoder and normaliser: None where the
    graph's input is spikes, else the largest of the encoder's real values (DSRL's split of the
    observation); ExportError (one line) where those are unbounded or signed."""
    values = encoder.input_range(normalizer.bound)
    if values is not None and (values[0] is None or values[1] is None):
        raise ExportError(f"cannot quantise for {target}: real-valued input needs a bounded normaliser "
                          f"(maxabs or zscore), this actor's is {normalizer.kind!r}")
    if values is not None and values[0] < 0:
        raise ExportError(f"cannot quantise for {target}: {type(encoder).__name__} feeds signed real values; "
                          f"the chip's graded input is unsigned")
    return None if values is None else values[1]


def quantized_bundle(bundle: Bundle, target: str, scheme: str = "int8") -> Bundle:
    """The bundle with its graph under a target's integer rules (spikerl/export/quantize.py): actor.nir
    then holds the weights the integers stand for, host.npz the integers, bundle.json the rules."""
    input_range = graph_input_range(bundle.host.encoder, bundle.host.normalizer, target)
    try:
        quant = quantize(bundle.graph, target, scheme, input_range)
    except QuantizeError as exc:
        raise ExportError(f"cannot quantise for {target}: {exc}") from None
    info = {**bundle.info, "quantization": quant.rules(),
            "arithmetic": ("integer, as Lava's bit-accurate Loihi models compute" if target == "loihi" else
                           "int8 weights (dequantised in actor.nir), float32 neurons")}
    info["graph"] = {**info["graph"], "nodes": {name: type(node).__name__ for name, node in quant.graph.nodes.items()}}
    return Bundle(quant.graph, bundle.neurons, bundle.host, info, quant)


@torch.inference_mode()
def actor_reference(actor, normalizer, raw_obs: torch.Tensor, encoder_input: torch.Tensor | None = None) -> dict:
    """The trained actor's own computation, layer by layer, as its forward does it: encoder input, each
    layer's spikes, the output (`chip_output`: spikes, or readout membranes) and the action."""
    obs = normalizer(raw_obs.float())
    x = actor.encoder(obs, actor.timesteps) if encoder_input is None else encoder_input
    encoder_out, layers = x, []
    for i in range(len(actor.snn.linears)):
        x = actor.snn.layer(i, x)
        layers.append(x)
    return {"encoder_input": encoder_out, "layers": layers, "output": actor.chip_output(x),
            "action": torch.tanh(actor.decode(x))}


@torch.inference_mode()
def verify_round_trip(actor, normalizer, bundle: Bundle, raw_obs: torch.Tensor,
                      generator: torch.Generator | None = None) -> dict:
    """Run the bundle (its NIR graph simulated by spikerl.export.simulate) and the trained actor on the
    same raw observations, the actor fed the host encoder's input (the same Poisson spikes), and
    compare exactly. With a deterministic encoder the actor's own forward (its own encoder) is compared
    too; where snnTorch's importer can read the graph, what it computes is compared as well (`snntorch`,
    not part of `ok`). Returns {"observations", "layer_spikes_equal" [per neuron node], "output_equal",
    "actions_equal", "encoder_equal", "actor_forward_equal", "snntorch", "ok"}; None where a check does
    not apply."""
    raw_obs = raw_obs.float()
    ran = bundle.run(raw_obs, generator=generator, record=True)
    ref = actor_reference(actor, normalizer, raw_obs, ran["encoder_input"])
    spiking = [name for name in bundle.neurons if isinstance(bundle.graph.nodes[name], SPIKE_SOURCES)]
    layers = [torch.equal(ref_spikes, ran["trace"][name][1]) for ref_spikes, name in zip(ref["layers"], spiking)]
    # DSRL's readout: its last membrane; the others: the whole output (spikes, or decoder membranes)
    output = ran["output"][-1] if ref["output"].dim() < ran["output"].dim() else ran["output"]
    result = {"observations": int(raw_obs.shape[0]), "layer_spikes_equal": layers,
              "output_equal": torch.equal(ref["output"], output),
              "actions_equal": torch.equal(ref["action"], ran["action"]),
              "encoder_equal": None, "actor_forward_equal": None}
    result["snntorch"] = check_with_snntorch(bundle, ran["encoder_input"], ref)
    if bundle.host.deterministic:
        obs = normalizer(raw_obs)
        result["encoder_equal"] = torch.equal(actor.encoder(obs, actor.timesteps), ran["encoder_input"])
        result["actor_forward_equal"] = torch.equal(actor(obs).float(), ran["action"])
    result["ok"] = all(layers) and all(v is not False for k, v in result.items() if k.endswith("_equal"))
    return result
