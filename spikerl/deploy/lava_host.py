"""A loihi bundle on Lava's bit-accurate models, driven from SpikeRL's environment.

lava-nc needs Python < 3.11, so Lava lives in a second environment (`make lava`: .venv-lava) and runs
spikerl/deploy/lava_runner.py there as a subprocess; the host side (normaliser, encoder, decoder, the
env) stays here. The two exchange each batch of actions' encoder input and the nodes' outputs as .npy
files in a temporary folder.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import BAD_INPUT, SpikeRLError
from ..export.nir_graph import Bundle, read_bundle
from ..export.quantize import ACT_SHIFT, graded_spikes

ROOT = Path(__file__).resolve().parents[2]
LAVA_PYTHON = ROOT / ".venv-lava" / "bin" / "python"
RUNNER = Path(__file__).with_name("lava_runner.py")
PREFIX = "spikerl-lava:"


class LavaError(SpikeRLError):
    """Lava cannot run this bundle here (bad input: nothing was run); the message is one line."""

    exit_code = BAD_INPUT


def loihi_bundle(path: str | Path) -> Bundle:
    """The bundle in `path`, refused in one line unless it is a loihi bundle with a pipeline schedule."""
    path = Path(path)
    if not (path / "bundle.json").is_file():
        raise LavaError(f"{path} is not a bundle folder (no bundle.json): pass the folder `python -m spikerl.export "
                        f"RUN --quantize int8` wrote")
    bundle = read_bundle(path)
    quant = bundle.info.get("quantization") or {}
    if quant.get("target") != "loihi":
        what = f"a {quant['target']}-target" if quant else "a float"
        raise LavaError(f"{path} holds {what} bundle; Lava's Loihi models take a loihi one "
                        f"(python -m spikerl.export RUN --quantize int8 --target loihi)")
    if "schedule" not in quant:
        raise LavaError(f"{path} is a bundle of format {bundle.info.get('format')} without a pipeline schedule: "
                        f"export it again")
    return bundle


class LavaRunner:
    """Lava's process graph of a loihi bundle, in the Lava environment's Python: `run(x)` takes encoder
    input [T, B, N] (floats as the host makes them) and gives each neuron node's output [T, B, n] in the
    form of the integer simulation's trace (spikes 0/1; a readout's v in float)."""

    def __init__(self, bundle: Bundle, folder: str | Path, python: str | Path | None = None):
        python = Path(python) if python else LAVA_PYTHON
        if not python.is_file():
            raise LavaError(f"no Lava environment at {python.parent.parent}: run make lava")
        self.bundle, self.quant = bundle, bundle.quant
        self.work = Path(tempfile.mkdtemp(prefix="spikerl-lava-"))
        self.log = (self.work / "lava.log").open("w")
        self.process = subprocess.Popen([str(python), str(RUNNER), str(folder), str(self.work)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.build_seconds = float(self._answer("ready"))
        self.seconds = 0.0
        self.actions = 0

    def _answer(self, expected: str) -> str:
        for line in self.process.stdout:
            if line.startswith(PREFIX):
                word, _, rest = line[len(PREFIX):].strip().partition(" ")
                if word == expected:
                    return rest
                raise SpikeRLError(f"Lava: {rest or word}")
        self.log.flush()
        tail = (self.work / "lava.log").read_text().strip().splitlines()[-1:] or ["no message"]
        raise SpikeRLError(f"Lava stopped: {tail[0]}")

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        step = self.quant.input_step
        ints = x if step is None else graded_spikes(x, step)
        np.save(self.work / "input.npy", ints.permute(1, 0, 2).numpy().astype(np.int32))
        self.process.stdin.write(f"run {x.shape[1]}\n")
        self.process.stdin.flush()
        self.seconds += float(self._answer("done"))
        self.actions += x.shape[1]
        with np.load(self.work / "output.npz") as npz:
            out = {name: torch.from_numpy(npz[name].astype(np.int64)).permute(1, 0, 2) for name in npz.files}
        for name, values in out.items():
            neuron = self.quant.neurons[name]
            # as the integer simulation gives them back: spikes 0/1, a readout's v in float (v * unit / 64)
            out[name] = (values.double() * (neuron.unit / (1 << ACT_SHIFT)) if neuron.vth is None else values).float()
        return out

    def act(self, raw: torch.Tensor, encoder_input: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> dict:
        """As Bundle.run, with Lava computing the chip part: {"action", "encoder_input", "nodes"}."""
        host = self.bundle.host
        x = host.encode(host.normalise(raw.float()), generator) if encoder_input is None else encoder_input
        nodes = self.run(x)
        output = nodes[self.quant.schedule()["read"]["node"]]
        return {"action": host.decode(output), "encoder_input": x, "nodes": nodes}

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        self.log.close()
        for path in self.work.iterdir():
            path.unlink()
        self.work.rmdir()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@torch.inference_mode()
def compare(runner: LavaRunner, raw: torch.Tensor, generator: torch.Generator | None = None) -> dict:
    """Lava against the integer simulation on raw observations [B, obs_dim], given the same encoder input:
    each neuron node's outputs equal, and the share of observations whose action is equal."""
    bundle = runner.bundle
    start = time.perf_counter()
    ran = bundle.run(raw, generator=generator, record=True)
    lava = runner.act(raw, encoder_input=ran["encoder_input"])
    seconds = time.perf_counter() - start
    nodes = {name: torch.equal(values, ran["trace"][name][1]) for name, values in lava["nodes"].items()}
    same = (lava["action"] == ran["action"]).all(1)
    spikes = torch.stack([(v == ran["trace"][n][1]).flatten(2).all(2).all(0) for n, v in lava["nodes"].items()]).all(0)
    return {"observations": int(raw.shape[0]), "nodes_equal": nodes,
            "actions_equal_fraction": float(same.float().mean()),
            "node_outputs_equal_fraction": float(spikes.float().mean()), "seconds": seconds}
