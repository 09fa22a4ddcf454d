"""A third-party reader of the exported graph: snnTorch's own NIR importer (`snntorch.import_nir`, through
nirtorch), stepped one timestep at a time, so that the round trip is not checked by this project's
simulator alone.

What snnTorch 1.0 does with the graph: Affine/Linear -> torch.nn.Linear; CubaLIF -> snn.Synaptic with
alpha = 1 - dt/tau_syn, beta = 1 - dt/tau_mem at its fixed dt = 1e-4 s (the graph's metadata dt is not
read: the export's DT is the same), syn <- alpha syn + x, then mem <- beta mem + syn (current-first),
spike where mem > threshold, reset to zero; LIF -> snn.Leaky. It maps no I, LI or CubaLI node (DSRL's
and ILC-SAN's readouts), and it wires a recurrent edge (ILC-SAN's intra-layer connections) wrongly, so
those graphs are not read with it (`supports`).
"""

from __future__ import annotations

import contextlib
import copy
import io
from importlib.metadata import version

import nir
import numpy as np
import torch

from .simulate import SPIKE_SOURCES, order_and_back_edges

SNNTORCH_DT = 1e-4  # snnTorch's importer assumes this step for every neuron node
SUPPORTED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.CubaLIF, nir.LIF)


def supports(graph: nir.NIRGraph) -> str | None:
    """None where snnTorch's importer computes this graph as the export means it, else why not."""
    other = sorted({type(node).__name__ for node in graph.nodes.values() if not isinstance(node, SUPPORTED)})
    if other:
        return f"snnTorch's importer maps no {', '.join(other)} node"
    if order_and_back_edges(graph)[1]:
        return "snnTorch's importer does not wire a recurrent edge as a one-step-delayed input"
    dt = float(np.asarray((graph.metadata or {}).get("dt", SNNTORCH_DT)))
    if dt != SNNTORCH_DT:
        return f"snnTorch's importer assumes dt = {SNNTORCH_DT:g} s; the graph's is {dt:g} s"
    return None


@torch.no_grad()
def run_with_snntorch(graph: nir.NIRGraph, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The graph imported by snnTorch and run on inputs [T, B, N]: {"output": [T, B, M], and each spiking
    node's spikes by name [T, B, n]}."""
    import snntorch
    from snntorch.import_nir import import_from_nir  # 1.0 does not re-export it as snntorch.import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line about its subgraphs
        module = import_from_nir(copy.deepcopy(graph))  # and rewrites the graph it is given
    neurons = {name: m for name, m in module.named_modules() if isinstance(m, snntorch.SpikingNeuron)}
    for m in neurons.values():  # their state lives in the modules (init_hidden); start from zero
        m.reset_mem()
    seen: dict[str, list] = {name: [] for name in neurons}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: seen[name].append(
        out[0] if isinstance(out, tuple) else out)) for name, m in neurons.items()]
    try:
        state, outputs = None, []
        for t in range(inputs.shape[0]):
            out, state = module(inputs[t], state)
            outputs.append(out)
    finally:
        for hook in hooks:
            hook.remove()
    return {"output": torch.stack(outputs), **{name: torch.stack(v) for name, v in seen.items()}}


def reader_versions() -> str:
    return f"snntorch {version('snntorch')}, nirtorch {version('nirtorch')}"


def check_with_snntorch(bundle, encoder_input: torch.Tensor, reference: dict) -> dict:
    """Whether snnTorch's importer, given the same encoder input, gives the reference's layer spikes and
    actions (`reference`: spikerl.export.nir_graph.actor_reference); {"checked": False, "why"} where it
    cannot read the graph as meant."""
    why = supports(bundle.graph)
    if why:
        return {"checked": False, "why": why}
    ran = run_with_snntorch(bundle.graph, encoder_input)
    spiking = [name for name in bundle.neurons if isinstance(bundle.graph.nodes[name], SPIKE_SOURCES)]
    return {"checked": True, "reader": f"snntorch.import_nir.import_from_nir; {reader_versions()}",
            "layer_spikes_equal": [torch.equal(ref, ran[name]) for ref, name in zip(reference["layers"], spiking)],
            "actions_equal": torch.equal(reference["action"], bundle.host.decode(ran["output"]))}
