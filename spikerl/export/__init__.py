"""Neuromorphic export: a trained spiking actor as a NIR graph plus its host side, a NIR simulator to
check the round trip, and the inference energy per action (`python -m spikerl.export`).

    nir_graph   actor -> NIR graph (Affine/Linear + CubaLIF or LIF, a CubaLI, LI or I readout) from its
                `chip_layers`; writing and reading a bundle folder; the round-trip check against the actor
    host        the host side: the actor's own normaliser, encoder, decoder host part and action scaling
    simulate    a small NIR simulator written from the NIR node definitions
    energy      synaptic-op, MAC and neuron-update counts from evaluation episodes; energy per action
                from cited per-operation figures (`inference_energy`)
"""

from .energy import FIGURES, energy_lines, inference_energy
from .nir_graph import DT, UPDATE_ORDER, Bundle, ExportError, build_bundle, read_bundle, verify_round_trip, write_bundle
from .simulate import SimulationError, simulate

__all__ = [
    "DT", "FIGURES", "UPDATE_ORDER", "Bundle", "ExportError", "SimulationError", "build_bundle", "energy_lines",
    "inference_energy", "read_bundle", "simulate", "verify_round_trip", "write_bundle",
]
