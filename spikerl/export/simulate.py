"""A small simulator of NIR graphs, written from the NIR node definitions (not from SpikeRL's actors).

It steps every node together, one timestep at a time, time-major inputs [T, B, *shape]. A node's input
at step t is the sum of the outputs of the nodes with an edge into it: their output of step t, except
along an edge that closes a cycle (a recurrent connection, e.g. ILC-SAN's intra-layer connections),
which carries its source's output of step t - 1 (zero at the first step), the one-step delay such a
connection has on a chip and in the networks that train it. The edges that close cycles are found by a
depth-first search from the Input nodes, following edges in the order the graph lists them.

Nodes and their discrete-time semantics at step `dt` (forward Euler of each node's ODE):

    Input, Output     identity
    Affine            y = W x + b          Linear: y = W x          Scale: y = s * x
    CubaLIF           tau_syn dI/dt = -I + w_in S;  tau_mem dv/dt = (v_leak - v) + r I
                      I_t = (1 - dt/tau_syn) I_{t-1} + (w_in dt/tau_syn) S_t
                      v_t = (1 - dt/tau_mem) v_{t-1} + (r dt/tau_mem) I + (dt/tau_mem) v_leak
                      z_t = v_t > v_threshold; where z_t: v_t = v_reset; the output is z
    CubaLI            the same without threshold; the output is v
    LIF / LI          tau dv/dt = (v_leak - v) + r x, one state (LIF spikes and resets like CubaLIF)
    I                 dv/dt = r x: v_t = v_{t-1} + r dt x_t; the output is v
    IF                I that spikes and resets like CubaLIF
    Threshold         z = x > threshold (an integrate-and-fire neuron that resets by subtraction is an I
                      node into a Threshold node, fed back through -threshold: spikerl/export/nir_graph.py)

`order` chooses which synaptic current the membrane integrates (the one place where discretisations
of CubaLIF differ, see docs/neuromorphic.md):

    "current-first" (default)  the current of this step, I_t: snnTorch's `Synaptic` and Lava's Loihi
                               LIF process update the current first and the voltage from it
    "euler"                    the previous step's, I_{t-1}: plain forward Euler of the coupled ODEs,
                               as NIR's own reference integrator does; one step later than the above

Coefficients are computed in float64 from the node's parameters and then cast to the input's dtype.
"""

from __future__ import annotations

from collections import defaultdict

import nir
import numpy as np
import torch

from ..errors import BAD_INPUT, SpikeRLError

ORDERS = ("current-first", "euler")


SPIKING_NODES = (nir.CubaLIF, nir.LIF, nir.IF)
NEURON_NODES = (*SPIKING_NODES, nir.CubaLI, nir.LI, nir.I)
SPIKE_SOURCES = (*SPIKING_NODES, nir.Threshold)  # the nodes whose output is a layer's spikes


class SimulationError(SpikeRLError):
    """A graph or input this simulator cannot run; the message is one line."""

    exit_code = BAD_INPUT


def order_and_back_edges(graph: nir.NIRGraph) -> tuple[list[str], set[tuple[str, str]]]:
    """The nodes in an order where every node comes after the sources of its forward edges, and the
    edges that close cycles (back edges of a depth-first search from the Input nodes)."""
    succs: dict[str, list[str]] = defaultdict(list)
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise SimulationError(f"edge ({src!r}, {dst!r}) names a node the graph does not have")
        succs[src].append(dst)
    state: dict[str, int] = {}  # 1: on the search's path, 2: done
    back: set[tuple[str, str]] = set()
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)] + list(graph.nodes)
    for root in starts:
        if root in state:
            continue
        stack = [(root, iter(succs[root]))]
        state[root] = 1
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[name] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((name, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(succs[child])))
    forward = nir.NIRGraph(nodes=graph.nodes, edges=[e for e in graph.edges if e not in back], type_check=False)
    return topological_order(forward), back


def topological_order(graph: nir.NIRGraph) -> list[str]:
    """Node names, every node after all nodes with an edge into it; a cycle is refused."""
    preds: dict[str, set[str]] = {name: set() for name in graph.nodes}
    succs: dict[str, list[str]] = defaultdict(list)
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise SimulationError(f"edge ({src!r}, {dst!r}) names a node the graph does not have")
        preds[dst].add(src)
        succs[src].append(dst)
    ready = [name for name, p in preds.items() if not p]
    order: list[str] = []
    remaining = {name: len(p) for name, p in preds.items()}
    while ready:
        name = ready.pop(0)
        order.append(name)
        for nxt in succs[name]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(graph.nodes):
        raise SimulationError("the graph has a cycle its forward edges alone make")
    return order


def node_order(graph: nir.NIRGraph) -> list[str]:
    """The order the simulator steps the nodes in: after the sources of their forward edges."""
    return order_and_back_edges(graph)[0]


def predecessors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    return preds


def _coef(value, dtype, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float64), device=device).to(dtype)


class _Neuron:
    """A neuron node's state and its update, one timestep at a time:
    I_t = decay_i I_{t-1} + gain_i x_t (without a current: I_t = x_t); v_t = decay_v v_{t-1} + gain_v I + leak,
    I the current of this step (current-first) or of the previous one (euler); a spiking node outputs
    z_t = v_t > threshold and resets v to v_reset where z_t, the others output v."""

    def __init__(self, decay_v, gain_v, leak, decay_i=None, gain_i=None, threshold=None, reset=None,
                 order="current-first"):
        self.decay_v, self.gain_v, self.leak = decay_v, gain_v, leak
        self.decay_i, self.gain_i, self.threshold, self.reset = decay_i, gain_i, threshold, reset
        self.euler = order == "euler"
        self.current = self.v = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            self.current, self.v = torch.zeros_like(x), torch.zeros_like(x)
        drive = x
        if self.decay_i is not None:
            previous = self.current
            self.current = self.decay_i * self.current + self.gain_i * x
            drive = previous if self.euler else self.current
        self.v = self.decay_v * self.v + self.gain_v * drive + self.leak
        if self.threshold is None:
            return self.v
        z = self.v > self.threshold
        self.v = torch.where(z, self.reset, self.v)
        return z.to(x.dtype)


def _neuron(node, dt: float, order: str, dtype, device) -> _Neuron:
    f = lambda v: _coef(v, dtype, device)  # noqa: E731
    a = lambda v: np.asarray(v, np.float64)  # noqa: E731
    spiking = isinstance(node, SPIKING_NODES)
    threshold = f(node.v_threshold) if spiking else None
    reset = f(node.v_reset) if spiking else None
    if isinstance(node, (nir.I, nir.IF)):
        return _Neuron(1.0, f(a(node.r) * dt), 0.0, threshold=threshold, reset=reset)
    if isinstance(node, (nir.LIF, nir.LI)):
        tau = a(node.tau)
        return _Neuron(f(1.0 - dt / tau), f(a(node.r) * dt / tau), f(a(node.v_leak) * dt / tau),
                       threshold=threshold, reset=reset)
    tau_syn, tau_mem = a(node.tau_syn), a(node.tau_mem)
    return _Neuron(f(1.0 - dt / tau_mem), f(a(node.r) * dt / tau_mem), f(a(node.v_leak) * dt / tau_mem),
                   f(1.0 - dt / tau_syn), f(a(node.w_in) * dt / tau_syn), threshold, reset, order)


def node_step(node, dt: float, order: str = "current-first", dtype=torch.float32, device=None):
    """One node as a function of its input at one timestep (holding its state between calls)."""
    if isinstance(node, (nir.Input, nir.Output)):
        return lambda x: x
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = torch.as_tensor(node.weight, device=device).to(dtype)
        bias = torch.as_tensor(node.bias, device=device).to(dtype) if isinstance(node, nir.Affine) else None
        return lambda x: torch.nn.functional.linear(x, weight, bias)
    if isinstance(node, nir.Threshold):
        threshold = torch.as_tensor(np.asarray(node.threshold, np.float64), device=device).to(dtype)
        return lambda x: (x > threshold).to(dtype)
    if isinstance(node, nir.Scale):
        scale = torch.as_tensor(node.scale, device=device).to(dtype)
        return lambda x: x * scale
    if isinstance(node, NEURON_NODES):
        return _neuron(node, dt, order, dtype, device)
    raise SimulationError(f"NIR node type {type(node).__name__} is not supported by this simulator")


def graph_dt(graph: nir.NIRGraph, dt: float | None = None) -> float:
    if dt is not None:
        return float(dt)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if "dt" not in meta:
        raise SimulationError("the graph records no dt in its metadata; pass dt")
    return float(np.asarray(meta["dt"]))


def simulate(graph: nir.NIRGraph, inputs, dt: float | None = None, order: str = "current-first",
             record: bool = False):
    """Run `graph` on `inputs` (a tensor [T, B, *shape] for a graph with one Input node, or a dict
    Input name -> tensor). Returns a dict Output name -> output [T, B, *shape]; with `record`, also a
    dict of every node's (input, output), each [T, B, *shape]."""
    if order not in ORDERS:
        raise SimulationError(f"order must be one of {ORDERS}, got {order!r}")
    dt = graph_dt(graph, dt)
    input_names = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if not isinstance(inputs, dict):
        if len(input_names) != 1:
            raise SimulationError(f"the graph has {len(input_names)} Input nodes; pass a dict of inputs")
        inputs = {input_names[0]: inputs}
    if set(inputs) != set(input_names):
        raise SimulationError(f"inputs {sorted(inputs)} do not match the graph's Input nodes {sorted(input_names)}")
    for name in input_names:
        x, expected = inputs[name], tuple(int(s) for s in np.atleast_1d(graph.nodes[name].input_type["input"]))
        if x.dim() < 2 or tuple(x.shape[2:]) != expected:
            raise SimulationError(f"input {name!r} must be [T, B, {', '.join(map(str, expected))}], "
                                  f"got {list(x.shape)}")
    order_of, back = order_and_back_edges(graph)
    preds = predecessors(graph)
    for name in order_of:
        if not isinstance(graph.nodes[name], nir.Input) and all((p, name) in back for p in preds[name]):
            raise SimulationError(f"node {name!r} has no input edge" if not preds[name] else
                                  f"node {name!r} has only recurrent input edges")
    reference = next(iter(inputs.values()))
    steps = {name: node_step(graph.nodes[name], dt, order, reference.dtype, reference.device) for name in order_of}
    seen: dict[str, list] = {name: [] for name in order_of}
    done: dict[str, list] = {name: [] for name in order_of}
    for t in range(reference.shape[0]):
        now: dict[str, torch.Tensor] = {}
        for name in order_of:
            if isinstance(graph.nodes[name], nir.Input):
                x = inputs[name][t]
            else:
                x = 0.0
                for p in preds[name]:
                    if (p, name) not in back:
                        x = x + now[p]
                    elif t > 0:
                        x = x + done[p][t - 1]
            now[name] = steps[name](x)
            seen[name].append(x)
            done[name].append(now[name])
    outputs = {name: torch.stack(ys) for name, ys in done.items()}
    result = {name: outputs[name] for name, node in graph.nodes.items() if isinstance(node, nir.Output)}
    if not record:
        return result
    return result, {name: (torch.stack(seen[name]), outputs[name]) for name in order_of}
