"""The README's first command timed as a user waits for it: `python -m spikerl.run` (the default run,
InvertedPendulum-v5 for 25,000 env steps) from process start to exit, over an empty compile cache and
then again over the cache the first run left (issue 21's "default run in under 3 minutes").

    taskset -c 0 python experiments/bench_first_run.py --out experiments/results/bench_first_run.json

Each run is a fresh process with the default config (`compile=auto`, CodeCarbon and W&B offline), its
torch threads the cores it may use (pin it with taskset for one). Besides wall and CPU seconds, the row
keeps what the run's summary splits off: compiling, the precision probe, evaluations, the steady rates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import benchlib
import readme_tables
from bench_loop import SPLIT, timed

RUNS = ("empty cache", "warm cache")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (each pair over a new empty cache)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_first_run.json"))
    parser.add_argument("overrides", nargs="*", help="config overrides for both runs (default: none, as the README)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    env = {**os.environ, "WANDB_MODE": "offline"}
    rows = []
    for index in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench_first_run_") as tmp:
            for name in RUNS:
                run = Path(tmp) / name.split()[0]
                cmd = [sys.executable, "-m", "spikerl.run", *args.overrides, f"compile_cache={Path(tmp) / 'cache'}",
                       f"hydra.run.dir={run}"]
                wall, cpu = timed(cmd, env)
                summary = json.loads((run / "summary.json").read_text())
                rows.append({"round": index, "variant": name, "wall_seconds": wall, "cpu_seconds": cpu,
                             "env_steps": summary.get("total_env_steps"), "updates": summary.get("updates"),
                             "threads": summary.get("machine_threads"), "return": summary.get("eval_return_mean"),
                             **{key: summary.get(key) for key in SPLIT}})
                print(f"round {index} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
    settings = {"overrides": args.overrides, "rounds": args.rounds, "runs": list(RUNS)}
    benchlib.write_report(args.out, "bench_first_run.py", argv, settings, rows, [])
    print(readme_tables.first_run_table(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()
