"""Throughput of the real training loop by world size and precision (issue: scale).

    python experiments/bench_scaling.py [--steps 4000] [--rounds 2] [--out experiments/results/bench_scaling.json]

Runs `python -m spikerl.run device=cpu` on HalfCheetah-v4 with the paper's network sizes (PopSAN actor 256x256,
T = 5, critic 256x256) and schedule (50 updates every 50 env steps per rank) for each variant, cycling
through the variants `--rounds` times so that a slow spell of this shared machine hits them all alike,
and reports the median. Throughput is read from the run's metrics.jsonl windows after the random
warm-up (the first window and the final one, which holds the evaluation, are left out). One-core
variants (`taskset -c 0`, world size 1) are the stable reference on a noisy machine. The `pair` variant
runs two separate one-rank jobs at once, one per core: what the cores give when nothing is shared but
the machine, the ceiling that two ranks of one job could reach. `-eager` variants run `compile=false`
(against the compiled update: what compiling gives a rank of a distributed job).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

from spikerl.telemetry.provenance import code_version

# name, world size, precision, batch, layout, compile. Layouts: `free` (the ranks go where the OS puts them),
# `core0` (pinned to core 0), `pair` (two separate one-rank runs side by side, one on each of cores 0 and 1:
# what the machine's two cores give two jobs that never talk; their env steps/s add up).
VARIANTS = [
    ("ws1-fp32-b100", 1, "fp32", 100, "free", True),
    ("ws2-fp32-b100", 2, "fp32", 100, "free", True),
    ("ws4-fp32-b100", 4, "fp32", 100, "free", True),
    ("ws1-bf16-b100", 1, "bf16", 100, "free", True),
    ("ws2-bf16-b100", 2, "bf16", 100, "free", True),
    ("ws1-fp32-b256", 1, "fp32", 256, "free", True),
    ("ws1-bf16-b256", 1, "bf16", 256, "free", True),
    ("core0-ws1-fp32-b100", 1, "fp32", 100, "core0", True),
    ("core0-ws1-bf16-b100", 1, "bf16", 100, "core0", True),
    ("core0-ws1-fp32-b256", 1, "fp32", 256, "core0", True),
    ("core0-ws1-bf16-b256", 1, "bf16", 256, "core0", True),
    ("pair-ws1-fp32-b100", 1, "fp32", 100, "pair", True),
    ("ws1-fp32-b100-eager", 1, "fp32", 100, "free", False),
    ("ws2-fp32-b100-eager", 2, "fp32", 100, "free", False),
]


def command(world: int, precision: str, batch: int, compile: bool, steps: int, warmup: int, run_dir: str) -> list[str]:
    return [
        sys.executable, "-m", "spikerl.run", "env=halfcheetah", "device=cpu", f"dist.world_size={world}",
        f"precision={precision}", f"train.batch_size={batch}", f"train.total_steps={steps}",
        f"train.start_steps={warmup}", f"train.update_after={warmup}", f"train.log_every={warmup // 2}",
        "train.eval_every=0", "train.eval_episodes=1", "train.checkpoint_every=0", "train.progress=false",
        "env.max_episode_steps=200", f"compile={str(compile).lower()}", "energy=none", "logger=jsonl",
        f"hydra.run.dir={run_dir}",
    ]


def rates(metrics: Path, steps: int, warmup: int) -> dict:
    """Median global env steps/s and updates/s of the metrics windows after the warm-up (the first
    window and the final one, which holds the evaluation, left out)."""
    rows = [json.loads(line) for line in open(metrics)]
    windows = [r for r in rows if r["step"] > warmup + warmup // 2 and "eval/return_mean" not in r]
    if not windows:
        raise SystemExit(f"bench_scaling: no metrics window after the warm-up in {steps} steps; "
                         f"use --steps of at least {3 * warmup}")
    return {
        "env_steps_per_second": statistics.median(r["time/env_steps_per_second"] for r in windows),
        "updates_per_second": statistics.median(r["time/updates_per_second"] for r in windows),
    }


def run_variant(world: int, precision: str, batch: int, layout: str, compile: bool, steps: int, warmup: int) -> dict:
    cores = {"free": [None], "core0": ["0"], "pair": ["0", "1"]}[layout]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, core in enumerate(cores):
            cmd = command(world, precision, batch, compile, steps, warmup, f"{tmp}/run{i}")
            cmd = ["taskset", "-c", core, *cmd] if core else cmd
            procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                env=env)))
        for cmd, proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
        each = [rates(Path(tmp) / f"run{i}" / "metrics.jsonl", steps, warmup) for i in range(len(cores))]
    # side by side, the jobs' throughputs add up; a job's updates/s stays per job
    return {"env_steps_per_second": sum(r["env_steps_per_second"] for r in each),
            "updates_per_second": statistics.mean(r["updates_per_second"] for r in each), "jobs": each}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="global env steps per run (default 4000)")
    parser.add_argument("--warmup", type=int, default=1000, help="random warm-up steps, not timed (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all variants (default 2)")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_scaling.json"))
    args = parser.parse_args(argv)
    variants = [v for v in VARIANTS if not args.only or v[0] in args.only]
    if any(v[4] != "free" for v in variants) and not shutil.which("taskset"):
        variants = [v for v in variants if v[4] == "free"]
        print("taskset not found: pinned variants skipped", file=sys.stderr)
    samples: dict[str, list[dict]] = {v[0]: [] for v in variants}
    for round_ in range(args.rounds):
        for name, world, precision, batch, layout, compile in variants:
            t0 = time.perf_counter()
            samples[name].append(run_variant(world, precision, batch, layout, compile, args.steps, args.warmup))
            print(f"round {round_ + 1}/{args.rounds} {name}: {samples[name][-1]['env_steps_per_second']:.1f} "
                  f"env steps/s ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results = []
    for name, world, precision, batch, layout, compile in variants:
        results.append({
            "variant": name, "world_size": world, "precision": precision, "batch_size": batch,
            "one_core": layout == "core0", "layout": layout, "compile": compile,
            "env_steps_per_second": statistics.median(s["env_steps_per_second"] for s in samples[name]),
            "updates_per_second": statistics.median(s["updates_per_second"] for s in samples[name]),
            "samples": samples[name],
        })
    # the reference for a variant: one rank, same layout (a pair: one rank, free), precision, batch and compile
    base = {(r["layout"], r["precision"], r["batch_size"], r["compile"]): r["env_steps_per_second"]
            for r in results if r["world_size"] == 1 and r["layout"] != "pair"}
    print("\n| variant | ranks | precision | batch | env steps/s (global) | updates/s (per rank) | vs ws1 | vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        layout = "free" if r["layout"] == "pair" else r["layout"]
        ws1 = base.get((layout, r["precision"], r["batch_size"], r["compile"]))
        fp32 = next((x["env_steps_per_second"] for x in results if x["world_size"] == r["world_size"]
                     and x["layout"] == r["layout"] and x["batch_size"] == r["batch_size"]
                     and x["compile"] == r["compile"] and x["precision"] == "fp32"), None)
        r["speedup_vs_world_size_1"] = r["env_steps_per_second"] / ws1 if ws1 else None
        r["speedup_vs_fp32"] = r["env_steps_per_second"] / fp32 if fp32 else None
        print(f"| {r['variant']} | {r['world_size']} | {r['precision']} | {r['batch_size']} | "
              f"{r['env_steps_per_second']:.1f} | {r['updates_per_second']:.1f} | "
              f"{r['speedup_vs_world_size_1'] or float('nan'):.2f}x | {r['speedup_vs_fp32'] or float('nan'):.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python experiments/bench_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "code": code_version(), "machine": benchlib.machine(),
        "task": "HalfCheetah-v4, PopSAN actor 256x256 T=5, critic 256x256, 50 updates / 50 steps per rank",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
