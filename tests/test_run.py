"""End to end: outputs of a run, determinism, evaluation of a saved actor, the command line."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import TINY
from spikerl.evaluate import load_policy
from spikerl.evaluate import main as evaluate_main
from spikerl.rl.evaluation import evaluate_policy
from spikerl.rl.seeding import EVAL_SEED_OFFSET
from spikerl.runtime import checkpoint
from spikerl.telemetry.metrics import RunningMeans, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SUMMARY_KEYS = {
    "method", "actor", "env_id", "seed", "total_env_steps", "wall_seconds", "eval_return_mean",
    "eval_return_std", "best_eval_return", "updates_per_second", "env_steps_per_second", "world_size",
    "precision",
}


def test_run_writes_summary_metrics_and_checkpoint(tiny_run):
    summary, run_dir = tiny_run()
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= on_disk.keys()
    assert on_disk == json.loads(json.dumps(summary))
    assert all(not isinstance(v, (dict, list)) for v in on_disk.values())  # flat
    assert on_disk["total_env_steps"] == 600 and on_disk["env_id"] == "InvertedPendulum-v5"
    assert on_disk["updates"] == 80  # 10 updates every 50 steps after step 200: steps 250..600
    assert (run_dir / "learning_curve.png").stat().st_size > 10_000  # the run's own curve, beside evaluations.csv
    # what produced it: this checkout's commit, whether it had uncommitted changes, and the machine
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    assert on_disk["code_commit"] == head and isinstance(on_disk["code_dirty"], bool)
    assert on_disk["machine_cpu_capability"] == torch.backends.cpu.get_cpu_capability() and on_disk["machine_cpu"]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [100, 200, 300, 400, 500, 600]
    assert "eval/return_mean" in rows[2] and "eval/return_mean" in rows[5]
    curve = (run_dir / "evaluations.csv").read_text().splitlines()
    assert curve[0] == "step,return_mean,return_std,wall_seconds,train_seconds"
    assert [line.split(",")[0] for line in curve[1:]] == ["300", "600"]
    assert float(curve[-1].split(",")[1]) == summary["eval_return_mean"]
    assert {"time/env_steps_per_second", "time/updates_per_second", "loss/critic", "train/episode_return"} <= \
        rows[-1].keys()
    state = checkpoint.load(run_dir)
    assert state["counters"]["env_steps"] == 600
    assert state["meta"]["env_id"] == "InvertedPendulum-v5"


def test_compile_time_is_reported_apart_and_steady_rates_leave_it_out(tiny_run, monkeypatch):
    """The summary says how much of the wall time went to compiling (every segment's) and to the
    precision probe; steady rates divide by the time left. Without compiling they equal the all-in ones."""
    summary, _ = tiny_run()  # compile=false
    assert summary["compile_seconds"] == 0.0 and summary["update_compile_seconds"] == 0.0
    assert summary["steady_env_steps_per_second"] == pytest.approx(summary["env_steps_per_second"])
    assert summary["steady_updates_per_second"] == pytest.approx(summary["updates_per_second"])
    assert summary["probe_seconds"] >= 0.0

    from spikerl.rl import run_state, updates

    clock = iter([2.0, 3.0, 10.0, 25.0, 30.0])  # torch.compile's running total as the run reads it
    monkeypatch.setattr(run_state, "compile_seconds", lambda: next(clock))
    state = run_state.RunState(100, 1, "unused", {}, {})  # reads 2.0
    state.start_segment()  # 3.0
    assert state.compile_seconds == 7.0  # 10.0 - 3.0
    saved = state.state_dict()["counters"]["compile_seconds"]  # 25.0 - 3.0
    resumed = run_state.RunState(100, 1, "unused", {}, {})  # 30.0
    resumed.earlier_compile_seconds = saved
    monkeypatch.setattr(run_state, "compile_seconds", lambda: 30.0)
    resumed.start_segment()
    assert saved == 22.0 and resumed.compile_seconds == 22.0  # the earlier segments' compiling is kept

    rounds = iter([0.0, 4.0, 4.0, 4.0])  # the first round compiles for 4 s, the second not at all
    monkeypatch.setattr(updates, "compile_seconds", lambda: next(rounds))

    class Learner:
        consecutive_skips, batches_per_update = 0, 1

        def update(self, batch, lead=()):
            return {}

    class Replay:
        def sample(self, *args):
            return None

    schedule = updates.UpdateSchedule(Learner(), Replay(), None, 1, 1, 2, update_after=0, seed=0)
    schedule.run_round(1, RunningMeans())
    schedule.run_round(2, RunningMeans())
    assert schedule.compile_seconds == 4.0 and schedule.state_dict()["compile_seconds"] == 4.0


def test_same_seed_same_result_and_other_seed_differs(tiny_run):
    a, dir_a = tiny_run(name="a")
    b, dir_b = tiny_run(name="b")
    c, dir_c = tiny_run("seed=1", name="c")
    for key in ("eval_return_mean", "eval_return_std", "best_eval_return", "episodes"):
        assert a[key] == b[key]
    actor_a, actor_b, actor_c = (checkpoint.load(d)["learner"]["actor"] for d in (dir_a, dir_b, dir_c))
    assert all(torch.equal(actor_a[k], actor_b[k]) for k in actor_a)
    assert not all(torch.equal(actor_a[k], actor_c[k]) for k in actor_a)


def test_saved_actor_reproduces_the_final_evaluation(tiny_run, capsys):
    """The run's evaluations reset episode k with seed + EVAL_SEED_OFFSET + k; re-evaluating starts there."""
    summary, run_dir = tiny_run()
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    seed = summary["seed"] + EVAL_SEED_OFFSET
    returns = evaluate_policy(load_policy(state), "InvertedPendulum-v5", 2, seed=seed, max_episode_steps=100)
    assert returns.mean() == pytest.approx(summary["eval_return_mean"], abs=1e-9)
    assert evaluate_main([str(run_dir)]) == 0  # by default as many episodes as the run's evaluations (TINY: 2)
    out = capsys.readouterr().out
    assert f"return {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f}" in out
    assert f"over 2 episodes (seed {seed})" in out
    state["meta"].pop("eval_episodes")  # a checkpoint from before the record: the run folder's config says it
    checkpoint.save_atomic(state, run_dir / "checkpoints" / "old.pt")
    (run_dir / "config.yaml").write_text("train: {eval_episodes: 2}\n")  # as the entry point writes it
    assert evaluate_main([str(run_dir / "checkpoints" / "old.pt"), "--energy-episodes", "0"]) == 0
    assert f"over 2 episodes (seed {seed})" in capsys.readouterr().out


def test_a_run_makes_its_task_once_for_its_sizes(tiny_run, monkeypatch):
    """The compile plan and the loop both need the task's observation and action sizes: one gym.make
    gives them (the vector envs are made apart, by gym.make_vec)."""
    import gymnasium

    from spikerl import job

    made, make = [], gymnasium.make
    monkeypatch.setattr(gymnasium, "make", lambda env_id, *args, **kwargs: made.append(env_id)
                        or make(env_id, *args, **kwargs))
    getattr(job.env_dims, "cache_clear", lambda: None)()  # an earlier test of this process may have asked
    tiny_run("train.total_steps=200")
    assert made == ["InvertedPendulum-v5"]


def test_evaluate_refuses_missing_and_corrupt_checkpoints(tmp_path, capsys):
    assert evaluate_main([str(tmp_path / "nothing")]) == 2
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert evaluate_main([str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no checkpoint" in err[0] and "cannot read checkpoint" in err[1]


def run_cli(args, cwd, timeout=300):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "spikerl.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_command_line_run_end_to_end(tmp_path):
    proc = run_cli([*TINY, "hydra.run.dir=out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "SpikeRL run summary" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["total_env_steps"] == 600 and summary["actor"] == "popsan"
    # TINY's network sizes and schedule make it a variant of the default run, named so (spikerl.config.label)
    assert summary["method"].startswith("default~") and "actor.hidden_sizes=[32,32]" in summary["variant"]
    assert f"this run is {summary['method']}" in proc.stdout
    assert (tmp_path / "out" / ".hydra" / "config.yaml").is_file()
    assert (tmp_path / "out" / "config.yaml").is_file()


def test_several_env_copies_count_every_step(tiny_run):
    summary, run_dir = tiny_run("env.num_envs=3", "train.total_steps=600")
    assert summary["total_env_steps"] == 600  # 200 iterations of 3 copies
    state = checkpoint.load(run_dir)
    assert state["counters"]["local_steps"] == 600 and len(state["collector"]["envs"]) == 3


def test_evaluations_csv_says_when_each_evaluation_came(tiny_run):
    """Time to reach a return needs the wall time at each evaluation, and the training time without
    the evaluations before it."""
    import csv

    summary, run_dir = tiny_run()
    with open(run_dir / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [300, 600]
    wall = [float(r["wall_seconds"]) for r in rows]
    train = [float(r["train_seconds"]) for r in rows]
    assert 0 < wall[0] < wall[1] <= summary["wall_seconds"]
    assert train[0] == wall[0]  # no evaluation before the first
    assert 0 < train[1] < wall[1] and wall[1] - train[1] <= summary["eval_seconds"]


@pytest.mark.slow  # compiles three methods' whole updates: about two minutes on one core (make test-slow runs it)
def test_compiled_kernels_hold_across_the_jobs_of_a_multirun(tmp_path):
    """Hydra's basic launcher runs a sweep's jobs in one process: PopSAN, DSRL and bf16 SpikeRL actors,
    training and acting, must share the compiled kernels without hitting dynamo's recompile limit
    (a later job used to fail, or fall back to eager)."""
    tiny = [o for o in TINY if o != "compile=false"]
    # warnings shown; the timeout guards against a hang only: these cold compiles took over 300 s on a busy core
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", "-m", *tiny, "experiment=popsan,dsrl,spikerl",
                           "compile=true", "hydra.sweep.dir=sweep", "hydra.callbacks.comparison.enabled=false"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("SpikeRL run summary") == 3
    assert "compile" not in proc.stderr.lower() and "recompil" not in proc.stderr.lower(), proc.stderr[-3000:]


def test_a_schedule_that_leaves_nothing_to_learn_is_said(capsys):
    """`env=hopper train.total_steps=5000` used to take 5,000 random actions without a word (10,000 start
    steps): the run says so as it starts."""
    from spikerl.config import compose, validate
    from spikerl.job import idle_schedule

    def idle(*overrides):
        return idle_schedule(validate(compose(list(overrides))).train)

    assert "every action is random" in idle("env=hopper", "train.total_steps=5000")
    assert "no gradient update" in idle("train.total_steps=1000", "train.update_after=1000", "train.start_steps=10")
    assert idle("env=hopper", "train.total_steps=20000") is None


def test_the_bar_says_what_a_long_first_round_is_doing():
    """The first round of a compiled update blocks for minutes on a CPU: the bar says it is compiling, and
    for how long, while it does (it froze with an ETA of hours), and clears it afterwards."""
    import threading

    from spikerl.rl.loop import TrainingLoop

    class Bar:
        disable = False

        def __init__(self):
            self.said, self.seen = [], threading.Event()

        def set_postfix_str(self, text, refresh=True):
            self.said.append(text)
            if text:
                self.seen.set()

    loop = TrainingLoop.__new__(TrainingLoop)
    loop.bar = Bar()
    with loop.saying("compiling the update", every=0.01):
        assert loop.bar.seen.wait(5.0)
    assert loop.bar.said[0].startswith("compiling the update: ") and loop.bar.said[-1] == ""
