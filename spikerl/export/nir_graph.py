"""A trained spiking actor as a NIR graph (what runs on a neuromorphic chip) plus the host side.

On the chip: the layers of current-based LIF neurons, each an Affine (Linear when bias-free) node
feeding a CubaLIF node; a layer without a synaptic current (current decay 0: DSRL's first layer) is a
LIF node; a non-spiking readout is a CubaLI (LI) node whose membrane is the output, or an I node
(an integrator) where it does not leak either (DSRL's).
On the host: the observation normaliser, the encoder (NIR has no node for the regular population
encoder's subtract reset, nor for DSRL's two-neuron split), the decoder (PopSAN's grouped rate
read-out and tanh; NIR has no tanh) and the action scaling, as PopSAN kept them on Loihi.

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

from ..rl.evaluation import trained_actor
from ..snn.decoders import read_membrane
from ..snn.encoders import split_sign
from .quantize import QuantizedGraph, QuantizeError, from_written, quantize
from .simulate import simulate
from .snntorch_reader import check_with_snntorch

DT = 1e-4  # seconds per actor timestep in the NIR graph
UPDATE_ORDER = "current-first"  # the membrane integrates this step's synaptic current (snnTorch, Loihi)
BUNDLE_FORMAT = 1
GRAPH_FILE, HOST_FILE, INFO_FILE = "actor.nir", "host.npz", "bundle.json"


class ExportError(Exception):
    """An actor or bundle that cannot be exported or read; the message is one line for the user."""


def actor_kind(actor) -> str:
    """'popsan' (population decoder), 'dsrl' (non-spiking readout), 'ann' (MLP) or 'other'."""
    from ..rl.networks import MLPActor
    from ..snn.actors import DSRLSpikingActor, PopSpikingActor

    if isinstance(actor, PopSpikingActor):
        return "popsan"
    if isinstance(actor, DSRLSpikingActor):
        return "dsrl"
    if isinstance(actor, MLPActor):
        return "ann"
    return "other"


def refuse_unexportable(actor) -> str:
    kind = actor_kind(actor)
    if kind == "ann":
        raise ExportError("the MLP (ANN) actor has no spiking part to export to NIR "
                          "(use --energy-only for its MACs per action)")
    if kind == "other":
        raise ExportError(f"{type(actor).__name__} is not a spiking actor SpikeRL can export to NIR")
    from ..snn.decoders import MembraneDecoder, PopulationDecoder
    from ..snn.neurons import LIFSpec

    decoder = getattr(actor, "decoder", None)
    if kind == "popsan" and type(decoder) not in (PopulationDecoder, MembraneDecoder):
        raise ExportError(f"the NIR export does not know the decoder {type(decoder).__name__}: teach "
                          f"spikerl/export/nir_graph.py its nodes or host side first")
    if getattr(actor.snn, "norms", None) is not None:
        raise ExportError(f"the NIR export does not write normalisation layers ({type(actor.snn.norms[0]).__name__}, "
                          f"CaRe-BN): fold them into the synapses first")
    other = next((spec for spec in actor.snn.specs if not isinstance(spec, LIFSpec)), None)
    if other is not None:
        raise ExportError(f"NIR has no node for {other.name}, so this actor cannot be exported to NIR, nor its "
                          f"energy per action estimated")
    return kind


SPIKING_NODES = (nir.CubaLIF, nir.LIF)
NEURON_NODES = (*SPIKING_NODES, nir.CubaLI, nir.LI, nir.I)


def neuron_node(spec, neuron_module, n: int, dt: float = DT):
    """A layer of snnTorch `Synaptic` neurons (read through its LIFSpec) as a NIR neuron node: CubaLIF
    (CubaLI for a non-spiking readout); LIF (LI) where the layer has no synaptic current (alpha = 0);
    I for a readout that neither has a current nor leaks (alpha = 0, beta = 1)."""
    alpha, beta = spec.alpha, spec.beta
    integrator = alpha == 0.0 and beta == 1.0 and not spec.spiking
    if not (0.0 <= alpha < 1.0 and (0.0 <= beta < 1.0 or integrator)):
        raise ExportError(f"NIR's neuron nodes need decaying current and voltage (0 <= alpha, beta < 1), or neither "
                          f"for a readout; got alpha={alpha}, beta={beta}")
    graded = float(getattr(neuron_module, "graded_spikes_factor", 1.0))
    if graded != 1.0:
        raise ExportError(f"NIR spikes are 0/1; this layer's snnTorch graded_spikes_factor is {graded}")
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    if integrator:
        return nir.I(r=full(1.0 / dt))
    tau_mem = dt / (1.0 - beta)
    membrane = {"r": full(tau_mem / dt), "v_leak": full(0.0)}
    spiking = {"v_threshold": full(spec.threshold), "v_reset": full(0.0)} if spec.spiking else {}
    if alpha == 0.0:
        return (nir.LIF if spec.spiking else nir.LI)(tau=full(tau_mem), **membrane, **spiking)
    tau_syn = dt / (1.0 - alpha)
    common = {"tau_syn": full(tau_syn), "tau_mem": full(tau_mem), **membrane, "w_in": full(tau_syn / dt)}
    return (nir.CubaLIF if spec.spiking else nir.CubaLI)(**common, **spiking)


def synapse_node(linear: torch.nn.Linear):
    if linear.bias is None:
        return nir.Linear(weight=_numpy(linear.weight))
    return nir.Affine(weight=_numpy(linear.weight), bias=_numpy(linear.bias))


def decoder_neurons(decay: float, n: int, dt: float = DT):
    """A membrane decoder's neurons (v <- decay v + x) as a NIR node: I where they do not leak
    (decay 1, r = 1 / dt), else LI with tau = dt / (1 - decay) and r = tau / dt."""
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    if decay == 1.0:
        return nir.I(r=full(1.0 / dt))
    tau = dt / (1.0 - decay)
    return nir.LI(tau=full(tau), r=full(tau / dt), v_leak=full(0.0))


def build_graph(actor, dt: float = DT) -> tuple[nir.NIRGraph, list[str]]:
    """The actor's spiking part as a NIR graph, and the names of its neuron nodes in order.

    Connections inside the output population (ILC-SAN) are a Linear node on a recurrent edge from the
    output layer's neurons back to them (an edge that closes a cycle carries the previous step's
    spikes: spikerl/export/simulate.py); their bias joins the output layer's Affine bias. A membrane
    decoder runs on the chip too: an Affine node (zero across actions) into one I (or LI) neuron per
    action, whose membranes are the graph's output."""
    from ..snn.decoders import MembraneDecoder

    kind = refuse_unexportable(actor)
    layers = [(linear, spec, module) for linear, spec, module in
              zip(actor.snn.linears, actor.snn.specs, actor.snn.neurons)]
    if kind == "dsrl":
        layers.append((actor.readout, actor.readout_spec, actor.readout_neuron))
    conn = getattr(actor.snn, "connections", None)
    nodes = {"input": nir.Input(input_type={"input": np.array([actor.encoder.num_outputs])})}
    edges, neurons, previous = [], [], "input"
    for i, (linear, spec, module) in enumerate(layers, 1):
        node = neuron_node(spec, module, linear.out_features, dt)
        readout = "integrator" if isinstance(node, nir.I) else "li"
        syn, neu = (f"fc{i}", f"lif{i}") if spec.spiking else ("readout", readout)
        nodes[syn] = synapse_node(linear)
        nodes[neu] = node
        edges += [(previous, syn), (syn, neu)]
        neurons.append(neu)
        previous = neu
    if conn is not None:
        if conn.bias is not None:
            nodes[syn] = nir.Affine(weight=nodes[syn].weight, bias=_numpy(actor.snn.bias(len(actor.snn.linears) - 1)))
        if conn.recurrent:
            nodes["intra"] = nir.Linear(weight=_numpy(conn.full()))
            edges += [(previous, "intra"), ("intra", previous)]
    out_dim = layers[-1][0].out_features
    if isinstance(getattr(actor, "decoder", None), MembraneDecoder):
        decoder = actor.decoder
        nodes["decoder"] = nir.Affine(weight=_numpy(decoder.full()), bias=_numpy(decoder.bias))
        nodes["decoder_membrane"] = decoder_neurons(decoder.decay, decoder.act_dim, dt)
        edges += [(previous, "decoder"), ("decoder", "decoder_membrane")]
        neurons.append("decoder_membrane")
        previous, out_dim = "decoder_membrane", decoder.act_dim
    nodes["output"] = nir.Output(output_type={"output": np.array([out_dim])})
    edges.append((previous, "output"))
    metadata = {"producer": "spikerl", "dt": float(dt), "update_order": UPDATE_ORDER,
                "timesteps": int(actor.timesteps),
                "recurrent_edges": "an edge that closes a cycle carries its source's output of the previous step"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata), neurons


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


class Host:
    """The host side of an exported actor: raw observation -> encoder input [T, B, N] for the graph,
    and the graph's output [T, B, N] -> action in [-1, 1] -> the env's action. Computes exactly what
    the actor's own modules compute (same operations, same order, float32)."""

    def __init__(self, config: dict, arrays: dict[str, np.ndarray]):
        self.config, self.arrays = config, {k: np.asarray(v) for k, v in arrays.items()}
        t = lambda k: torch.from_numpy(np.ascontiguousarray(self.arrays[k]))  # noqa: E731
        self.timesteps = int(config["timesteps"])
        norm, enc, dec = config["normalizer"], config["encoder"], config["decoder"]
        self.norm_kind, self.clip = norm["kind"], float(norm["clip"])
        self.shift, self.scale = t("normalizer_shift"), t("normalizer_scale")
        self.encoder_kind, self.decoder_kind = enc["kind"], dec["kind"]
        if self.encoder_kind == "population":
            self.mean, self.std = t("encoder_mean").unsqueeze(0), t("encoder_std").unsqueeze(0)  # [1, D, P]
            self.spikes, self.threshold = enc["spikes"], float(enc["threshold"])
        elif self.encoder_kind != "two_neuron":
            raise ExportError(f"unknown host encoder {self.encoder_kind!r}")
        if self.decoder_kind == "population_rate":
            self.dec_weight, self.dec_bias = t("decoder_weight"), t("decoder_bias")
            self.act_dim, self.pop_dim = self.dec_weight.shape
        elif self.decoder_kind != "membrane_tanh":
            raise ExportError(f"unknown host decoder {self.decoder_kind!r}")
        self.readout = dec.get("readout", "last")
        self.low, self.high = self.arrays["action_low"], self.arrays["action_high"]

    @property
    def deterministic(self) -> bool:
        return not (self.encoder_kind == "population" and self.spikes == "poisson")

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        if self.norm_kind == "none":
            return raw
        out = (raw - self.shift) / self.scale
        return out.clamp(-self.clip, self.clip) if self.norm_kind == "zscore" else out

    def encode(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.encoder_kind == "two_neuron":
            current = split_sign(obs)
            return current.unsqueeze(0).expand(self.timesteps, *current.shape)
        act = torch.exp(-0.5 * (obs.unsqueeze(-1) - self.mean) ** 2 / self.std**2).reshape(obs.shape[0], -1)
        if self.spikes == "poisson":
            return torch.stack([(torch.rand(act.shape, generator=generator) < act).to(act.dtype)
                                for _ in range(self.timesteps)])
        volt = torch.zeros_like(act)
        out = []
        for _ in range(self.timesteps):
            volt = volt + act
            spike = (volt > self.threshold).to(volt.dtype)
            volt = volt - spike * self.threshold
            out.append(spike)
        return torch.stack(out)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        if self.decoder_kind == "membrane_tanh":
            return torch.tanh(read_membrane(output, self.readout))
        rate = output.mean(0).view(-1, self.act_dim, self.pop_dim)
        return torch.tanh((rate * self.dec_weight).sum(-1) + self.dec_bias)

    def scale_action(self, action: np.ndarray) -> np.ndarray:
        return self.low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)


def host_from_actor(actor, normalizer, action_low, action_high) -> Host:
    from ..snn.decoders import MembraneDecoder, PopulationDecoder
    from ..snn.encoders import PopulationEncoder, TwoNeuronEncoder

    shift, scale = normalizer._shift_scale("cpu")  # the float32 tensors the normaliser computes with
    arrays = {"normalizer_shift": shift.numpy().copy(), "normalizer_scale": scale.numpy().copy(),
              "action_low": np.asarray(action_low, np.float64), "action_high": np.asarray(action_high, np.float64)}
    config = {"timesteps": int(actor.timesteps),
              "normalizer": {"kind": normalizer.kind, "clip": normalizer.clip,
                             "formula": "zscore: clamp((o - shift) / scale, -clip, clip); maxabs: o / scale"}}
    enc = actor.encoder
    if isinstance(enc, PopulationEncoder):
        arrays["encoder_mean"] = enc.mean.detach().float().numpy()[0].copy()
        arrays["encoder_std"] = enc.std.detach().float().numpy()[0].copy()
        config["encoder"] = {"kind": "population", "pop_dim": enc.pop_dim, "spikes": enc.spikes,
                             "threshold": enc.threshold,
                             "input_index": "obs dim d, receptive field p -> input d * pop_dim + p"}
    elif isinstance(enc, TwoNeuronEncoder):
        config["encoder"] = {"kind": "two_neuron",
                             "input_index": "d -> max(o_d, 0); obs_dim + d -> max(-o_d, 0), every timestep"}
    else:
        raise ExportError(f"the host side has no encoder for {type(enc).__name__}")
    decoder = getattr(actor, "decoder", None)
    if isinstance(decoder, MembraneDecoder):
        config["decoder"] = {"kind": "membrane_tanh", "readout": decoder.readout,
                             "formula": "tanh of the decoder membranes (the graph's output) read by `readout`: "
                                        "last (the last step's), mean (over the steps) or max (the largest in "
                                        "magnitude)"}
    elif isinstance(decoder, PopulationDecoder):
        arrays["decoder_weight"] = decoder.weight.detach().float().numpy().copy()
        arrays["decoder_bias"] = decoder.bias.detach().float().numpy().copy()
        config["decoder"] = {"kind": "population_rate", "pop_dim": decoder.pop_dim,
                             "formula": "tanh(sum_p mean_t(spikes[t, a * pop_dim + p]) * weight[a, p] + bias[a])"}
    else:
        config["decoder"] = {"kind": "membrane_tanh", "formula": "tanh(membrane of the readout at the last timestep)"}
    return Host(config, arrays)


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


def _action_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    from ..rl.envs import ActionScaler, make_vec_env

    envs = make_vec_env(env_id, 1)
    try:
        scaler = ActionScaler(envs.single_action_space)
        return scaler.low, scaler.high
    finally:
        envs.close()


def build_bundle(state: dict, source: str = "", actor=None, normalizer=None) -> Bundle:
    """The bundle of a checkpoint's actor, in memory. Raises ExportError for an actor that cannot be
    exported (the MLP actor, anything NIR cannot express)."""
    if actor is None:
        actor, normalizer = trained_actor(state)
    meta = state["meta"]
    graph, neurons = build_graph(actor)
    low, high = _action_bounds(meta["env_id"])
    host = host_from_actor(actor, normalizer, low, high)
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
        "host": host.config,
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
    np.savez(folder / HOST_FILE, **bundle.host.arrays, **(bundle.quant.arrays() if bundle.quant else {}))
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
    if info.get("format") != BUNDLE_FORMAT:
        raise ExportError(f"{folder} holds bundle format {info.get('format')!r}; this SpikeRL reads {BUNDLE_FORMAT}")
    quant = from_written(info["quantization"], graph, arrays) if info.get("quantization") else None
    return Bundle(graph, list(info["graph"]["neurons"]), Host(info["host"], arrays), info, quant)


def quantized_bundle(bundle: Bundle, target: str, scheme: str = "int8") -> Bundle:
    """The bundle with its graph under a target's integer rules (spikerl/export/quantize.py): actor.nir
    then holds the weights the integers stand for, host.npz the integers, bundle.json the rules."""
    host = bundle.host
    input_range = None  # encoder spikes; DSRL's split of the normalised observation is real-valued
    if host.encoder_kind == "two_neuron":
        input_range = {"maxabs": 1.0, "zscore": host.clip}.get(host.norm_kind)
        if input_range is None:
            raise ExportError(f"cannot quantise for {target}: real-valued input needs a bounded normaliser "
                              f"(maxabs or zscore), this actor's is {host.norm_kind!r}")
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
    layer's spikes, the output (spikes, or the readout's last membrane) and the action."""
    from ..snn.decoders import MembraneDecoder

    obs = normalizer(raw_obs.float())
    x = actor.encoder(obs, actor.timesteps) if encoder_input is None else encoder_input
    encoder_out, layers = x, []
    for i in range(len(actor.snn.linears)):
        x = actor.snn.layer(i, x)
        layers.append(x)
    if actor_kind(actor) == "dsrl":
        _, membrane = actor.snn.run(actor.readout_spec, actor.readout(x).float())
        return {"encoder_input": encoder_out, "layers": layers, "output": membrane, "action": torch.tanh(membrane)}
    if isinstance(actor.decoder, MembraneDecoder):
        output = actor.decoder.membranes(x)
    else:
        output = x
    return {"encoder_input": encoder_out, "layers": layers, "output": output, "action": actor.decoder(x)}


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
    spiking = [name for name in bundle.neurons if isinstance(bundle.graph.nodes[name], SPIKING_NODES)]
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
