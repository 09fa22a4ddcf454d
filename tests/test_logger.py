"""Loggers: W&B offline runs of rank 0 with namespaced metrics; a failing W&B never stops training."""

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


def test_logged_names_are_namespaced(tmp_path):
    import json

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
    jobs = sorted((tmp_path / "sweep").glob("*_default_inverted_pendulum_seed*"))
    assert [j.name[-5:] for j in jobs] == ["seed0", "seed1"]
    for job in jobs:
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1 and (job / "summary.json").is_file()
