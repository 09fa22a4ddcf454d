import os
import shutil
import tempfile

import pytest


def pytest_configure(config):
    """Runs compile into a cache folder of the session's, not the user's (`SPIKERL_COMPILE_CACHE`):
    their compiled graphs and the speed records of `compile=auto` would otherwise steer the user's
    own runs. The workers of pytest-xdist inherit it from the controller and share it.

    Under pytest-xdist (`make test` runs `-n auto`), pin each worker to a core of its own, as the
    project runs its jobs: the worker's torch and every run it starts then take one thread
    (`distributed.available_cores` reads the affinity). Two-thread processes beside a busy core spin
    in OpenMP's barriers: a run measured 8-20x slower so."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker:  # the controller, or a session without xdist
        cache = tempfile.mkdtemp(prefix="spikerl-tests-")
        os.environ["SPIKERL_COMPILE_CACHE"] = cache
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
        import torch

        torch.set_num_threads(1)


# A run small enough for a unit test: a few hundred env steps, tiny networks, short episodes.
TINY = [
    "train.total_steps=600", "train.start_steps=200", "train.update_after=200", "train.eval_every=300",
    "train.eval_episodes=2", "train.checkpoint_every=300", "train.log_every=100", "train.progress=false",
    "env.max_episode_steps=100", "actor.hidden_sizes=[32,32]", "critic.hidden_sizes=[32,32]",
    "train.gradient_steps=10", "energy=none", "logger=jsonl", "compile=false",
]


def make_run_folder(root, name: str, summary: dict | None) -> None:
    """A run folder as Hydra and a run leave it: `.hydra/config.yaml`, the resolved `config.yaml`, and
    unless `summary` is None (a failed or unfinished run) `summary.json`, plus `evaluations.csv` from an
    `eval_history` key (rows of step, mean, std and optionally wall and training seconds)."""
    import json

    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("method: x\n")
    (run / "config.yaml").write_text("method: x\n")
    if summary is not None:
        summary = dict(summary)
        history = summary.pop("eval_history", [])
        (run / "summary.json").write_text(json.dumps(summary))
        timed = history and len(history[0]) == 5
        header = "step,return_mean,return_std" + (",wall_seconds,train_seconds" if timed else "")
        lines = [header, *(",".join(map(str, row)) for row in history)]
        (run / "evaluations.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny_run(tmp_path):
    """Train a tiny run in a folder of its own; returns (summary, run folder)."""
    from spikerl.config import compose, validate
    from spikerl.job import train_run

    def run(*overrides, name="run"):
        rc = validate(compose([*TINY, *overrides]))
        run_dir = tmp_path / name
        return train_run(rc, run_dir, "popsan"), run_dir

    return run
