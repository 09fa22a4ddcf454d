"""The machine a figure was taken on: CPU model, torch's CPU capability, threads (AVX2-only CPUs emulate
bf16; threads set the pace). Benchmarks, summaries (spikerl/telemetry/provenance.py) and the compile
plan's timing memory (compile_plan.py, keyed by machine) record it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Environment variables that hold torch's kernels (and oneDNN's matrix multiplies) below what the CPU has:
# a figure taken under them is not the CPU's own, so it says so
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def host() -> dict:
    """The machine's facts the figures depend on (AVX2-only CPUs emulate bf16; threads set the pace)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    gpu = {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda} if torch.cuda.is_available() else {}
    limits = " ".join(f"{name}={os.environ[name]}" for name in ISA_LIMITS if os.environ.get(name))
    return {"platform": platform.platform(), "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count(),
            "cpus_usable": usable, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, **gpu, **({"isa_limits": limits} if limits else {})}
