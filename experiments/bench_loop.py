"""The whole training run against the published PopSAN loop, timed as a user waits for it: each variant a
fresh process from start to exit, compiling included (issue 21's first target).

    taskset -c 0 python experiments/bench_loop.py --repo <checkout of combra-lab/pop-spiking-deep-rl>
    python experiments/bench_loop.py --repo <checkout> --steps 8000 --start 3000 --rounds 2 \\
        --out experiments/results/bench_loop.json

HalfCheetah-v4, `--steps` env steps: `--start` random ones, then one update per env step at batch 100
(50 every 50 steps), and one evaluation of 10 episodes at the end, on both sides. Variants, one after the
other, each in a new process with one thread, `--rounds` times in the same order:

    published   experiments/published_popsan.py: the published `spike_td3` loop unchanged (one epoch of
                `--steps`, start_steps = update_after = `--start`), on gymnasium through the old-API shim
    cold        python -m spikerl.run env=halfcheetah train.total_steps=STEPS train.start_steps=START
                train.update_after=START compile=true, over an empty compile cache (compile_cache=)
    warm        the same again, over the cache `cold` left: a second run on the same machine
    eager       compile=false
    default     compile=auto (the default), over an empty cache: what a first run gets

Ours runs with its defaults otherwise (precision fp32, CodeCarbon and W&B offline, a checkpoint at the end),
as a user runs it. Each process's wall seconds (start to exit) and CPU seconds (user + system) are recorded;
for ours also what its summary splits off: compile, probe, evaluation and the steady update rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import readme_tables

HERE = Path(__file__).resolve().parent
VARIANTS = ("published", "cold", "warm", "eager", "default")
SPLIT = ("compile_seconds", "probe_seconds", "eval_seconds", "update_seconds", "steady_updates_per_second",
         "compile", "compile_reason", "precision")


def command(variant: str, args: argparse.Namespace, work: Path, cache: Path) -> list[str]:
    if variant == "published":
        return [sys.executable, str(HERE / "published_popsan.py"), "--repo", str(args.repo), "--env", "HalfCheetah-v4",
                "--steps", str(args.steps), "--epoch-steps", str(args.steps), "--start-steps", str(args.start),
                "--update-after", str(args.start), "--threads", "1", "--out", str(work / "published.csv")]
    compile_ = {"cold": "true", "warm": "true", "eager": "false", "default": "auto"}[variant]
    return [sys.executable, "-m", "spikerl.run", "env=halfcheetah", f"train.total_steps={args.steps}",
            f"train.start_steps={args.start}", f"train.update_after={args.start}", f"compile={compile_}",
            f"compile_cache={cache}", "train.progress=false", f"hydra.run.dir={work / variant}"]


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds of one process from start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[:4])} ...: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def one_round(args: argparse.Namespace, env: dict, index: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_loop_") as tmp:
        work = Path(tmp)
        for variant in args.variants:
            # cold and warm share one cache, emptied at each round's start; default gets an empty one
            cache = work / ("cache_default" if variant == "default" else "cache")
            if variant == "cold":
                shutil.rmtree(cache, ignore_errors=True)
            wall, cpu = timed(command(variant, args, work, cache), env)
            row = {"round": index, "variant": variant, "wall_seconds": wall, "cpu_seconds": cpu}
            if variant == "published":  # its evaluation returns, as published_popsan.py writes them
                lines = (work / "published.csv").read_text().splitlines()[1:]
                row["return"] = float(lines[-1].split(",")[1]) if lines else None
            else:
                found = json.loads((work / variant / "summary.json").read_text())
                row.update({key: found.get(key) for key in SPLIT})
                row["return"] = found.get("eval_return_mean")
            rows.append(row)
            print(f"round {index} {variant}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per variant: the median wall and CPU seconds over rounds, and the published loop's time over it."""
    medians = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        medians[variant] = {"variant": variant, "rounds": len(mine),
                            "wall_seconds": statistics.median(r["wall_seconds"] for r in mine),
                            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine)}
    published = medians.get("published", {}).get("wall_seconds")
    for m in medians.values():
        m["speedup_vs_published"] = benchlib.ratio(published, m["wall_seconds"])
    return list(medians.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="a checkout of combra-lab/pop-spiking-deep-rl")
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--start", type=int, default=3000, help="random steps first; updates start after them")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_loop.json"))
    args = parser.parse_args(argv)
    if not (args.repo / "popsan_drl").is_dir():
        parser.error(f"--repo {args.repo}: not a checkout of pop-spiking-deep-rl (no popsan_drl/)")
    if not 0 < args.start < args.steps or args.rounds < 1:
        parser.error("need 0 < --start < --steps and --rounds >= 1")
    if "warm" in args.variants and "cold" not in args.variants:
        parser.error("warm runs over the cache cold leaves: give cold too")
    args.repo = args.repo.resolve()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    rows = [row for index in range(args.rounds) for row in one_round(args, env, index)]
    settings = {"env": "HalfCheetah-v4", "steps": args.steps, "start": args.start, "rounds": args.rounds,
                "variants": args.variants, "threads": 1}
    benchlib.write_report(args.out, "bench_loop.py", argv, settings, rows, summarize(rows))
    print(readme_tables.loop_table(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()
