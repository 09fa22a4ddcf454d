"""Learning regressions, caught by returns (never by wall time: a slower machine is not a bug).
Slow: minutes each; `make test-slow` runs them."""

import json
import subprocess
import sys

import pytest


def train(tmp_path, *overrides) -> dict:
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", "hydra.run.dir=run", "train.progress=false",
                           "logger=jsonl", "energy=none", *overrides],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / "run" / "summary.json").read_text())


@pytest.mark.slow
def test_default_run_learns_inverted_pendulum(tmp_path):
    summary = train(tmp_path)
    assert summary["env_id"] == "InvertedPendulum-v5" and summary["actor"] == "popsan"
    assert summary["eval_return_mean"] >= 900, summary


@pytest.mark.slow
def test_popsan_learns_halfcheetah_in_25k_steps(tmp_path):
    """PopSAN on HalfCheetah-v4 as published, cut to 25,000 env steps (10,000 of them random). The
    committed benchmark's seeds 0-2 (results/halfcheetah_50k) were at 1,051, 1,998 and 1,595 by then; a
    policy that does not learn stays near the random policy's -300. Measured on the project's machine
    with two threads: 1,650 as it is, -241 with the TD target's sign flipped (r - gamma Q'). 20,000 steps
    was too early to tell: returns there ranged from -415 to 1,099 across methods and seeds."""
    summary = train(tmp_path, "experiment=popsan", "env=halfcheetah", "train.total_steps=25000",
                    "train.eval_every=12500", "train.eval_episodes=5")
    assert summary["total_env_steps"] == 25000
    assert summary["eval_return_mean"] > 500, summary
