"""Env steps per second of the real training loop, with our spiking actor or the PopSAN-style baseline.

    python experiments/bench_train.py [--steps 3000] [--warmup 1000] [--rounds 2] [--precisions fp32 bf16 auto]
        [--mlp] [--threads N] [--out experiments/results/bench_train.json]

One-thread figures: `taskset -c 0 python experiments/bench_train.py --threads 1 --out
experiments/results/bench_train_1thread.json`.

Each run is the project's training loop, built by `spikerl.job.build_loop` in this process on the
paper's HalfCheetah-v4 setting (conf/env/halfcheetah.yaml and conf/algo/td3.yaml: batch 100,
`update_every` env steps then as many `gradient_steps` updates; actor conf/actor/popsan.yaml, critic
256x256), stepped through `--warmup` uniform random steps (start_steps = update_after) and then
`--steps` timed steps. The baseline run passes `baseline_from(actor)` (same weights) as the loop's
actor; `--mlp` adds conf/actor/mlp.yaml. Acting and updating are timed by the loop's own counters
(`Collector.act_seconds`, `UpdateSchedule.seconds`); the run never reaches its final step, so no
evaluation or checkpoint is part of the timed steps. Logger and energy
measurement are off; run folders go to a temporary directory. Runs alternate over the variants
`--rounds` times; the report gives the median env steps/s over the timed steps and the fractions of
that time spent acting and updating (the rest: env stepping, replay, normaliser). With `auto` among the
precisions, each run's start-up probe decides (as `precision=auto` does), and the report gives what it
chose and its env steps/s against fp32's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import benchlib
import popsan_baseline

from spikerl.job import build_components, build_loop, seed_everything

FULL = {"compiled": True, "precisions": ["fp32", "bf16"], "rounds": 2, "steps": 3000, "warmup": 1000}
QUICK = {"compiled": False, "precisions": ["fp32"], "rounds": 1, "steps": 100, "warmup": 100}
SWAPS = {"ours": lambda actor: actor, "compiled": lambda actor: actor, "baseline": popsan_baseline.baseline_from,
         "mlp": lambda actor: actor}
OVERRIDES = {"mlp": ["actor=mlp"]}


def timed_run(rc, variant: str) -> dict:
    """One training run of `variant` through the project's loop: the random phase untimed, then
    `steps` timed env steps."""
    seed_everything(rc.seed)  # as build_loop does: every variant starts from the same weights
    actor, _ = build_components(rc, benchlib.OBS_DIM, benchlib.ACT_DIM)
    with tempfile.TemporaryDirectory() as tmp:
        loop = build_loop(rc, Path(tmp), variant, actor=SWAPS[variant](actor))
        state, collector, updates = loop.state, loop.collector, loop.updates
        try:
            while state.env_steps < rc.train.start_steps:
                loop.iteration()
            first_step, act0, update0 = state.env_steps, collector.act_seconds, updates.seconds
            start = time.perf_counter()
            while state.env_steps < state.total_steps - 1:
                loop.iteration()
            wall = time.perf_counter() - start
        finally:
            collector.close()
    return {"env_steps_per_second": (state.env_steps - first_step) / wall,
            "precision_effective": updates.learner.precision.mode,
            "act_fraction": (collector.act_seconds - act0) / wall,
            "update_fraction": (updates.seconds - update0) / wall,
            "timed_seconds": wall, "updates": updates.learner.updates}


def run_config(precision: str, variant: str, steps: int, warmup: int):
    return benchlib.paper_config(
        f"precision={precision}", *OVERRIDES.get(variant, []),
        f"train.total_steps={warmup + steps + 1}", f"train.start_steps={warmup}", f"train.update_after={warmup}",
        "train.eval_every=0", "train.eval_episodes=1", "train.checkpoint_every=0", "train.keep_best=false",
        "train.progress=false", compiled=variant == "compiled",
    )


def summarize(samples: dict, batch: int) -> tuple[list[dict], dict]:
    """The report's rows (medians over rounds) and median seconds per env step keyed as
    `benchlib.comparisons` wants them."""
    results, seconds = [], {}
    for (precision, variant), runs in samples.items():
        row = {"batch_size": batch, "precision": precision, "variant": variant}
        for key in ("env_steps_per_second", "act_fraction", "update_fraction"):
            row[key] = statistics.median(run[key] for run in runs)
        results.append({**row, "samples": runs})
        seconds[(batch, precision, variant)] = 1.0 / row["env_steps_per_second"]
    return results, seconds


def table(results: list[dict], compared: list[dict]) -> str:
    by_precision = {c["precision"]: c for c in compared}
    rows = [[r["precision"], r["variant"], f"{r['env_steps_per_second']:.1f}", f"{r['act_fraction']:.0%}",
             f"{r['update_fraction']:.0%}", f"{1 - r['act_fraction'] - r['update_fraction']:.0%}",
             *(benchlib.comparison_cells(by_precision[r["precision"]]) if r["variant"] == "ours"
               else [""] * len(benchlib.COMPARISON_HEADER))]
            for r in results]
    header = ["precision", "actor", "env steps/s", "acting", "updates", "other"]
    return benchlib.markdown(header + benchlib.COMPARISON_HEADER, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed env steps per run (default 3000)")
    parser.add_argument("--warmup", type=int, help="uniform random env steps before them, untimed (default 1000)")
    parser.add_argument("--mlp", action="store_true", help="also run the MLP actor")
    benchlib.add_common_options(parser, "experiments/results/bench_train.json", precisions=("fp32", "bf16", "auto"))
    args = parser.parse_args(argv)
    benchlib.resolve_defaults(args, FULL, QUICK)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # gymnasium: "HalfCheetah-v4 is out of date"

    variants = ["ours", *(["compiled"] if args.compiled else []), "baseline", *(["mlp"] if args.mlp else [])]
    configs = {(p, v): run_config(p, v, args.steps, args.warmup) for p in args.precisions for v in variants}
    train = configs[(args.precisions[0], "ours")].train
    if args.steps % train.update_every:
        parser.error(f"--steps must be a multiple of train.update_every ({train.update_every}): every timed step "
                     "then has its share of update rounds")
    if args.compiled:
        benchlib.warm_compiled()
    runs = {key: (lambda rc=rc, variant=key[1]: timed_run(rc, variant)) for key, rc in configs.items()}
    samples = benchlib.interleave(runs, args.rounds, discard_first=False,
                                  show=lambda t: f"{t['env_steps_per_second']:.1f} env steps/s, acting "
                                                 f"{t['act_fraction']:.0%}, updates {t['update_fraction']:.0%}")

    results, seconds = summarize(samples, train.batch_size)
    compared = benchlib.comparisons(seconds)
    print(table(results, compared))
    for row in compared:  # precision=auto: what it chose, and its speed against fp32 (never slower, its promise)
        if row["precision"] == "auto":
            chosen = {r["variant"]: sorted({s["precision_effective"] for s in r["samples"]}) for r in results
                      if r["precision"] == "auto"}
            row["auto_chose"] = chosen
            for variant in variants:
                row[f"{variant}_auto_vs_fp32"] = benchlib.ratio(seconds.get((train.batch_size, "fp32", variant)),
                                                                 seconds.get((train.batch_size, "auto", variant)))
            print(f"precision=auto chose {chosen}; env steps/s against fp32: " + ", ".join(
                f"{v} {benchlib.fmt(row[f'{v}_auto_vs_fp32'], '.2f', 'x')}" for v in variants))
    settings = {"precisions": args.precisions, "variants": variants, "rounds": args.rounds, "steps": args.steps,
                "warmup": args.warmup, "env": "HalfCheetah-v4", "batch_size": train.batch_size,
                "update_every": train.update_every, "gradient_steps": train.gradient_steps, **benchlib.PAPER_SIZES}
    benchlib.write_report(args.out, "bench_train.py", argv, settings, results, compared)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
