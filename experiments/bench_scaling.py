"""Throughput of the real training loop by world size and precision (issue: scale).

    python experiments/bench_scaling.py [--steps 4000] [--rounds 2] [--out experiments/results/bench_scaling.json]

Runs `python -m spikerl.run device=cpu` on HalfCheetah-v4 with the paper's network sizes (PopSAN actor 256x256,
T = 5, critic 256x256) and schedule (50 updates every 50 env steps per rank) for each variant, cycling
through the variants `--rounds` times so that a slow spell of this shared machine hits them all alike,
and reports the median. Throughput is read from the run's metrics.jsonl windows after the random
warm-up (the first window and the final one, which holds the evaluation, are left out). One-core
variants (`taskset -c 0`, world size 1) are the stable reference on a noisy machine.
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

VARIANTS = [
    # name, world size, precision, batch, pinned to one core
    ("ws1-fp32-b100", 1, "fp32", 100, False),
    ("ws2-fp32-b100", 2, "fp32", 100, False),
    ("ws4-fp32-b100", 4, "fp32", 100, False),
    ("ws1-bf16-b100", 1, "bf16", 100, False),
    ("ws2-bf16-b100", 2, "bf16", 100, False),
    ("ws1-fp32-b256", 1, "fp32", 256, False),
    ("ws1-bf16-b256", 1, "bf16", 256, False),
    ("core0-ws1-fp32-b100", 1, "fp32", 100, True),
    ("core0-ws1-bf16-b100", 1, "bf16", 100, True),
    ("core0-ws1-fp32-b256", 1, "fp32", 256, True),
    ("core0-ws1-bf16-b256", 1, "bf16", 256, True),
]


def run_variant(world: int, precision: str, batch: int, pinned: bool, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "spikerl.run", "env=halfcheetah", "device=cpu", f"dist.world_size={world}",
            f"precision={precision}", f"train.batch_size={batch}", f"train.total_steps={steps}",
            f"train.start_steps={warmup}", f"train.update_after={warmup}", f"train.log_every={warmup // 2}",
            "train.eval_every=0", "train.eval_episodes=1", "train.checkpoint_every=0", "train.progress=false",
            "env.max_episode_steps=200", f"hydra.run.dir={tmp}/run",
        ]
        if pinned:
            cmd = ["taskset", "-c", "0", *cmd]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        rows = [json.loads(line) for line in open(Path(tmp) / "run" / "metrics.jsonl")]
    windows = [r for r in rows if r["step"] > warmup + warmup // 2 and "eval/return_mean" not in r]
    if not windows:
        raise SystemExit(f"bench_scaling: no metrics window after the warm-up in {steps} steps; "
                         f"use --steps of at least {3 * warmup}")
    return {
        "env_steps_per_second": statistics.median(r["time/env_steps_per_second"] for r in windows),
        "updates_per_second": statistics.median(r["time/updates_per_second"] for r in windows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="global env steps per run (default 4000)")
    parser.add_argument("--warmup", type=int, default=1000, help="random warm-up steps, not timed (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all variants (default 2)")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_scaling.json"))
    args = parser.parse_args(argv)
    variants = [v for v in VARIANTS if not args.only or v[0] in args.only]
    if any(v[4] for v in variants) and not shutil.which("taskset"):
        variants = [v for v in variants if not v[4]]
        print("taskset not found: one-core variants skipped", file=sys.stderr)
    samples: dict[str, list[dict]] = {v[0]: [] for v in variants}
    for round_ in range(args.rounds):
        for name, world, precision, batch, pinned in variants:
            t0 = time.perf_counter()
            samples[name].append(run_variant(world, precision, batch, pinned, args.steps, args.warmup))
            print(f"round {round_ + 1}/{args.rounds} {name}: {samples[name][-1]['env_steps_per_second']:.1f} "
                  f"env steps/s ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results = []
    for name, world, precision, batch, pinned in variants:
        results.append({
            "variant": name, "world_size": world, "precision": precision, "batch_size": batch,
            "one_core": pinned,
            "env_steps_per_second": statistics.median(s["env_steps_per_second"] for s in samples[name]),
            "updates_per_second": statistics.median(s["updates_per_second"] for s in samples[name]),
            "samples": samples[name],
        })
    base = {(r["one_core"], r["precision"], r["batch_size"]): r["env_steps_per_second"]
            for r in results if r["world_size"] == 1}
    print("\n| variant | ranks | precision | batch | env steps/s (global) | updates/s (per rank) | vs ws1 | vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ws1 = base.get((r["one_core"], r["precision"], r["batch_size"]))
        fp32 = next((x["env_steps_per_second"] for x in results if x["world_size"] == r["world_size"]
                     and x["one_core"] == r["one_core"] and x["batch_size"] == r["batch_size"]
                     and x["precision"] == "fp32"), None)
        r["speedup_vs_world_size_1"] = r["env_steps_per_second"] / ws1 if ws1 else None
        r["speedup_vs_fp32"] = r["env_steps_per_second"] / fp32 if fp32 else None
        print(f"| {r['variant']} | {r['world_size']} | {r['precision']} | {r['batch_size']} | "
              f"{r['env_steps_per_second']:.1f} | {r['updates_per_second']:.1f} | "
              f"{r['speedup_vs_world_size_1'] or float('nan'):.2f}x | {r['speedup_vs_fp32'] or float('nan'):.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python experiments/bench_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": benchlib.machine(),
        "task": "HalfCheetah-v4, PopSAN actor 256x256 T=5, critic 256x256, 50 updates / 50 steps per rank",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
