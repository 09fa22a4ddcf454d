"""Inference energy per action, estimated from operation counts and published per-operation energies.

Counts come from real evaluation episodes, run with the exported actor (its NIR graph simulated, its
host side on the host), per layer and timestep:

    synaptic ops    a layer whose input is binary (spikes): each presynaptic spike x its synapses (the
                    nonzero weights it feeds: fan-out, or its block's share for ILC-SAN's intra-layer
                    connections and grouped decoder)
    dense MACs      a layer whose input is real-valued (DSRL's two-neuron input): its nonzero weights per step
    neuron updates  neurons x timesteps (every neuron node: CubaLIF, LIF, CubaLI, LI, I, IF), once per node
    firing rate     spikes / (neurons x timesteps) of each spiking layer, and of its input

The ANN actor (`td3`'s MLP) does fan-in x fan-out MACs per layer whatever the input: counted from its
shapes. The host side (normaliser, encoder, decoder, tanh) is counted apart, in float adds and mults.

Per-operation energies (FIGURES) are cited where they are defined; `checked` says whether the figure
was checked against its primary source. Two estimates of the chip's energy per action are given:

    45nm   synaptic op = one 32-bit float add (an event adds a weight into a current), dense MAC =
           float mult + add, neuron update by node (UPDATE_OPS): CubaLIF 2 mults + 3 adds (two decays
           and sums, the threshold compare), CubaLI 2 + 2, LIF 1 + 2, LI 1 + 1, I 0 + 1, IF 0 + 2
           (an integrator into a Threshold node too; its subtracting reset is counted as the synaptic
           op of its -threshold synapse, one per spike), once per neuron and step; plus 1 add
           per neuron and step where the layer has a bias. All from Horowitz (ISSCC 2014), 45 nm;
           memory access is not counted. A graph quantised for Loihi (integer states) is priced with
           the same table's 32-bit integer add and multiply instead (`arithmetic`: int32).
    loihi  synaptic op = Loihi's energy per synaptic spike op (its minimum), neuron update = Loihi's
           neuron update energy (inactive), dense MACs as in `45nm` (Loihi 1 has no graded input):
           Davies et al. (IEEE Micro 2018), figures NOT checked against the paper (see FIGURES).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import nir
import numpy as np
import torch

from ..rl.evaluation import evaluate_policy, trained_actor
from ..rl.seeding import EVAL_SEED_OFFSET
from .nir_graph import Bundle, build_bundle
from .simulate import NEURON_NODES, SPIKING_NODES, node_order, predecessors

# (float mults, float adds) of one neuron's update at one timestep, by NIR node
UPDATE_OPS = {"CubaLIF": (2, 3), "CubaLI": (2, 2), "LIF": (1, 2), "LI": (1, 1), "I": (0, 1), "IF": (0, 2)}


@dataclass(frozen=True)
class Figure:
    pj: float
    what: str
    source: str
    checked: bool
    note: str = ""


_HOROWITZ = "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm, 0.9 V"
_DAVIES = "M. Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', IEEE Micro 38(1), 2018"
_UNCHECKED = ("quoted by secondary sources as the paper's table entry; the primary source could not be read "
              "here to check it: treat as unverified")

FIGURES = {
    # Horowitz (ISSCC 2014), table of 45 nm energies: 32-bit float add 0.9 pJ, 32-bit float mult 3.7 pJ
    "fp32_add": Figure(0.9, "32-bit float add", _HOROWITZ, True),
    "fp32_mult": Figure(3.7, "32-bit float multiply", _HOROWITZ, True),
    # the same table's integers: 32-bit add 0.1 pJ, 32-bit multiply 3.1 pJ (a quantised graph's 24-bit states)
    "int32_add": Figure(0.1, "32-bit integer add", _HOROWITZ, True),
    "int32_mult": Figure(3.1, "32-bit integer multiply", _HOROWITZ, True),
    # a multiply-accumulate: the two float figures added (4.6 pJ), as it is usually quoted
    "fp32_mac": Figure(4.6, "32-bit float multiply-accumulate (mult + add)", _HOROWITZ, True),
    # Davies et al. (IEEE Micro 2018), Loihi (14 nm): "energy per synaptic spike op (min)", 23.6 pJ
    "loihi_synaptic_op": Figure(23.6, "Loihi energy per synaptic spike op (minimum)", _DAVIES, False, _UNCHECKED),
    # Davies et al. (IEEE Micro 2018), Loihi: "neuron update (active / inactive)", 81 / 52 pJ; the inactive one
    "loihi_neuron_update": Figure(52.0, "Loihi energy per neuron update (inactive)", _DAVIES, False, _UNCHECKED),
}


def figures() -> dict:
    return {name: asdict(fig) for name, fig in FIGURES.items()}


def _pj(name: str) -> float:
    return FIGURES[name].pj


class OpCounter:
    """Per-layer operation counts of a bundle's graph, accumulated over the actions of episodes."""

    def __init__(self, bundle: Bundle):
        self.graph, self.T = bundle.graph, bundle.host.timesteps
        # a graph under the loihi rules adds and decays in integers; priced with Horowitz's integer figures
        self.arithmetic = "int32" if bundle.quant is not None and bundle.quant.target == "loihi" else "fp32"
        preds = predecessors(self.graph)
        succs: dict[str, list[str]] = {name: [] for name in self.graph.nodes}
        for src, dst in self.graph.edges:
            succs[src].append(dst)
        self.layers, updated = [], set()
        for name in node_order(self.graph):
            node = self.graph.nodes[name]
            if not isinstance(node, (nir.Affine, nir.Linear)):
                continue
            neuron = next((s for s in succs[name] if isinstance(self.graph.nodes[s], NEURON_NODES)), None)
            # an integrator into a Threshold node: integrate-and-fire neurons that reset by subtraction
            threshold = next((s for s in succs[neuron] if isinstance(self.graph.nodes[s], nir.Threshold)), None)
            kind = "IF" if threshold is not None else type(self.graph.nodes[neuron]).__name__
            fan_out, fan_in = node.weight.shape
            # synapses leaving each input: the nonzero weights of its column (a block matrix, such as
            # intra-layer connections or a grouped decoder, has fewer than fan_out)
            targets = torch.from_numpy((np.asarray(node.weight) != 0).sum(0).astype(np.float64))
            self.layers.append({"name": f"{name}->{neuron}", "synapses": name, "neurons": threshold or neuron,
                                "source": preds[name][0], "fan_in": int(fan_in), "fan_out": int(fan_out),
                                "targets": targets, "nonzero_weights": int(targets.sum()),
                                "bias": isinstance(node, nir.Affine),
                                "spiking": threshold is not None or isinstance(self.graph.nodes[neuron], SPIKING_NODES),
                                # a node fed by several synapse nodes (a recurrent one too) updates once a step
                                "updates": neuron not in updated, "neuron": kind})
            updated.add(neuron)
        self.actions = 0
        self.binary = {layer["name"]: True for layer in self.layers}
        zeros = lambda: np.zeros(self.T)  # noqa: E731
        self.in_spikes = {layer["name"]: zeros() for layer in self.layers}
        self.in_synops = {layer["name"]: zeros() for layer in self.layers}
        self.out_spikes = {layer["name"]: zeros() for layer in self.layers}

    def add(self, trace: dict, mask: torch.Tensor | np.ndarray | None = None) -> None:
        """Count one batch of actions (trace from Bundle.run(record=True)); `mask` [B] keeps the rows
        of envs still running."""
        x0 = trace[self.layers[0]["synapses"]][0]
        keep = torch.ones(x0.shape[1], dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        self.actions += int(keep.sum())
        for layer in self.layers:
            x = trace[layer["synapses"]][0][:, keep]
            if self.binary[layer["name"]] and not bool(((x == 0) | (x == 1)).all()):
                self.binary[layer["name"]] = False
            self.in_spikes[layer["name"]] += x.sum(dim=tuple(range(1, x.dim()))).double().numpy()
            synops = x.double() @ layer["targets"]  # [T, B]: each step's spikes times their synapses
            self.in_synops[layer["name"]] += synops.sum(dim=tuple(range(1, synops.dim()))).numpy()
            if layer["spiking"]:
                y = trace[layer["neurons"]][1][:, keep]
                self.out_spikes[layer["name"]] += y.sum(dim=tuple(range(1, y.dim()))).double().numpy()

    def result(self) -> dict:
        """Per action: each layer's counts and rates, totals, and the chip's energy under each estimate."""
        n = max(self.actions, 1)
        layers, totals = [], {"synaptic_ops": 0.0, "macs": 0.0, "neuron_updates": 0.0}
        e45 = eloihi = 0.0
        for layer in self.layers:
            name, fan_in, fan_out = layer["name"], layer["fan_in"], layer["fan_out"]
            binary = self.binary[name]
            per_t = self.in_spikes[name] / n
            syn_t = self.in_synops[name] / n if binary else np.zeros(self.T)
            macs = 0.0 if binary else float(self.T * layer["nonzero_weights"])
            updates = float(self.T * fan_out) if layer["updates"] else 0.0
            row = {"name": name, "fan_in": fan_in, "fan_out": fan_out, "nonzero_weights": layer["nonzero_weights"],
                   "input": "spikes" if binary else "real",
                   "input_rate": float(per_t.sum() / (self.T * fan_in)) if binary else None,
                   "synaptic_ops": float(syn_t.sum()), "synaptic_ops_per_timestep": [float(v) for v in syn_t],
                   "macs": macs, "neuron_updates": updates,
                   "firing_rate": float(self.out_spikes[name].sum() / n / (self.T * fan_out)) if layer["spiking"]
                   else None,
                   "neuron": layer["neuron"], "bias": layer["bias"]}
            layers.append(row)
            totals["synaptic_ops"] += row["synaptic_ops"]
            totals["macs"] += macs
            totals["neuron_updates"] += updates
            mults, adds = UPDATE_OPS[layer["neuron"]]
            add, mult = _pj(f"{self.arithmetic}_add"), _pj(f"{self.arithmetic}_mult")
            update_45 = mults * mult + adds * add + (add if layer["bias"] else 0.0)
            e45 += row["synaptic_ops"] * add + macs * _pj("fp32_mac") + updates * update_45
            eloihi += (row["synaptic_ops"] * _pj("loihi_synaptic_op") + macs * _pj("fp32_mac")
                       + updates * _pj("loihi_neuron_update"))
        return {"actions": self.actions, "layers": layers, "totals": totals, "arithmetic": self.arithmetic,
                "chip_pj": {"45nm": e45, "loihi": eloihi}}


def host_ops(host) -> dict:
    """Float operations of the host side per action (each part counts its own: spikerl/export/host.py),
    priced at 45 nm; exp, tanh and random numbers are counted but not priced."""
    ops = host.ops()
    return {**ops, "energy_pj_45nm": ops["adds"] * _pj("fp32_add") + ops["mults"] * _pj("fp32_mult")}


def ann_energy(actor, obs_dim: int) -> dict:
    """The MLP actor's dense MACs per action, from its shapes."""
    linears = [m for m in actor.modules() if isinstance(m, torch.nn.Linear)]
    layers = [{"name": f"fc{i}", "fan_in": m.in_features, "fan_out": m.out_features, "input": "real",
               "macs": float(m.in_features * m.out_features), "bias_adds": float(m.out_features if m.bias is not None
                                                                                 else 0)}
              for i, m in enumerate(linears, 1)]
    macs = sum(layer["macs"] for layer in layers)
    bias_adds = sum(layer["bias_adds"] for layer in layers)
    return {"layers": layers, "totals": {"synaptic_ops": 0.0, "macs": macs, "neuron_updates": 0.0,
                                         "bias_adds": bias_adds},
            "chip_pj": {"45nm": macs * _pj("fp32_mac") + bias_adds * _pj("fp32_add"), "loihi": None}}


def run_counted_episodes(bundle: Bundle, counter: OpCounter, env_id: str, episodes: int, seed: int,
                         max_episode_steps: int | None = None, generator: torch.Generator | None = None):
    """Run `episodes` evaluation episodes acting with the bundle (its host side scales the actions);
    count the operations of the envs still running. Returns (returns [episodes], recorded raw
    observations [n, obs_dim])."""
    last, recorded = {}, []

    def act(raw: torch.Tensor) -> torch.Tensor:
        last.update(bundle.run(raw, generator=generator, record=True))
        return last["action"]

    def observe(raw: torch.Tensor, running: np.ndarray) -> None:
        counter.add(last["trace"], running)
        recorded.append(raw[torch.as_tensor(running)])

    returns = evaluate_policy(act, env_id, episodes, seed, max_episode_steps, observe, bundle.host.scale_action)
    return returns, torch.cat(recorded)


def _megas(pj: dict) -> dict:
    return {k: (None if v is None else v * 1e-6) for k, v in pj.items()}


def _describe(source, state: dict) -> dict:
    meta = state["meta"]
    return {"source": "" if isinstance(source, dict) or not source else str(Path(source)), "method": meta.get("method"),
            "actor": meta.get("actor_name"), "env_id": meta["env_id"],
            "env_steps": (state.get("counters") or {}).get("env_steps"), "figures": figures()}


def spiking_energy(state: dict, bundle: Bundle, episodes: int = 2, seed: int | None = None,
                   max_episode_steps: int | None = None, source="") -> tuple[dict, torch.Tensor]:
    """`inference_energy` of a spiking actor whose bundle is built, and the raw observations the
    episodes went through [n, obs_dim] (for checking the round trip on them)."""
    if episodes <= 0:
        raise ValueError("episodes must be positive")
    meta = state["meta"]
    counter = OpCounter(bundle)
    seed = meta["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    generator = torch.Generator().manual_seed(seed)
    steps = meta.get("max_episode_steps") if max_episode_steps is None else max_episode_steps
    returns, recorded = run_counted_episodes(bundle, counter, meta["env_id"], episodes, seed, steps, generator)
    counts = counter.result()
    host = host_ops(bundle.host)
    energy = {**counts.pop("chip_pj"), "host_45nm": host["energy_pj_45nm"]}
    result = {**_describe(source, state), "kind": "spiking", "episodes": episodes, "seed": seed,
              "return_mean": float(np.mean(returns)), "returns": [float(r) for r in returns],
              "timesteps": bundle.host.timesteps, "dt": bundle.dt, **counts,
              "host": host, "energy_pj": energy, "energy_uj": _megas(energy)}
    return result, recorded


def inference_energy(source, episodes: int = 2, seed: int | None = None,
                     max_episode_steps: int | None = None) -> dict:
    """Energy per action of a checkpoint's actor (`source`: a run folder, a checkpoint file or a loaded
    checkpoint dict). Spiking actors: counted over `episodes` evaluation episodes (default seed: the
    run's evaluation seed, as `spikerl.evaluate`), acting with the exported bundle. The MLP actor:
    its MACs, from its shapes (no episodes needed). Raises CheckpointError / ExportError (one line).

    Returns {"source", "method", "actor", "kind" ("spiking" | "ann"), "env_id", "env_steps",
    "episodes", "actions", "return_mean", "timesteps", "dt", "layers": [{"name", "fan_in", "fan_out",
    "input", "input_rate", "synaptic_ops", "synaptic_ops_per_timestep", "macs", "neuron_updates",
    "firing_rate", ...}], "totals": {"synaptic_ops", "macs", "neuron_updates"}, "host": {"adds",
    "mults", "exps", "tanhs", "randoms", "energy_pj_45nm"}, "energy_pj": {"45nm", "loihi",
    "host_45nm"}, "energy_uj": (the same in µJ), "figures": FIGURES as dicts}; every count is per
    action; "loihi" is None for the ANN."""
    from ..runtime import checkpoint

    state = source if isinstance(source, dict) else checkpoint.load(source)
    meta = state["meta"]
    actor, normalizer = trained_actor(state)
    if getattr(actor, "spiking", None) is False:  # an ANN: dense MACs from its shapes
        counts = ann_energy(actor, meta["obs_dim"])
        host = {"adds": meta["obs_dim"], "mults": meta["obs_dim"], "exps": 0, "tanhs": meta["act_dim"], "randoms": 0}
        host["energy_pj_45nm"] = host["adds"] * _pj("fp32_add") + host["mults"] * _pj("fp32_mult")
        energy = {**counts.pop("chip_pj"), "host_45nm": host["energy_pj_45nm"]}
        return {**_describe(source, state), "kind": "ann", "episodes": 0, "actions": None, "return_mean": None,
                "timesteps": 1, "dt": None, **counts, "host": host, "energy_pj": energy, "energy_uj": _megas(energy)}
    bundle = build_bundle(state, _describe(source, state)["source"], actor, normalizer)
    return spiking_energy(state, bundle, episodes, seed, max_episode_steps, source)[0]


def energy_lines(result: dict) -> list[str]:
    """Human-readable lines of an `inference_energy` result."""
    e = result["energy_uj"]
    if result["kind"] == "ann":
        t = result["totals"]
        lines = [f"inference energy per action (ANN, dense): {t['macs']:,.0f} MACs -> {e['45nm']:.3f} µJ at 45 nm "
                 f"(Horowitz 2014 fp32 MAC 4.6 pJ); host normaliser {e['host_45nm'] * 1e6:.0f} pJ"]
        return lines
    t = result["totals"]
    ops = ", integer ops" if result.get("arithmetic") == "int32" else ""
    lines = [f"inference energy per action over {result['episodes']} episodes ({result['actions']:,} actions): "
             f"chip {e['45nm']:.3f} µJ at 45 nm (Horowitz 2014{ops}), {e['loihi']:.3f} µJ with Loihi's per-op figures "
             f"(Davies 2018, unverified); host side {e['host_45nm']:.3f} µJ at 45 nm",
             f"  per action: {t['synaptic_ops']:,.0f} synaptic ops, {t['macs']:,.0f} dense MACs, "
             f"{t['neuron_updates']:,.0f} neuron updates over {result['timesteps']} timesteps"]
    for layer in result["layers"]:
        rate = "-" if layer["input_rate"] is None else f"{layer['input_rate']:.3f}"
        fire = "- (readout)" if layer["firing_rate"] is None else f"{layer['firing_rate']:.3f}"
        lines.append(f"  {layer['name']} ({layer['fan_in']}->{layer['fan_out']}, {layer['input']} input): "
                     f"input rate {rate}, firing rate {fire}, {layer['synaptic_ops']:,.0f} synaptic ops, "
                     f"{layer['macs']:,.0f} MACs")
    return lines
