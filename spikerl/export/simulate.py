"""A small simulator of NIR graphs, written from the NIR node definitions (not from SpikeRL's actors).

It runs feed-forward graphs whole sequences at a time: every node receives its input for all T
timesteps, time-major [T, B, *shape], the sum of the outputs of the nodes with an edge into it, and
returns its output for all T timesteps. A graph with a cycle is refused (it would need stepping all
nodes together).

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

ORDERS = ("current-first", "euler")


class SimulationError(Exception):
    """A graph or input this simulator cannot run; the message is one line."""


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
        raise SimulationError("the graph has a cycle; this simulator runs feed-forward graphs only")
    return order


def predecessors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    return preds


def _coef(value, dtype, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float64), device=device).to(dtype)


def _leaky(x: torch.Tensor, decay, gain, leak, threshold=None, reset=None):
    """v_t = decay v_{t-1} + gain x_t + leak, spiking at v > threshold (then v = reset) when given."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        v = decay * v + gain * x[t] + leak
        if threshold is None:
            out.append(v)
        else:
            z = v > threshold
            v = torch.where(z, reset, v)
            out.append(z.to(x.dtype))
    return torch.stack(out)


def _cuba(node, x: torch.Tensor, dt: float, order: str, spiking: bool) -> torch.Tensor:
    f = lambda v: _coef(v, x.dtype, x.device)  # noqa: E731
    tau_syn, tau_mem = np.asarray(node.tau_syn, np.float64), np.asarray(node.tau_mem, np.float64)
    decay_i, gain_i = f(1.0 - dt / tau_syn), f(np.asarray(node.w_in, np.float64) * dt / tau_syn)
    decay_v, gain_v = f(1.0 - dt / tau_mem), f(np.asarray(node.r, np.float64) * dt / tau_mem)
    leak = f(np.asarray(node.v_leak, np.float64) * dt / tau_mem)
    threshold = f(node.v_threshold) if spiking else None
    reset = f(node.v_reset) if spiking else None
    current = torch.zeros_like(x[0])
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        previous = current
        current = decay_i * current + gain_i * x[t]
        v = decay_v * v + gain_v * (current if order == "current-first" else previous) + leak
        if spiking:
            z = v > threshold
            v = torch.where(z, reset, v)
            out.append(z.to(x.dtype))
        else:
            out.append(v)
    return torch.stack(out)


def run_node(node, x: torch.Tensor, dt: float, order: str = "current-first") -> torch.Tensor:
    """One node's output for its whole input sequence x [T, B, *shape]."""
    if isinstance(node, (nir.Input, nir.Output)):
        return x
    if isinstance(node, nir.Affine):
        return torch.nn.functional.linear(x, torch.as_tensor(node.weight).to(x.dtype),
                                          torch.as_tensor(node.bias).to(x.dtype))
    if isinstance(node, nir.Linear):
        return torch.nn.functional.linear(x, torch.as_tensor(node.weight).to(x.dtype))
    if isinstance(node, nir.Scale):
        return x * torch.as_tensor(node.scale).to(x.dtype)
    if isinstance(node, nir.CubaLIF):
        return _cuba(node, x, dt, order, spiking=True)
    if isinstance(node, nir.CubaLI):
        return _cuba(node, x, dt, order, spiking=False)
    if isinstance(node, (nir.LIF, nir.LI)):
        f = lambda v: _coef(v, x.dtype, x.device)  # noqa: E731
        tau = np.asarray(node.tau, np.float64)
        decay, gain = f(1.0 - dt / tau), f(np.asarray(node.r, np.float64) * dt / tau)
        leak = f(np.asarray(node.v_leak, np.float64) * dt / tau)
        if isinstance(node, nir.LIF):
            return _leaky(x, decay, gain, leak, f(node.v_threshold), f(node.v_reset))
        return _leaky(x, decay, gain, leak)
    if isinstance(node, nir.I):
        return _leaky(x, 1.0, _coef(np.asarray(node.r, np.float64) * dt, x.dtype, x.device), 0.0)
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
    dict of every node's (input, output)."""
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
    preds = predecessors(graph)
    outputs: dict[str, torch.Tensor] = {}
    trace: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            x = inputs[name]
            expected = tuple(int(s) for s in np.atleast_1d(node.input_type["input"]))
            if x.dim() < 2 or tuple(x.shape[2:]) != expected:
                raise SimulationError(f"input {name!r} must be [T, B, {', '.join(map(str, expected))}], "
                                      f"got {list(x.shape)}")
        else:
            if not preds[name]:
                raise SimulationError(f"node {name!r} has no input edge")
            x = outputs[preds[name][0]]
            for other in preds[name][1:]:
                x = x + outputs[other]
        y = run_node(node, x, dt, order)
        outputs[name] = y
        if record:
            trace[name] = (x, y)
    result = {name: outputs[name] for name, node in graph.nodes.items() if isinstance(node, nir.Output)}
    return (result, trace) if record else result
