"""What Proxy Target's proxy costs per update: the Proxy Target presets' updates, timed side by side.

    taskset -c 0 python experiments/bench_proxy.py --threads 1 [--family popsan] [--compiled] [--rounds 5]
        [--updates 20] [--out experiments/results/bench_proxy.json]

Variants, each built from its preset as a run builds it (HalfCheetah's sizes, the preset's batch, fp32).
`--family proxytarget` (the default, batch 256): `vanilla` (experiment=proxytarget_vanilla: the LIF actor,
TD3's own target actor), `proxy` (experiment=proxytarget: three regression steps of the 512x512 proxy per
update), `proxy-k1` (its README's cheaper setting, algo.proxy.iters=1 algo.proxy.lr=3e-3) and `ann`
(experiment=proxytarget_ann). `--family popsan` (batch 100; out bench_proxy_popsan.json): `vanilla`
(experiment=popsan), `proxy` and `proxy-k1` (the same with algo.target=proxy). With --compiled,
each also compiled (`<variant>-compiled`); the seconds its first two updates take beyond two steady ones
are reported apart as its compile time. Timing windows of `--updates` updates (after 2 untimed ones)
cycle over the variants `--rounds` times (benchlib.interleave); the table gives the median per update and
each variant's time relative to `vanilla` (the proxy's cost: its share of a training step, which is one
update per env step on this schedule).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import benchlib
import torch

from spikerl.job import build_components

K1 = ["algo.proxy.iters=1", "algo.proxy.lr=3e-3"]  # the published README's cheaper setting
FAMILIES = {
    "proxytarget": {"vanilla": ["experiment=proxytarget_vanilla"], "proxy": ["experiment=proxytarget"],
                    "proxy-k1": ["experiment=proxytarget", *K1], "ann": ["experiment=proxytarget_ann"]},
    "popsan": {"vanilla": ["experiment=popsan"], "proxy": ["experiment=popsan", "algo.target=proxy"],
               "proxy-k1": ["experiment=popsan", "algo.target=proxy", *K1]},
}
OUT = {"proxytarget": "experiments/results/bench_proxy.json", "popsan": "experiments/results/bench_proxy_popsan.json"}
FULL = {"compiled": True, "rounds": 5, "updates": 20, "precisions": ["fp32"]}
QUICK = {"compiled": False, "rounds": 1, "updates": 2, "precisions": ["fp32"]}
WARMUP = 2


def learner_window(overrides: list[str], compiled: bool, batches, updates: int):
    """A timing window over a fresh learner of the preset, and its compile seconds (None eager)."""
    rc = benchlib.paper_config(*overrides, compiled=compiled)
    torch.manual_seed(0)
    actor, critic = build_components(rc, benchlib.OBS_DIM, benchlib.ACT_DIM)
    learner = benchlib.build_learner(rc, actor, critic, "fp32", compile=compiled)
    n = learner.batches_per_update
    feed = itertools.cycle(batches)

    def update():
        group = [next(feed) for _ in range(n)]
        learner.update(group[-1], group[:-1])

    start = time.perf_counter()
    update(), update()
    first = time.perf_counter() - start
    steady = benchlib.seconds_per_call(update, 4, 0)
    window = lambda: benchlib.seconds_per_call(update, updates, WARMUP)  # noqa: E731
    return window, (max(0.0, first - 2 * steady) if compiled else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, help="timed updates per window, rounded up to even (default 20)")
    parser.add_argument("--family", choices=FAMILIES, default="proxytarget",
                        help="the actor whose proxy is timed: Proxy Target's LIF actor (default) or PopSAN's")
    benchlib.add_common_options(parser, "the family's: " + ", ".join(OUT.values()), precisions=("fp32",))
    parser.set_defaults(out=None)
    args = parser.parse_args(argv)
    args.out = args.out or Path(OUT[args.family])
    benchlib.resolve_defaults(args, FULL, QUICK)
    updates = args.updates + args.updates % 2  # the same mix of critic-only and actor updates in every window
    presets = FAMILIES[args.family]
    batch = benchlib.paper_config(*presets["vanilla"]).train.batch_size  # every variant's: one preset's loop
    gen = torch.Generator().manual_seed(1)
    batches = [benchlib.random_batch(batch, gen) for _ in range(6)]
    windows, compile_seconds = {}, {}
    for name, overrides in presets.items():
        for compiled in (False, True) if args.compiled else (False,):
            key = f"{name}-compiled" if compiled else name
            windows[(batch, "fp32", key)], compile_seconds[key] = learner_window(overrides, compiled, batches, updates)
    samples = benchlib.interleave(windows, args.rounds)
    medians, results = benchlib.summarize(samples)
    for row in results:
        row["updates_per_second"] = 1.0 / row["median_seconds"]
        row["compile_seconds"] = compile_seconds[row["variant"]]
        base = "vanilla-compiled" if row["variant"].endswith("-compiled") else "vanilla"
        row["time_vs_vanilla"] = row["median_seconds"] / medians[(batch, "fp32", base)]
    rows = [[r["variant"], benchlib.fmt(r["median_seconds"] * 1e3), benchlib.fmt(r["updates_per_second"], ".1f"),
             benchlib.fmt(r["time_vs_vanilla"], ".2f", "x"), benchlib.fmt(r["compile_seconds"], ".1f", " s")]
            for r in results]
    print(benchlib.markdown(["variant", "ms/update", "updates/s", "vs vanilla", "compile"], rows))
    settings = {"family": args.family, "batch": batch, "precision": "fp32", "rounds": args.rounds,
                "updates_per_window": updates, "warmup_per_window": WARMUP, "presets": presets,
                "obs_dim": benchlib.OBS_DIM, "act_dim": benchlib.ACT_DIM}
    benchlib.write_report(args.out, "bench_proxy.py", argv, settings, results, [])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
