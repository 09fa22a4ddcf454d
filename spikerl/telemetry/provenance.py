"""What produced a result: the code (git commit, and whether the working tree had uncommitted changes)
and the machine (CPU model, torch's CPU capability, threads). Every `summary.json` records both, and the
benchmarks under experiments/ record the machine with their figures."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

from ..runtime.machine import cpu_model, host

__all__ = ["code_version", "cpu_model", "host"]

SOURCE = Path(__file__).resolve().parents[2]  # the checkout the package runs from, when it is one


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict:
    """{"commit", "dirty", "version"}: the checkout's commit and whether tracked files differ from it
    (both None when the package does not run from a git checkout), and the installed version."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    try:
        version = metadata.version("spikerl")
    except metadata.PackageNotFoundError:
        version = None
    return {"commit": commit, "dirty": None if status is None else bool(status), "version": version}
