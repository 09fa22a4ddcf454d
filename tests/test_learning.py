"""The embedded default learns: `python -m spikerl.run` as a user runs it (slow: minutes)."""

import json
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_default_run_learns_inverted_pendulum_within_ten_minutes(tmp_path):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", "hydra.run.dir=run", "train.progress=false"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["env_id"] == "InvertedPendulum-v5" and summary["actor"] == "popsan"
    assert summary["eval_return_mean"] >= 900, summary
    assert time.monotonic() - start < 600
