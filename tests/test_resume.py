"""Checkpoints and resume: exact continuation, refusal of foreign checkpoints, atomic writes, signals."""

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import TINY
from spikerl.config import compose, validate
from spikerl.job import train_run
from spikerl.runtime import checkpoint


def train(run_dir, *overrides):
    rc = validate(compose([*TINY, "train.save_replay=true", *overrides]))
    return train_run(rc, run_dir, "popsan")


# SAC's variant is among make test's longest tests; CI runs it in make test-slow
@pytest.mark.parametrize("algo,parts", [("td3", ("actor", "critic", "actor_target", "critic_target")),
                                        # Proxy Target's proxy and its optimizer, and its three batches per update
                                        ("td3 algo.target=proxy algo.proxy.hidden_sizes=[16,16]",
                                         ("actor", "critic", "proxy", "critic_target")),
                                        pytest.param("sac", ("actor", "critic", "log_std", "critic_target"),
                                                     marks=pytest.mark.slow)])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, algo, parts):
    algo, *settings = algo.split()
    whole = train(tmp_path / "whole", f"algo={algo}", *settings)
    train(tmp_path / "split", f"algo={algo}", *settings, "train.total_steps=300")  # stops (and checkpoints) half way
    resumed = train(tmp_path / "split", f"algo={algo}", *settings, "resume=auto")
    a = checkpoint.load(tmp_path / "whole")
    b = checkpoint.load(tmp_path / "split")
    assert b["counters"]["env_steps"] == 600 and resumed["total_env_steps"] == 600
    assert a["meta"]["algo"] == b["meta"]["algo"] == resumed["algo"] == algo
    for part in parts:
        for key, value in a["learner"][part].items():
            assert torch.equal(value, b["learner"][part][key]), f"{part}.{key}"
    assert torch.equal(a["evaluator"]["history"], b["evaluator"]["history"])  # the same returns at 300 and 600
    assert whole["eval_return_mean"] == resumed["eval_return_mean"]
    assert a["learner"]["updates"] == b["learner"]["updates"] == 80


@pytest.mark.parametrize("preset,extra", [  # CaRe-BN's, among make test's longest: make test-slow
    ("ilcsan", []),
    pytest.param("carebn", ["train.batch_size=64", "actor.normalization.recalibrate_every=250",
                            "actor.normalization.recalibration_batches=2",
                            "actor.normalization.recalibration_batch_size=16"], marks=pytest.mark.slow),
])
def test_the_spiking_actor_presets_resume_exactly(tmp_path, preset, extra):
    """ILC-SAN's connections and decoder, CaRe-BN's moving statistics, Kalman errors and recalibrations
    (one before and one after the split) continue from a checkpoint as if uninterrupted."""
    args = [f"experiment={preset}", "train.update_every=50", *extra]
    train(tmp_path / "whole", *args)
    train(tmp_path / "split", *args, "train.total_steps=300")
    train(tmp_path / "split", *args, "resume=auto")
    a, b = checkpoint.load(tmp_path / "whole"), checkpoint.load(tmp_path / "split")
    for part in ("actor", "actor_target", "critic"):
        for key, value in a["learner"][part].items():
            assert torch.equal(value, b["learner"][part][key]), f"{part}.{key}"
    assert torch.equal(a["evaluator"]["history"], b["evaluator"]["history"])
    if preset == "carebn":
        assert not torch.equal(a["learner"]["actor"]["snn.norms.0.moving_var"], torch.ones(32))


def test_after_a_resume_the_progress_bar_times_only_this_segments_steps_after_its_warm_up(tmp_path, monkeypatch):
    """The bar's rate and time left count the steps of the current segment only, and only from its first
    update round (the first policy action and update compile; a resumed run would otherwise show hours
    to go); until then it says it is warming up and leaves no line."""
    from spikerl.rl import loop

    bars = []

    class Recorder:
        def __init__(self, **kwargs):
            self.kwargs, self.n = kwargs, kwargs["initial"]
            bars.append(self)

        def update(self, n):
            self.n += n

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    train(tmp_path, "train.total_steps=300")
    monkeypatch.setattr(loop, "tqdm", Recorder)
    train(tmp_path, "resume=auto", "train.progress=true")
    assert [(b.kwargs["initial"], b.kwargs["leave"], b.kwargs["desc"]) for b in bars] == [
        (300, False, "InvertedPendulum-v5 (warming up)"), (350, True, "InvertedPendulum-v5")]  # 1st round at 350
    assert [b.n for b in bars] == [350, 600] and not bars[0].kwargs["disable"]


def test_resume_without_saved_replay_continues_and_says_so(tmp_path, capsys):
    rc = validate(compose([*TINY, "train.total_steps=300"]))
    train_run(rc, tmp_path, "popsan")
    summary = train_run(validate(compose([*TINY, "resume=auto"])), tmp_path, "popsan")
    assert summary["total_env_steps"] == 600
    assert "replay buffer not saved" in capsys.readouterr().err


def test_auto_resume_without_a_checkpoint_starts_fresh(tmp_path):
    assert train(tmp_path, "resume=auto", "train.total_steps=200")["total_env_steps"] == 200


def test_checkpoint_of_another_architecture_or_task_is_refused(tmp_path):
    train(tmp_path / "small", "train.total_steps=200")
    with pytest.raises(checkpoint.CheckpointError, match="its actor differs"):
        train(tmp_path / "other", f"resume={tmp_path / 'small'}", "actor.hidden_sizes=[16,16]")
    with pytest.raises(checkpoint.CheckpointError, match="it has env_id='InvertedPendulum-v5'"):
        train(tmp_path / "other", f"resume={tmp_path / 'small'}", "env.id=InvertedDoublePendulum-v5")


def test_resuming_with_another_algorithm_is_refused(tmp_path):
    train(tmp_path / "td3", "train.total_steps=200")
    with pytest.raises(checkpoint.CheckpointError, match="it has algo='td3', this run 'sac'"):
        train(tmp_path / "other", f"resume={tmp_path / 'td3'}", "algo=sac")


def test_changing_the_observation_normaliser_on_resume_is_refused(tmp_path):
    """The checkpoint's normaliser statistics belong to its obs_norm: another one cannot continue it."""
    train(tmp_path / "small", "train.total_steps=200")
    with pytest.raises(checkpoint.CheckpointError, match="it has obs_norm='zscore', this run 'maxabs'"):
        train(tmp_path / "other", f"resume={tmp_path / 'small'}", "normalizer.kind=maxabs")


def test_checkpoint_from_before_obs_norm_was_recorded_still_resumes(tmp_path):
    train(tmp_path / "a", "train.total_steps=200")
    path = tmp_path / "a" / "checkpoints" / "last.pt"
    state = checkpoint.load(path)
    state["meta"].pop("obs_norm", None)
    torch.save(state, path)
    assert train(tmp_path / "b", f"resume={path}", "train.total_steps=300")["total_env_steps"] == 300


def test_best_checkpoint_holds_the_best_evaluation(tmp_path):
    summary = train(tmp_path)
    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")
    assert best["evaluator"]["history"][-1, 1].item() == summary["best_eval_return"]
    assert "replay" not in best


def test_atomic_write_leaves_the_old_checkpoint_when_the_rename_never_happens(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"meta": {}, "value": torch.tensor(1)}, path)

    def crash(*args):
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(checkpoint.CheckpointError, match="simulated crash.*previous checkpoint is intact"):
        checkpoint.save_atomic({"meta": {}, "value": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["value"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"meta": {}, "value": torch.tensor(1)}, path)

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(checkpoint.CheckpointError, match="No space left on device"):
        checkpoint.save_atomic({"meta": {}, "value": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["value"].item() == 1


def test_truncated_checkpoint_is_refused_in_one_line(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"meta": {}, "value": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(checkpoint.CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(path)


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"meta": {}, "payload": os.system}, path)  # a callable would be called on a plain load
    with pytest.raises(checkpoint.CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(path)


def start_cli(tmp_path, *args):
    return subprocess.Popen([sys.executable, "-m", "spikerl.run", *TINY, "train.total_steps=20000",
                             "train.checkpoint_every=1000000", "hydra.run.dir=run", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(tmp_path, step, proc, timeout=120):
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and any(json.loads(line)["step"] >= step for line in metrics.read_text().splitlines()):
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    raise AssertionError(f"no metrics row for step {step} within {timeout} s")


@pytest.mark.parametrize("world_size", [1, pytest.param(2, marks=pytest.mark.slow)])  # two ranks: make test-slow
def test_sigterm_checkpoints_exits_143_and_resume_auto_finishes(tmp_path, world_size):
    proc = start_cli(tmp_path, f"dist.world_size={world_size}")
    wait_for_step(tmp_path, 400, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    hint = err.strip().splitlines()[-1]  # the run's own overrides, then resume=auto in its folder
    assert hint.endswith(shlex.join(["python", "-m", "spikerl.run", *TINY, "train.total_steps=20000",
                                     "train.checkpoint_every=1000000", f"dist.world_size={world_size}",
                                     "resume=auto", f"hydra.run.dir={tmp_path / 'run'}"])), hint
    stopped_at = checkpoint.load(tmp_path / "run")["counters"]["env_steps"]
    assert 400 <= stopped_at < 20000
    finish_with_resume(tmp_path, stopped_at + 400, f"dist.world_size={world_size}")


def test_ctrl_c_while_compiling_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    """Compiling the first update blocks for a minute or more on a CPU without a safe point: Ctrl-C there
    ends the run within seconds (it used to wait for the compile to finish), writes no checkpoint of a
    half-done round, and resume=auto continues from the last one (here: none, so it starts afresh)."""
    proc = start_cli(tmp_path, "compile=true", f"compile_cache={tmp_path / 'cache'}", "train.checkpoint_every=100",
                     "train.progress=true")
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300  # a loaded 2-core machine takes minutes to get there
    while "compiling the update" not in "".join(seen):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(seen)[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # from an empty cache, compiling goes on for tens of seconds more
    start = time.monotonic()
    proc.wait(timeout=120)
    waited = time.monotonic() - start
    reader.join(timeout=10)
    err = "".join(seen)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "while compiling the update, at once: no checkpoint written since the last one" in err
    assert waited < 10, f"{waited:.1f} s from Ctrl-C to exit"
    saved = checkpoint.load(tmp_path / "run")["counters"]["env_steps"]  # the warm-up's, before the round
    assert saved == 200, saved


def finish_with_resume(tmp_path, total, *args):
    done = subprocess.run([sys.executable, "-m", "spikerl.run", *TINY, f"train.total_steps={total}",
                           "hydra.run.dir=run", "resume=auto", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["total_env_steps"] == total


def test_kill_9_leaves_an_intact_checkpoint_that_resume_auto_continues(tmp_path):
    proc = start_cli(tmp_path, "train.checkpoint_every=200")
    wait_for_step(tmp_path, 700, proc)
    proc.kill()
    proc.communicate(timeout=60)
    state = checkpoint.load(tmp_path / "run")  # intact, whatever moment the kill came
    assert state["counters"]["env_steps"] >= 600
    finish_with_resume(tmp_path, state["counters"]["env_steps"] + 400)


def test_unwritable_checkpoint_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "checkpoints"
    blocker.write_text("a file where the checkpoint folder should be")  # unwritable even for root
    with pytest.raises(checkpoint.CheckpointError, match="cannot write checkpoint .*previous checkpoint is intact"):
        checkpoint.save_atomic({"meta": {}, "value": torch.tensor(2)}, blocker / "last.pt")


@pytest.mark.parametrize("mode,expected", [("raise", "raised at env step"), ("nan", "non-finite observation")])
def test_environment_faults_are_reported_with_the_step(tmp_path, mode, expected):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__), "FAULTY_ENV_MODE": mode}
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", *TINY, "seed=1", "hydra.run.dir=run",
                           "env.id=faulty_env:FaultyPendulum-v0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("spikerl: error: faulty_env:FaultyPendulum-v0") and expected in last, last
    assert "Traceback" not in proc.stderr


def folder_bytes(folder):
    """The folder's own contents: each file's bytes, each link's target. W&B links `debug-core.log` to its
    service's shared log outside the run folder, which that service keeps appending to."""
    return {p.relative_to(folder): os.readlink(p) if p.is_symlink() else p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_symlink() or p.is_file()}


@pytest.mark.parametrize("refusal,override,message", [
    ("another task", "env=hopper", "does not fit this run: it has env_id='InvertedPendulum-v5'"),
    ("another algorithm", "algo=sac", "it has algo='td3', this run 'sac'"),
    ("a truncated checkpoint", "seed=0", "cannot read checkpoint"),
])
def test_a_refused_resume_leaves_the_run_folder_as_it_was(tmp_path, refusal, override, message):
    """resume=auto into a run folder whose checkpoint cannot continue this run is refused in one line
    (exit 2) before Hydra, W&B or the energy meter write anything there: every file keeps its bytes and
    no file appears (before, Hydra had rewritten the folder's config and overrides, and a W&B run and
    an energy segment were added)."""
    args = [*TINY, "train.total_steps=200", "logger=wandb", "energy=codecarbon", "hydra.run.dir=run"]
    first = subprocess.run([sys.executable, "-m", "spikerl.run", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    if refusal == "a truncated checkpoint":
        last = tmp_path / "run" / "checkpoints" / "last.pt"
        last.write_bytes(last.read_bytes()[:100])
    before = folder_bytes(tmp_path / "run")
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", *args, override, "resume=auto"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("spikerl: error:")
    assert folder_bytes(tmp_path / "run") == before


def test_ranks_that_fail_to_start_leave_the_run_folder_as_it_was(tmp_path):
    """A resume whose ranks never meet (this node cannot reach dist.master_addr) trains nothing: after
    its one line (exit 1) the folder's files have their bytes again, Hydra's rewritten config included."""
    from spikerl.runtime import distributed

    args = [*TINY, "train.total_steps=200", "dist.world_size=2", "hydra.run.dir=run"]
    first = subprocess.run([sys.executable, "-m", "spikerl.run", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    before = folder_bytes(tmp_path / "run")
    unreachable = ["dist.nnodes=2", "dist.node_rank=1", "dist.master_addr=127.0.0.1",
                   f"dist.master_port={distributed.free_port()}", "dist.timeout_s=3"]
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", *args, *unreachable, "resume=auto"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "could not meet the others" in proc.stderr, proc.stderr[-2000:]
    assert folder_bytes(tmp_path / "run") == before


def test_how_the_actor_is_computed_may_change_on_resume(tmp_path):
    """neuron_backend and compile change the computation, not the maths: a run may continue with others."""
    train(tmp_path / "a", "train.total_steps=200")
    summary = train(tmp_path / "b", f"resume={tmp_path / 'a'}", "train.total_steps=300", "neuron_backend=fused")
    assert summary["total_env_steps"] == 300 and summary["neuron_backend"] == "fused"


def test_a_resumed_runs_summary_counts_every_segment(tmp_path, monkeypatch):
    """Steps and updates were totals over a run's segments, but wall time and energy were the last
    segment's alone: a requeued job looked faster and greener than it was."""
    from spikerl import job

    class FixedMeter:  # each segment "uses" 2 Wh over 10 s
        def start(self):
            pass

        def reading(self):
            return {}

        def stop(self):
            return {"energy_kwh": 0.002, "cpu_energy_kwh": 0.001, "gpu_energy_kwh": 0.0, "ram_energy_kwh": 0.001,
                    "energy_seconds": 10.0, "power_w": 720.0, "emissions_kg": 0.001, "country": "USA",
                    "energy_source": "estimate"}

    monkeypatch.setattr(job, "make_meter", lambda *args, **kwargs: FixedMeter())
    first = train(tmp_path, "train.total_steps=300")
    assert first["segments"] == 1 and first["energy_kwh"] == pytest.approx(0.002)
    saved_wall = checkpoint.load(tmp_path)["counters"]["wall_seconds"]
    resumed = train(tmp_path, "resume=auto")
    assert resumed["segments"] == 2 and resumed["total_env_steps"] == 600
    assert resumed["wall_seconds"] == pytest.approx(saved_wall + resumed["segment_wall_seconds"], rel=1e-6)
    assert resumed["wall_seconds"] > resumed["segment_wall_seconds"]
    assert resumed["env_steps_per_second"] == pytest.approx(600 / resumed["wall_seconds"])
    assert resumed["energy_kwh"] == pytest.approx(0.004) and resumed["energy_seconds"] == pytest.approx(20.0)
    assert resumed["emissions_kg"] == pytest.approx(0.002) and resumed["energy_segments"] == 2
    assert resumed["power_w"] == pytest.approx(0.004 * 3.6e6 / 20.0)
    # a fresh run in the same folder starts its ledger anew
    fresh = train(tmp_path, "train.total_steps=300")
    assert fresh["energy_kwh"] == pytest.approx(0.002) and fresh["segments"] == 1


def test_a_segment_killed_outright_counts_its_energy_up_to_its_last_checkpoint(tmp_path, monkeypatch):
    """A SIGKILL (a session's end, a lost node) never stops the meter: the killed segment's energy was lost
    while its wall time, kept in the checkpoint, still counted, so Greenup favoured a run that died."""
    from spikerl import job

    class Killed(BaseException):
        pass

    class Meter:  # reads 1 Wh over 5 s at any checkpoint; a segment that ends has used 2 Wh over 10 s
        die = True

        def start(self):
            pass

        def reading(self):
            return {"energy_kwh": 0.001, "cpu_energy_kwh": 0.001, "gpu_energy_kwh": 0.0, "ram_energy_kwh": 0.0,
                    "energy_seconds": 5.0, "power_w": 720.0, "emissions_kg": 0.0005, "country": "USA",
                    "energy_source": "estimate"}

        def stop(self):
            if Meter.die:  # the process dies here: nothing after its last checkpoint is written
                raise Killed
            return {**self.reading(), "energy_kwh": 0.002, "cpu_energy_kwh": 0.002, "energy_seconds": 10.0,
                    "emissions_kg": 0.001}

    monkeypatch.setattr(job, "make_meter", lambda *args, **kwargs: Meter())
    with pytest.raises(Killed):
        train(tmp_path, "train.total_steps=300", "train.checkpoint_every=100")
    assert not (tmp_path / "summary.json").exists() and (tmp_path / "energy" / "open_segment.json").is_file()
    Meter.die = False
    resumed = train(tmp_path, "resume=auto", "train.total_steps=600")
    assert resumed["segments"] == 2 and resumed["energy_segments"] == 2 and resumed["energy_segments_cut_off"] == 1
    assert resumed["energy_kwh"] == pytest.approx(0.003) and resumed["energy_seconds"] == pytest.approx(15.0)
    assert not (tmp_path / "energy" / "open_segment.json").exists()
    # a fresh run in the folder forgets a cut-off segment of the run before
    (tmp_path / "energy" / "open_segment.json").write_text(json.dumps(Meter().reading()))
    fresh = train(tmp_path, "train.total_steps=300")
    assert fresh["energy_segments"] == 1 and fresh["energy_segments_cut_off"] == 0
    assert fresh["energy_kwh"] == pytest.approx(0.002)
