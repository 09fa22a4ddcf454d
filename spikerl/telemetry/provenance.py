"""What produced a result: the code (git commit, and whether the working tree had uncommitted changes)
and the machine (CPU model, torch's CPU capability, threads). Every `summary.json` records both, and the
benchmarks under experiments/ record the machine with their figures."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> dict:
    """The machine's facts the figures depend on (AVX2-only CPUs emulate bf16; threads set the pace)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    gpu = {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda} if torch.cuda.is_available() else {}
    return {"platform": platform.platform(), "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count(),
            "cpus_usable": usable, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, **gpu}
