"""Run a `--quantize int8` (loihi) bundle on Lava's bit-accurate Loihi models.

Run by the Lava environment's Python (`make lava`: numpy and lava-nc, nothing of SpikeRL's), and driven
by `python -m spikerl.deploy lava`:

    <lava python> lava_runner.py BUNDLE WORK

It builds the bundle's process graph from bundle.json (the registers and the pipeline schedule under
`quantization`) and host.npz (the mantissas): a Dense process (PyDenseModelBitAcc) per synapse group,
one more per bias group fed by a RingBuffer that spikes at the node's `bias_input_steps`, and a LIFReset
process (PyLifResetModelBitAcc) per neuron node, its u and v zeroed before the node's first step of
each action (a readout is a LIF that does not reach its threshold; its v is read). Lava's own models
compute; only the host's input and the reading of spikes and v are this file's processes, through
files that the driver and the processes share (Lava's Monitor and sink read back one element per
message, slowly).

Protocol: on stdin `run N` after WORK/input.npy holds N actions' encoder input [N, T, inputs] (spikes
0/1, or graded integers); the answer `spikerl-lava: done SECONDS` on stdout comes once WORK/output.npz
holds each neuron node's output [N, T, n] (spikes, or a readout's v as an integer), timestep tau of an
action taken at the schedule's step first_step + tau. `quit` stops Lava. Actions run back to back, one
every `steps_per_action` steps; where a recurrent edge would carry one action's spikes into the next
(the schedule's `back_to_back_period` is null), every state and synapse buffer is zeroed between
actions instead. Errors: `spikerl-lava: error MESSAGE` and exit code 2.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

PREFIX = "spikerl-lava:"
CHUNK = 64  # actions per Lava run call where actions may follow each other


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def lava_processes():
    """The host-side processes (input, spike and voltage recorders) and their models, in one namespace."""
    from lava.magma.core.decorator import implements, requires
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    class Shared(AbstractProcess):
        """A process whose model reads or writes a file of [ring, n] int32, row (time_step - 1) % ring."""

        def __init__(self, *, shape, path, ring):
            super().__init__(shape=shape, path=str(path), ring=int(ring))

    class HostInput(Shared):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.s_out = OutPort(shape=kwargs["shape"])

    class SpikeRecorder(Shared):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a_in = InPort(shape=kwargs["shape"])

    class VoltageRecorder(Shared):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.ref = RefPort(shape=kwargs["shape"])

    class SharedModel(PyLoihiProcessModel):
        def rows(self) -> np.memmap:
            if getattr(self, "_rows", None) is None:
                p = self.proc_params
                self._rows = np.memmap(p["path"], np.int32, "r+", shape=(p["ring"], p["shape"][0]))
            return self._rows

        def row(self) -> int:
            return (self.time_step - 1) % self.proc_params["ring"]

    @implements(proc=HostInput, protocol=LoihiProtocol)
    @requires(CPU)
    class HostInputModel(SharedModel):
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

        def run_spk(self):
            self.s_out.send(np.array(self.rows()[self.row()]))

    @implements(proc=SpikeRecorder, protocol=LoihiProtocol)
    @requires(CPU)
    class SpikeRecorderModel(SharedModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

        def run_spk(self):
            self.rows()[self.row()] = self.a_in.recv()

    @implements(proc=VoltageRecorder, protocol=LoihiProtocol)
    @requires(CPU)
    class VoltageRecorderModel(SharedModel):
        ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

        def post_guard(self):
            return True

        def run_post_mgmt(self):  # after this step's update: v as the node ends the step
            self.rows()[self.row()] = self.ref.read()

    models = {HostInput: HostInputModel, SpikeRecorder: SpikeRecorderModel, VoltageRecorder: VoltageRecorderModel}
    return HostInput, SpikeRecorder, VoltageRecorder, models


class LavaNetwork:
    """The bundle's process graph, and running actions on it."""

    def __init__(self, bundle: Path, work: Path):
        from lava.proc.dense.process import Dense
        from lava.proc.io.source import RingBuffer
        from lava.proc.lif.process import LIFReset
        from lava.utils.weightutils import SignMode

        HostInput, SpikeRecorder, VoltageRecorder, models = lava_processes()
        info = json.loads((bundle / "bundle.json").read_text())
        quant = info.get("quantization") or {}
        with np.load(bundle / "host.npz") as npz:
            arrays = {k: npz[k] for k in npz.files if k.startswith("q_")}
        schedule, registers = quant["schedule"], quant["nodes"]
        self.timesteps, self.period = int(schedule["timesteps"]), int(schedule["steps_per_action"])
        self.chained = schedule["back_to_back_period"] is not None
        self.ring = self.period * (CHUNK if self.chained else 1)
        self.work, self.schedule = work, schedule
        graded = quant.get("graded_input") is not None
        input_name = schedule["input"]["node"]
        groups = {g: (src, name) for name, p in schedule["nodes"].items() for g, src in p["synapse_groups"].items()}
        n_in = next(arrays[f"q_{g}_weight_mant"].shape[1] for g, (src, _) in groups.items() if src == input_name)
        self.n_in = n_in

        def mixed_dense(weights, exp, message_bits=0):
            # MIXED, stated: Lava would take an all-negative (or all-positive) group as single-signed and clip
            # a -256 mantissa to -255; 8 bits mixed keeps the even mantissas as they are
            return Dense(weights=np.asarray(weights, np.int32), weight_exp=int(exp), num_weight_bits=8,
                         sign_mode=SignMode.MIXED, num_message_bits=message_bits)

        self.input = HostInput(shape=(n_in,), path=work / "input.dat", ring=self.ring)
        self.neurons, self.recorders, self.denses, self.biases = {}, {}, [], []
        for name, p in schedule["nodes"].items():
            reg = registers[name]
            first = int(p["first_step"])
            size = next(arrays[f"q_{g}_weight_mant"].shape[0] for g in p["synapse_groups"])
            readout = reg["vth"] is None
            # Lava's time_step counts from 1: step t (from 0) of an action resets where (t + 1) % period == offset
            self.neurons[name] = LIFReset(shape=(size,), du=int(reg["du"]), dv=int(reg["dv"]),
                                          vth=(2**17 - 1) if readout else int(reg["vth"]), bias_mant=0, bias_exp=0,
                                          reset_interval=self.period,
                                          reset_offset=(int(p["reset_before_step"]) + 1) % self.period, name=name)
            path = work / f"record_{len(self.recorders)}.dat"
            if readout:
                rec = VoltageRecorder(shape=(size,), path=path, ring=self.ring)
                rec.ref.connect_var(self.neurons[name].v)
            else:
                rec = SpikeRecorder(shape=(size,), path=path, ring=self.ring)
                self.neurons[name].s_out.connect(rec.a_in)
            self.recorders[name] = (rec, path, size, first)
            window = p["bias_input_steps"]
            if window is not None:
                on = np.zeros((1, self.period), np.int32)
                on[0, window[0]:window[1]] = 1
                source = RingBuffer(data=on)
                self.biases.append(source)
                for g in p["synapse_groups"]:
                    bias = arrays.get(f"q_{g}_bias_mant")
                    if bias is not None:
                        dense = mixed_dense(bias[:, None], registers[g]["bias_exp"])
                        source.s_out.connect(dense.s_in)
                        dense.a_out.connect(self.neurons[name].a_in)
                        self.denses.append(dense)
        for g, (src, dst) in groups.items():
            dense = mixed_dense(arrays[f"q_{g}_weight_mant"], registers[g]["weight_exp"],
                                8 if graded and src == input_name else 0)
            (self.input if src == input_name else self.neurons[src]).s_out.connect(dense.s_in)
            dense.a_out.connect(self.neurons[dst].a_in)
            self.denses.append(dense)
        for path in [work / "input.dat"] + [r[1] for r in self.recorders.values()]:
            width = n_in if path.name == "input.dat" else next(r[2] for r in self.recorders.values() if r[1] == path)
            np.memmap(path, np.int32, "w+", shape=(self.ring, width)).flush()
        self.models = models
        self.started = False
        self.steps_run = 0

    def config(self):
        from lava.magma.core.run_configs import Loihi1SimCfg

        models = {**self.models, self.input: self.models[type(self.input)],
                  **{rec: self.models[type(rec)] for rec, *_ in self.recorders.values()}}
        return Loihi1SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)

    def _zero(self) -> None:
        for lif in self.neurons.values():
            lif.u.set(np.zeros(lif.u.shape, np.int32))
            lif.v.set(np.zeros(lif.v.shape, np.int32))
        for dense in self.denses:
            dense.a_buff.set(np.zeros(dense.a_buff.shape, np.int32))

    def run(self, x: np.ndarray) -> dict:
        """Encoder input [N, T, inputs] -> each neuron node's output [N, T, n]."""
        from lava.magma.core.run_conditions import RunSteps

        n = x.shape[0]
        out = {name: np.zeros((n, self.timesteps, size), np.int32) for name, (_, _, size, _) in self.recorders.items()}
        per_call = self.ring // self.period
        inputs = np.memmap(self.work / "input.dat", np.int32, "r+", shape=(self.ring, self.n_in))
        for start in range(0, n, per_call):
            batch = x[start:start + per_call]
            base = self.steps_run % self.ring  # the ring row of this call's first step
            inputs[:] = 0
            for k in range(batch.shape[0]):
                rows = (base + k * self.period + np.arange(self.timesteps)) % self.ring
                inputs[rows] = batch[k]
            inputs.flush()
            if self.started and not self.chained:
                self._zero()
            steps = batch.shape[0] * self.period
            self.neurons[next(iter(self.neurons))].run(condition=RunSteps(num_steps=steps), run_cfg=self.config())
            self.started = True
            for name, (_, path, size, first) in self.recorders.items():
                rec = np.memmap(path, np.int32, "r", shape=(self.ring, size))
                for k in range(batch.shape[0]):
                    rows = (base + k * self.period + first + np.arange(self.timesteps)) % self.ring
                    out[name][start + k] = rec[rows]
            self.steps_run += steps
        return out

    def stop(self) -> None:
        if self.started:
            self.neurons[next(iter(self.neurons))].stop()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        say("error usage: lava_runner.py BUNDLE WORK")
        return 2
    bundle, work = Path(argv[0]), Path(argv[1])
    try:
        import lava  # noqa: F401
    except ImportError:
        say("error lava-nc is not installed in this Python (run make lava)")
        return 2
    start = time.perf_counter()
    net = LavaNetwork(bundle, work)
    say(f"ready {time.perf_counter() - start:.3f}")
    try:
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "quit":
                break
            start = time.perf_counter()
            x = np.load(work / "input.npy")
            np.savez(work / "output.npz", **net.run(np.asarray(x, np.int32)))
            say(f"done {time.perf_counter() - start:.3f}")
    finally:
        net.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
