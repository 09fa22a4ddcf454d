"""Quantised deployment: an exported actor's NIR graph under a target's integer rules, and a simulator
of the result in that target's arithmetic (`python -m spikerl.export RUN --quantize int8 --target T`).

Targets (TARGETS):

    loihi   Loihi as Lava's bit-accurate process models state it (lava-nc 0.10.0: PyDenseModelBitAcc in
            lava/proc/dense/models.py, PyLifModelBitAcc in lava/proc/lif/models.py, lava/utils/weightutils.py).
            Synapses: 8-bit mantissas in Loihi's mixed-sign mode (even values in [-256, 254]) with one
            exponent per synapse group, e in [-8, 7]; a group's input to a neuron is its summed mantissas
            shifted left by e, or arithmetically right (floor) by -e. Neurons, in integers:
                u <- trunc(u (4096 - du - 1) / 4096) + (a_in << 6), wrapped into (-2^23, 2^23]
                v <- trunc(v (4096 - dv) / 4096) + u, clipped to +-(2^23 - 1)
                spike where v > vth << 6 (vth: 17 bits), then v <- 0
            with trunc rounding toward zero, du and dv 12-bit. A layer's bias (NIR adds it to the synaptic
            current; Loihi's compartment bias goes to v) is a synapse group of its own from an input that
            spikes at every step. Each neuron node gets one unit (the float value of one a_in step, so u and
            v count units / 64): for a spiking node the threshold over a whole number of units (the
            threshold is exact), for a readout the range its state can reach; the unit is chosen so that no
            state can leave its 24 bits in one action's T steps whatever the input spikes (a bound from the
            weights and decays; every action starts from zero states). Real-valued input (DSRL's
            two-neuron split) goes as 8-bit graded spikes (Lava's Dense with num_message_bits = 8;
            Loihi 2), one step = the input's range / 255.
    float   int8 weights with one scale per synapse node (symmetric, [-127, 127]), biases in int32 at the
            same scale; neurons in float32 (a chip or accelerator with float neurons).

Pipelining (`schedule`, `simulate_pipelined`): Lava's Dense, like the chip's synapses, delivers its
output one timestep later, so a graph of L synapse layers is a pipeline. The schedule says when each
neuron node's bias input spikes and when its state resets so that the pipelined run computes what
`simulate_fixed` computes, L steps later. Lava passes a_in on without saturating it (the chip's
dendritic accumulator is 16 bits wide: `rules()` reports the largest a_in the weights can make) and
wraps u once where this simulator wraps it fully; the two agree while |a_in| < 2^18, which the export
checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch

from ..errors import BAD_INPUT, SpikeRLError
from .simulate import NEURON_NODES, SPIKING_NODES, graph_dt, order_and_back_edges, predecessors, simulate

TARGETS = ("loihi", "float")
SCHEMES = ("int8",)

STATE_BITS = 24           # Loihi u and v
STATE_MAX = 2 ** (STATE_BITS - 1) - 1
DECAY_BITS = 12           # du, dv: 12 bits; decays act through a 12-bit shift
DECAY_ONE = 2 ** DECAY_BITS
ACT_SHIFT = VTH_SHIFT = 6  # a_in and vth are shifted left by 6 (MSB alignment)
VTH_MAX = 2 ** 17 - 1
MANT_MIN, MANT_MAX = -256, 254  # mixed-sign 8-bit weights: stored as 7 bits + sign, shifted left by 1
EXP_MIN, EXP_MAX = -8, 7
A_IN_BITS = 16            # the chip's dendritic accumulator
INPUT_BITS = 8            # graded spikes of real-valued input (Lava's Dense num_message_bits; Loihi 2)
# Lava wraps u once (u += 2^24 or -= 2^24) where wrap24 wraps fully; with |u| <= 2^23 before the input, the
# two agree while |a_in << 6| < 2^24
A_IN_WRAP_SAFE = 2 ** (STATE_BITS - ACT_SHIFT)
SYNAPSE_DELAY = 1         # Lava's Dense (and the chip's synapses) deliver one step after their input


class QuantizeError(SpikeRLError):
    """A graph that a target's rules cannot express; the message is one line."""

    exit_code = BAD_INPUT


def neuron_decays(node, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron (alpha, beta) of a NIR neuron node at step dt, as the float simulator steps it."""
    a = lambda v: np.asarray(v, np.float64)  # noqa: E731
    if isinstance(node, (nir.I, nir.IF)):
        n = a(node.r).shape
        return np.zeros(n), np.ones(n)
    if isinstance(node, (nir.LIF, nir.LI)):
        beta = 1.0 - dt / a(node.tau)
        return np.zeros_like(beta), beta
    return 1.0 - dt / a(node.tau_syn), 1.0 - dt / a(node.tau_mem)


def _uniform(values: np.ndarray, what: str, name: str) -> float:
    flat = np.asarray(values, np.float64).ravel()
    if not np.all(flat == flat[0]):
        raise QuantizeError(f"node {name!r} has per-neuron {what}s; the targets share one per node")
    return float(flat[0])


def _check_export_form(name: str, node, dt: float) -> None:
    """The integer targets take the neuron form the export writes: unit gains, no leak potential, reset to 0."""
    a = lambda v: np.asarray(v, np.float64)  # noqa: E731
    gains = []
    if isinstance(node, (nir.I, nir.IF)):
        gains.append(a(node.r) * dt)
    elif isinstance(node, (nir.LIF, nir.LI)):
        gains.append(a(node.r) * dt / a(node.tau))
    else:
        gains += [a(node.w_in) * dt / a(node.tau_syn), a(node.r) * dt / a(node.tau_mem)]
    if not all(np.allclose(g, 1.0, rtol=1e-9, atol=0) for g in gains):
        raise QuantizeError(f"node {name!r}: the integer targets need unit input gains (as the export writes them)")
    if not isinstance(node, (nir.I, nir.IF)) and np.any(a(node.v_leak) != 0):
        raise QuantizeError(f"node {name!r} has a nonzero v_leak, which the integer targets have no register for")
    if isinstance(node, SPIKING_NODES) and np.any(a(node.v_reset) != 0):
        raise QuantizeError(f"node {name!r} resets to a nonzero v_reset; Loihi resets to 0")


def _exponent(largest: float) -> int:
    """The smallest exponent e in [-8, 7] with largest / 2^e <= 254 (the mantissa's range)."""
    if largest == 0:
        return 0
    e = max(EXP_MIN, int(np.ceil(np.log2(largest / MANT_MAX))))
    while largest / 2.0**e > MANT_MAX:  # guard the log's rounding
        e += 1
    if e > EXP_MAX:
        raise QuantizeError(f"a weight of {largest:.3g} units needs a weight exponent above {EXP_MAX}")
    return e


def loihi_mantissas(x: np.ndarray, e: int) -> np.ndarray:
    """Values in a_in units -> Loihi mixed-sign mantissas at exponent e: even integers in [-256, 254]
    (round to the nearest even number, then clip)."""
    return np.clip(2 * np.round(np.asarray(x, np.float64) / 2.0**e / 2), MANT_MIN, MANT_MAX).astype(np.int64)


def shift(total: torch.Tensor, e: int) -> torch.Tensor:
    """Lava's Dense output: the summed mantissas shifted left by e, or arithmetically right (floor) by -e."""
    return total * (1 << e) if e >= 0 else torch.div(total, 1 << -e, rounding_mode="floor")


def graded_spikes(x: torch.Tensor, step: float) -> torch.Tensor:
    """Real-valued input >= 0 as unsigned 8-bit graded spikes: round(x / step), saturated at 255."""
    return torch.clamp(torch.round(x.double() / step), 0, 2**INPUT_BITS - 1).long()


def decay_toward_zero(x: torch.Tensor, keep: int) -> torch.Tensor:
    """x * keep / 4096, rounded toward zero (Lava: sign(x k) * (|x k| >> 12))."""
    product = x * keep
    return torch.sign(product) * torch.div(product.abs(), DECAY_ONE, rounding_mode="floor")


def wrap24(x: torch.Tensor) -> torch.Tensor:
    """Wrap the current into 24 bits, into (-2^23, 2^23] (2^23 itself stays; -2^23 becomes 2^23). Lava wraps
    once, which is the same for |a_in| < A_IN_WRAP_SAFE (checked at export)."""
    half = 2 ** (STATE_BITS - 1)
    return half - torch.remainder(half - x, 2 * half)


@dataclass
class FixedNeurons:
    """A neuron node under the loihi rules."""

    du: int
    dv: int
    vth: int | None      # None: a readout (its v is the output)
    unit: float          # float value of one a_in step; u and v count unit / 64

    def step(self, state: dict, a_in: torch.Tensor) -> torch.Tensor:
        """One timestep (Lava's PyLifModelBitAcc.run_spk without the compartment bias): a_in -> spikes
        (0/1, int64) or, for a readout, v."""
        if "u" not in state:
            state["u"], state["v"] = torch.zeros_like(a_in), torch.zeros_like(a_in)
        u = wrap24(decay_toward_zero(state["u"], DECAY_ONE - self.du - 1) + a_in * (1 << ACT_SHIFT))
        v = torch.clamp(decay_toward_zero(state["v"], DECAY_ONE - self.dv) + u, -STATE_MAX, STATE_MAX)
        state["u"] = u
        if self.vth is None:
            state["v"] = v
            return v
        spikes = v > (self.vth << VTH_SHIFT)
        state["v"] = torch.where(spikes, torch.zeros_like(v), v)
        return spikes.to(torch.int64)


@dataclass
class FixedSynapses:
    """An Affine/Linear node under the loihi rules: mantissas and exponent, and the bias group's."""

    mant: np.ndarray            # [out, in] int64
    exp: int
    bias_mant: np.ndarray | None  # [out] int64
    bias_exp: int
    unit: float                 # the target neurons' unit

    def __call__(self, x: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """a_in from input x; `bias`: whether the bias group's input spikes at this step."""
        # float64 products of small integers are exact (|sums| << 2^53)
        total = torch.nn.functional.linear(x.double(), torch.from_numpy(self.mant).double()).round().long()
        a_in = shift(total, self.exp)
        if self.bias_mant is not None and bias:
            a_in = a_in + shift(torch.from_numpy(self.bias_mant), self.bias_exp)
        return a_in

    def largest_a_in(self) -> float:
        """The largest |a_in| this group and its bias can make (every input at its largest)."""
        largest = np.abs(self.mant).sum(1).max(initial=0) * 2.0**self.exp
        if self.bias_mant is not None:
            largest += float(np.abs(self.bias_mant).max(initial=0)) * 2.0**self.bias_exp
        return float(largest)

    def dequantized(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The float weights and bias these integers stand for (a floor after a negative exponent aside)."""
        w = self.mant.astype(np.float64) * 2.0**self.exp * self.unit
        b = None if self.bias_mant is None else self.bias_mant.astype(np.float64) * 2.0**self.bias_exp * self.unit
        return w, b


def _geometric(r: float, n: int) -> float:
    """1 + r + ... + r^(n-1)."""
    return float(n) if r == 1.0 else (1.0 - r**n) / (1.0 - r)


def _state_bound(alpha: float, beta: float, drive: np.ndarray, timesteps: int) -> float:
    """The largest |u| and |v| (float) a neuron can reach in one action's `timesteps` from zero states
    (every action starts from them) with |input| <= drive per step."""
    current = drive * _geometric(alpha, timesteps)
    volt = current * _geometric(beta, timesteps)
    return float(max(current.max(initial=0.0), volt.max(initial=0.0)))


@dataclass
class QuantizedGraph:
    """A graph under one target's rules: `graph` is the NIR graph with the weights the integers stand for
    (written as actor.nir, so any NIR tool runs the quantised weights in float); `synapses` and `neurons`
    the integer parameters by node (loihi), `scales` the int8 weight scales by node (float)."""

    target: str
    scheme: str
    graph: nir.NIRGraph
    synapses: dict[str, FixedSynapses]
    neurons: dict[str, FixedNeurons]
    scales: dict[str, float]
    input_step: float | None = None  # real-valued input: the float value of one graded-spike step

    @property
    def timesteps(self) -> int:
        return int((self.graph.metadata or {}).get("timesteps", 1))

    def rules(self) -> dict:
        """What bundle.json records: the target's rules and each node's parameters."""
        if self.target == "float":
            return {"target": "float", "scheme": self.scheme,
                    "rules": "int8 weights with one symmetric scale per synapse node ([-127, 127] x scale), "
                             "biases round(b / scale) in int32; neurons in float32 as the float graph",
                    "scales": self.scales}
        nodes = {}
        for name, syn in self.synapses.items():
            largest = syn.largest_a_in()
            nodes[name] = {"weight_exp": syn.exp, "bias_exp": syn.bias_exp if syn.bias_mant is not None else None,
                           "unit": syn.unit, "largest_a_in": float(largest),
                           "a_in_fits_16_bits": bool(largest < 2 ** (A_IN_BITS - 1))}
        for name, neu in self.neurons.items():
            nodes[name] = {"du": neu.du, "dv": neu.dv, "vth": neu.vth, "unit": neu.unit}
        graded = None if self.input_step is None else {"bits": INPUT_BITS, "step": self.input_step}
        return {"target": "loihi", "scheme": self.scheme, "rules": RULES["loihi"], "graded_input": graded,
                "nodes": nodes, "schedule": self.schedule()}

    def schedule(self) -> dict:
        """The pipeline timing of one action on a chip whose synapses deliver one step late (Lava's Dense).

        A node's depth d is the number of synapse groups on its forward path from the input; the output's
        depth is L. The encoder input of timestep tau goes in at step tau, and node n computes timestep tau
        at step d_n + tau, so an action takes T + L steps from zero states and the output node's timestep tau
        is read at step L + tau. Each node's bias input spikes at steps [d - 1, d - 1 + T) (its synapse group
        delivers it at [d, d + T)): a bias on at every step would add d - 1 extra bias steps while the
        pipeline fills. Each node's u and v are zeroed before its step d, which is what lets actions follow
        each other every T steps (a period P >= T: input at [kP, kP + T), the rest shifted by kP) where no
        edge closes a cycle; a recurrent synapse instead carries the last spikes of one action into the
        next one's first step, so there each action starts from zero states."""
        graph, timesteps = self.graph, self.timesteps
        order, back = order_and_back_edges(graph)
        preds = predecessors(graph)
        depth: dict[str, int] = {}
        for name in order:
            forward = [depth[p] for p in preds[name] if (p, name) not in back]
            depth[name] = max(forward, default=0) + (SYNAPSE_DELAY if name in self.synapses else 0)
        groups = {name: [p for p in preds[name] if p in self.synapses] for name in self.neurons}
        nodes = {}
        for name in self.neurons:
            d = depth[name]
            biased = any(self.synapses[g].bias_mant is not None for g in groups[name])
            nodes[name] = {"first_step": d, "reset_before_step": d,
                           "bias_input_steps": [d - SYNAPSE_DELAY, d - SYNAPSE_DELAY + timesteps] if biased else None,
                           "synapse_groups": {g: preds[g][0] for g in groups[name]}}
        output = next(preds[name][0] for name, node in graph.nodes.items() if isinstance(node, nir.Output))
        inputs = next(name for name, node in graph.nodes.items() if isinstance(node, nir.Input))
        depth_out = depth[output]
        return {"synapse_delay_steps": SYNAPSE_DELAY, "timesteps": timesteps, "steps_per_action": timesteps + depth_out,
                "input": {"node": inputs, "steps": [0, timesteps]},
                "read": {"node": output, "steps": [depth_out, depth_out + timesteps]},
                "nodes": nodes, "back_to_back_period": None if back else timesteps,
                "steps": "half-open [first, last + 1), counted from the action's first input step"}

    def arrays(self) -> dict[str, np.ndarray]:
        """The integer parameters as arrays for host.npz (q_<node>_*)."""
        out = {}
        for name, syn in self.synapses.items():
            out[f"q_{name}_weight_mant"] = syn.mant
            if syn.bias_mant is not None:
                out[f"q_{name}_bias_mant"] = syn.bias_mant
        return out

    def simulate(self, inputs: torch.Tensor, record: bool = False):
        """Run the graph on encoder input [T, B, N]; the same return as spikerl.export.simulate.simulate,
        outputs as floats (spikes 0/1; a readout's v in float, v * unit / 64)."""
        if self.target == "float":
            return simulate(self.graph, inputs, record=record)
        return simulate_fixed(self, inputs, record)


RULES = {
    "loihi": ("Lava's bit-accurate Loihi models (lava-nc 0.10.0): synapses as 8-bit mixed-sign mantissas (even, "
              "[-256, 254]) with one exponent per group in [-8, 7], a_in = sum << e (or >> -e, floor); "
              "u <- trunc(u * (4096 - du - 1) / 4096) + (a_in << 6), wrapped into (-2^23, 2^23]; "
              "v <- trunc(v * (4096 - dv) / 4096) + u, clipped to +-(2^23 - 1); spike where v > vth << 6, then "
              "v <- 0; trunc toward zero; a layer's bias is a synapse group from an input spiking every step; "
              "one unit per neuron node (float per a_in step): threshold / vth for spiking nodes"),
}


def _loihi(graph: nir.NIRGraph, dt: float, timesteps: int, input_range: float | None) -> QuantizedGraph:
    if any(isinstance(node, nir.Threshold) for node in graph.nodes.values()):
        raise QuantizeError("Loihi's compartments reset to zero: neurons that reset by subtraction (an integrator into "
                            "a Threshold node) have no loihi form; convert with --reset zero, or use --target float")
    inputs = {name for name, node in graph.nodes.items() if isinstance(node, nir.Input)}
    step = None if input_range is None else input_range / (2**INPUT_BITS - 1)  # a graded spike's step

    def graded(synapse: str) -> bool:  # a synapse group fed by real-valued input
        return step is not None and into[synapse][0] in inputs

    into: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        into[dst].append(src)
    synapses, neurons, nodes = {}, {}, dict(graph.nodes)
    for name, node in graph.nodes.items():
        if not isinstance(node, NEURON_NODES):
            continue
        _check_export_form(name, node, dt)
        alphas, betas = neuron_decays(node, dt)
        alpha, beta = _uniform(alphas, "current decay", name), _uniform(betas, "voltage decay", name)
        du, dv = DECAY_ONE - 1 - int(round(alpha * DECAY_ONE)), DECAY_ONE - int(round(beta * DECAY_ONE))
        if not (0 <= du < DECAY_ONE and 0 <= dv < DECAY_ONE):
            raise QuantizeError(f"node {name!r}: decays alpha={alpha:g}, beta={beta:g} do not fit Loihi's 12-bit "
                                f"du, dv (alpha < 1, beta >= 1/4096)")
        groups = [s for s in into[name] if isinstance(graph.nodes[s], (nir.Affine, nir.Linear))]
        if len(groups) != len(into[name]):
            raise QuantizeError(f"node {name!r} takes input other than from synapse nodes")
        drive = np.zeros(np.asarray(graph.nodes[groups[0]].weight).shape[0]) if groups else np.zeros(1)
        for s in groups:
            w = np.abs(np.asarray(graph.nodes[s].weight, np.float64)) * (input_range if graded(s) else 1.0)
            drive = drive + w.sum(1) + (np.abs(np.asarray(graph.nodes[s].bias, np.float64))
                                        if isinstance(graph.nodes[s], nir.Affine) else 0.0)
        bound = _state_bound(alpha, beta, drive, timesteps)
        smallest = max(bound, 1e-30) * (1 << ACT_SHIFT) / STATE_MAX  # the finest unit that cannot overflow
        if isinstance(node, SPIKING_NODES):
            theta = _uniform(np.asarray(node.v_threshold), "threshold", name)
            if theta <= 0:
                raise QuantizeError(f"node {name!r}: Loihi's threshold is unsigned; got {theta:g}")
            vth = min(VTH_MAX, int(np.floor(theta / smallest)))
            if vth < 1:
                raise QuantizeError(f"node {name!r}: its threshold is too small against the current its weights can "
                                    f"make for 24-bit states")
            unit = theta / vth
        else:
            vth, unit = None, smallest
        neurons[name] = FixedNeurons(du, dv, vth, unit)
        for s in groups:
            syn = graph.nodes[s]
            per_input = step if graded(s) else 1.0  # the float value of one step of this group's input
            x = np.asarray(syn.weight, np.float64) * per_input / unit
            e = _exponent(float(np.abs(x).max(initial=0.0)))
            bias, bias_mant, bias_exp = None, None, 0
            if isinstance(syn, nir.Affine) and np.any(np.asarray(syn.bias) != 0):
                xb = np.asarray(syn.bias, np.float64) / unit
                bias_exp = _exponent(float(np.abs(xb).max()))
                bias_mant = loihi_mantissas(xb, bias_exp)
            synapses[s] = FixedSynapses(loihi_mantissas(x, e), e, bias_mant, bias_exp, unit)
            w, bias = synapses[s].dequantized()
            w = w / per_input
            if isinstance(syn, nir.Affine):
                nodes[s] = nir.Affine(weight=w.astype(np.float32), bias=(bias if bias is not None
                                                                          else np.zeros(w.shape[0])).astype(np.float32))
            else:
                nodes[s] = nir.Linear(weight=w.astype(np.float32))
    for name in neurons:
        largest = sum(synapses[s].largest_a_in() for s in into[name])
        if largest >= A_IN_WRAP_SAFE:  # not reached by the units above; where it were, Lava's u would differ
            raise QuantizeError(f"node {name!r}: its synapses can make an a_in of {largest:,.0f}, where Lava's "
                                f"single wrap of u departs from a full one (from {A_IN_WRAP_SAFE:,})")
    metadata = {**(graph.metadata or {}), "quantization": "loihi"}
    qgraph = nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=metadata, type_check=False)
    return QuantizedGraph("loihi", "int8", qgraph, synapses, neurons, {}, step)


def _float_int8(graph: nir.NIRGraph) -> QuantizedGraph:
    nodes, scales = dict(graph.nodes), {}
    for name, node in graph.nodes.items():
        if not isinstance(node, (nir.Affine, nir.Linear)):
            continue
        w = np.asarray(node.weight, np.float64)
        scale = float(np.abs(w).max(initial=0.0)) / 127 or 1.0
        q = np.clip(np.round(w / scale), -127, 127) * scale
        scales[name] = scale
        if isinstance(node, nir.Affine):
            b = np.round(np.asarray(node.bias, np.float64) / scale) * scale
            nodes[name] = nir.Affine(weight=q.astype(np.float32), bias=b.astype(np.float32))
        else:
            nodes[name] = nir.Linear(weight=q.astype(np.float32))
    metadata = {**(graph.metadata or {}), "quantization": "float"}
    qgraph = nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=metadata, type_check=False)
    return QuantizedGraph("float", "int8", qgraph, {}, {}, scales)


def quantize(graph: nir.NIRGraph, target: str, scheme: str = "int8",
             input_range: float | None = None) -> QuantizedGraph:
    """The graph under `target`'s rules. `input_range`: None where the graph's Input carries spikes; for
    real-valued input in [0, input_range] (DSRL's two-neuron split), the largest value, which the loihi
    target sends as 8-bit graded spikes."""
    if scheme not in SCHEMES:
        raise QuantizeError(f"unknown quantisation {scheme!r} (choose one of: {', '.join(SCHEMES)})")
    if target not in TARGETS:
        raise QuantizeError(f"unknown target {target!r} (choose one of: {', '.join(TARGETS)})")
    if target == "float":
        return _float_int8(graph)
    timesteps = int((graph.metadata or {}).get("timesteps", 1))
    return _loihi(graph, graph_dt(graph), timesteps, input_range)


def simulate_fixed(q: QuantizedGraph, inputs: torch.Tensor, record: bool = False):
    """Run a loihi-quantised graph in integers, every node together one timestep at a time, as
    spikerl.export.simulate steps the float graph (an edge closing a cycle carries the previous step's
    output). Spikes pass as 0/1; a readout's output is its v, given back in float (v * unit / 64)."""
    graph = q.graph
    order, back = order_and_back_edges(graph)
    preds = predecessors(graph)
    states: dict[str, dict] = {name: {} for name in q.neurons}
    seen: dict[str, list] = {name: [] for name in order}
    done: dict[str, list] = {name: [] for name in order}
    as_float: dict[str, list] = {name: [] for name in order}
    for t in range(inputs.shape[0]):
        now: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                x = inputs[t] if q.input_step is None else graded_spikes(inputs[t], q.input_step)
            else:
                parts = [now[p] if (p, name) not in back else (done[p][t - 1] if t > 0 else None) for p in preds[name]]
                parts = [p for p in parts if p is not None]
                x = parts[0] if len(parts) == 1 else sum(parts) if parts else torch.zeros(())
            if name in q.synapses:
                y = q.synapses[name](x)
            elif name in q.neurons:
                y = q.neurons[name].step(states[name], x)
            else:
                y = x
            now[name] = y
            seen[name].append(x)
            done[name].append(y)
            readout = name in q.neurons and q.neurons[name].vth is None
            as_float[name].append(y.double() * (q.neurons[name].unit / (1 << ACT_SHIFT)) if readout else y)
    outputs = {name: torch.stack(ys).float() for name, ys in as_float.items()}
    # an Output node passes its source through: a readout's output is given back in float
    for name in order:
        if isinstance(graph.nodes[name], nir.Output):
            outputs[name] = outputs[preds[name][0]]
    result = {name: outputs[name] for name, node in graph.nodes.items() if isinstance(node, nir.Output)}
    if not record:
        return result
    return result, {name: (torch.stack([torch.as_tensor(v) for v in seen[name]]).float(), outputs[name])
                    for name in order}


def simulate_pipelined(q: QuantizedGraph, inputs: torch.Tensor, schedule: dict | None = None) -> dict:
    """Run a loihi-quantised graph as a chip whose synapses deliver one step late (Lava's Dense): one action
    of `schedule["steps_per_action"]` steps from zero states, each node's bias input and state reset as
    the schedule (default: `q.schedule()`) says. Returns every node's output [steps, B, N] (spikes 0/1,
    a readout's v in float); node n's timestep tau is at step first_step + tau (`realign`)."""
    schedule = schedule or q.schedule()
    graph, timesteps = q.graph, inputs.shape[0]
    order, _ = order_and_back_edges(graph)
    preds = predecessors(graph)
    nodes = schedule["nodes"]
    states: dict[str, dict] = {name: {} for name in q.neurons}
    # what each synapse group delivers at the next step: nothing has reached it before the first
    pending: dict[str, torch.Tensor | int] = {name: 0 for name in q.synapses}
    target = {s: next(d for src, d in graph.edges if src == s) for s in q.synapses}
    done: dict[str, list] = {name: [] for name in order if name not in q.synapses}
    for t in range(schedule["steps_per_action"]):
        now: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                x = inputs[min(t, timesteps - 1)] * (1 if t < timesteps else 0)  # nothing after the last timestep
                y = x if q.input_step is None else graded_spikes(x, q.input_step)
            elif name in q.synapses:
                y = pending[name]
            elif name in q.neurons:
                if t == nodes[name]["reset_before_step"]:
                    states[name] = {}
                a_in = sum(pending[p] for p in preds[name])
                a_in = a_in if torch.is_tensor(a_in) else torch.zeros(inputs.shape[1], _width(q, name),
                                                                       dtype=torch.int64)
                y = q.neurons[name].step(states[name], a_in)
                if q.neurons[name].vth is None:
                    y = y.double() * (q.neurons[name].unit / (1 << ACT_SHIFT))
            else:
                y = now[preds[name][0]]
            now[name] = y
            if name in done:
                done[name].append(y)
        for s in q.synapses:  # the groups take this step's output of their sources, to deliver at t + 1
            window = nodes[target[s]]["bias_input_steps"]
            pending[s] = q.synapses[s](now[preds[s][0]], bias=window is not None and window[0] <= t < window[1])
    return {name: torch.stack(ys).float() for name, ys in done.items()}


def _width(q: QuantizedGraph, neuron: str) -> int:
    syn = next(s for s, d in q.graph.edges if d == neuron and s in q.synapses)
    return q.synapses[syn].mant.shape[0]


def realign(schedule: dict, pipelined: dict) -> dict:
    """The neuron nodes' outputs of a pipelined run [T, B, N], timestep tau taken from step first_step + tau."""
    timesteps = schedule["timesteps"]
    return {name: pipelined[name][p["first_step"]:p["first_step"] + timesteps] for name, p in schedule["nodes"].items()}


def pipeline_check(q: QuantizedGraph, inputs: torch.Tensor, schedule: dict | None = None) -> dict:
    """Whether the pipelined run (`simulate_pipelined`) gives every neuron node's output of `simulate_fixed`
    on encoder input [T, B, N]: {"nodes_equal": {node: bool}, "observations_equal_fraction" (every node
    equal at every timestep), "ok"}."""
    schedule = schedule or q.schedule()
    _, trace = simulate_fixed(q, inputs, record=True)
    ran = realign(schedule, simulate_pipelined(q, inputs, schedule))
    equal = {name: torch.equal(ran[name], trace[name][1]) for name in ran}
    per_obs = torch.stack([(ran[n] == trace[n][1]).flatten(2).all(2).all(0) for n in ran]).all(0)
    return {"nodes_equal": equal, "observations_equal_fraction": float(per_obs.float().mean()),
            "ok": all(equal.values())}


def from_written(rules: dict, graph: nir.NIRGraph, arrays: dict[str, np.ndarray]) -> QuantizedGraph:
    """A QuantizedGraph back from a bundle: bundle.json's `quantization` (`rules()`), the graph read with
    nir.read and host.npz's q_* arrays."""
    synapses, neurons = {}, {}
    for name, p in (rules.get("nodes") or {}).items():
        if "weight_exp" in p:
            bias = arrays.get(f"q_{name}_bias_mant")
            synapses[name] = FixedSynapses(np.asarray(arrays[f"q_{name}_weight_mant"], np.int64), int(p["weight_exp"]),
                                           None if bias is None else np.asarray(bias, np.int64),
                                           int(p["bias_exp"] or 0), float(p["unit"]))
        else:
            neurons[name] = FixedNeurons(int(p["du"]), int(p["dv"]), None if p["vth"] is None else int(p["vth"]),
                                         float(p["unit"]))
    graded = rules.get("graded_input")
    return QuantizedGraph(rules["target"], rules["scheme"], graph, synapses, neurons, dict(rules.get("scales") or {}),
                          None if graded is None else float(graded["step"]))
