"""Loggers: W&B offline runs of rank 0 with namespaced metrics; a failing W&B never stops training."""

import dataclasses
import json

import pytest

from conftest import TINY
from spikerl.config import compose, validate
from spikerl.job import train_run


def run(tmp_path, *overrides):
    rc = validate(compose([*TINY, "train.total_steps=300", *overrides]))
    return train_run(rc, tmp_path, "popsan")


def test_wandb_offline_run_is_written_in_the_run_folder(tmp_path):
    run(tmp_path, "logger=wandb")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))  # the run's records, to sync later
    assert (tmp_path / "metrics.jsonl").is_file()


def test_a_resumed_run_continues_its_wandb_run(tmp_path):
    """The second segment of a run (resume=auto in its folder) logs to the same W&B run id, where it used to
    open a second run with a new id."""
    run(tmp_path, "logger=wandb", "train.total_steps=200")
    run(tmp_path, "logger=wandb", "train.total_steps=300", "resume=auto")
    segments = sorted((tmp_path / "wandb").glob("offline-run-*"))
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    assert len(segments) == 2 and all(f"-{run_id}" in p.name for p in segments)  # (-1: two in one second)


def test_logged_names_are_namespaced(tmp_path):
    run(tmp_path, "logger=jsonl")
    keys = set().union(*(json.loads(line).keys() for line in open(tmp_path / "metrics.jsonl")))
    assert keys - {"step"} and all(k.split("/")[0] in {"train", "eval", "loss", "time"} for k in keys - {"step"})


def test_logger_none_writes_no_metrics(tmp_path):
    summary = run(tmp_path, "logger=none")
    assert summary["total_env_steps"] == 300 and not (tmp_path / "metrics.jsonl").exists()


def test_failing_wandb_warns_and_training_goes_on(tmp_path, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("no W&B here")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(UserWarning, match="W&B logging disabled"):
        summary = run(tmp_path, "logger=wandb")
    assert summary["total_env_steps"] == 300 and (tmp_path / "metrics.jsonl").is_file()


def test_each_job_of_a_multirun_has_its_own_finished_wandb_run(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "spikerl.run", "-m", *TINY, "train.total_steps=200", "seed=0,1",
                           "logger=wandb", "hydra.sweep.dir=sweep"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("SpikeRL run summary") == 2
    jobs = sorted((tmp_path / "sweep").glob("*_default~*_inverted_pendulum_seed*"))  # TINY: a variant
    assert [j.name[-5:] for j in jobs] == ["seed0", "seed1"]
    for job in jobs:
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1 and (job / "summary.json").is_file()
    # both jobs name their sweep, whose id is its folder's name and a hash of its path
    sweeps = {json.loads((job / "summary.json").read_text())["sweep"] for job in jobs}
    assert len(sweeps) == 1 and sweeps.pop().startswith("sweep-")


def test_wandb_runs_of_a_sweep_share_its_group_and_keep_their_method_as_job_type(tmp_path, monkeypatch):
    """Two sweeps' jobs have the same folder names; their W&B runs must not merge: the group and the name
    carry the sweep's id, and the job type (method and task) compares methods across sweeps."""
    import wandb

    from spikerl.job import make_writers
    from spikerl.launchers import sweep_id

    seen = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: seen.append(kwargs) or None)
    for sweep in ("a/2026-11-30_10-00-00", "b/2026-11-30_10-00-00"):
        rc = validate(compose([*TINY, "logger=wandb", "experiment=dsrl"]))
        rc = dataclasses.replace(rc, sweep=sweep_id(tmp_path / sweep))
        make_writers(rc, tmp_path / sweep / "0_dsrl_inverted_pendulum_seed0", "dsrl").close()
    first, second = seen
    assert first["group"] != second["group"] and first["name"] != second["name"]
    assert first["group"].startswith("2026-11-30_10-00-00-")
    assert first["name"] == f"{first['group']}/0_dsrl_inverted_pendulum_seed0"
    assert first["job_type"] == second["job_type"] == "dsrl-inverted_pendulum"
    assert f"sweep:{first['group']}" in first["tags"]
    single = validate(compose([*TINY, "logger=wandb"]))  # a single run: its method and task, as before
    make_writers(single, tmp_path / "run", "popsan").close()
    assert seen[-1]["group"] == "default-inverted_pendulum" and seen[-1]["name"] == "run"


def test_tensorboard_gets_the_same_rows_as_the_json_lines(tmp_path):
    """logger=tensorboard: <run>/tensorboard/ event files hold every logged scalar at its env step, as
    metrics.jsonl does (read back with TensorBoard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tmp_path, "logger=tensorboard")
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    tags = events.Tags()["scalars"]
    assert "eval/return_mean" in tags and "loss/critic" in tags
    logged = [(r["step"], r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]
    read = [(e.step, e.value) for e in events.Scalars("eval/return_mean")]
    assert [s for s, _ in read] == [s for s, _ in logged]
    assert all(abs(a - b) < 1e-3 for (_, a), (_, b) in zip(read, logged))
    assert not (tmp_path / "wandb").exists()
