"""TD3 gradient updates per second at the paper's sizes: our spiking actor, the PopSAN-style baseline, an MLP.

    python experiments/bench_update.py [--batches 100 256 1024] [--precisions fp32 bf16] [--rounds 5]
        [--updates 20] [--threads N] [--out experiments/results/bench_update.json]

One-thread figures come from
`taskset -c 0 python experiments/bench_update.py --threads 1 --out experiments/results/bench_update_1thread.json`.

Variants: (a) `ours`, PopSpikingActor as conf/actor/popsan.yaml builds it (bptt neurons), and `compiled`,
the same with `compile=true`: the whole update compiled, as a run does (unless --no-compiled); (b) `baseline`,
experiments/popsan_baseline.py with the same weights; (c) `mlp`, conf/actor/mlp.yaml (256x256). Each gets
its own TD3 (conf/algo/td3.yaml, two 256x256 Q-networks with the same initial weights for all), built as a
training run builds it, and updates on fixed random batches of HalfCheetah's sizes (obs 17, act 6).
Before any timing, (a) and (b) must give the same actions and actor-loss gradients in fp32 at every
batch size, or the script stops with exit code 1. Timing windows of `--updates` updates (after 2
untimed ones) cycle over all variants `--rounds` times; the report gives the median time per update,
updates/s, ours' speedup over the baseline, ours' time relative to the MLP and ours' bf16 throughput
relative to fp32. The `floor` row times the same update's matrix multiplies alone (recorded from
ours: same shapes, strides, dtypes and order, same threads): no implementation of these networks can
update faster, and ours / floor says how much time goes to everything else (neurons, element-wise
work, the optimizer, Python).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import benchlib
import torch

from spikerl.rl.learners import Learner
from spikerl.rl.replay import Batch

FULL = {"compiled": True, "batches": [100, 256, 1024], "precisions": ["fp32", "bf16"], "rounds": 5, "updates": 20}
QUICK = {"compiled": False, "batches": [100], "rounds": 2, "updates": 2}
WARMUP = 2  # untimed updates per window; even, like the timed ones
BATCHES_PER_SIZE = 4


def update_window(learner: Learner, batches: list[Batch], updates: int) -> Callable[[], float]:
    """A timing window: seconds per TD3 update over `updates` updates on `batches` in turn."""
    feed = itertools.cycle(batches)
    return lambda: benchlib.seconds_per_call(lambda: learner.update(next(feed)), updates, WARMUP)


TABLE_HEADER = ["ours ms/update", "ours updates/s", "compiled updates/s", "baseline updates/s", "MLP updates/s"]


def table_cells(batch: int, seconds: dict) -> list[str]:
    """Ours' milliseconds per update, then every variant's updates/s."""
    return [benchlib.fmt(seconds["ours"] * 1e3),
            *(benchlib.fmt(1 / seconds[v] if seconds[v] else None, ".1f") for v in benchlib.VARIANTS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, help="batch sizes (default 100 256 1024)")
    parser.add_argument("--updates", type=int, help="timed updates per window, rounded up to even (default 20)")
    benchlib.add_common_options(parser, "experiments/results/bench_update.json")
    args = parser.parse_args(argv)
    benchlib.resolve_defaults(args, FULL, QUICK)
    updates = args.updates + args.updates % 2  # the same mix of critic-only and actor updates in every window

    networks, critic = benchlib.paper_networks(compiled=args.compiled)
    benchlib.check_equivalence(networks, critic, args.batches)
    rc, gen = benchlib.paper_config(), torch.Generator().manual_seed(1)
    windows = {}
    for batch in args.batches:
        batches = [benchlib.random_batch(batch, gen) for _ in range(BATCHES_PER_SIZE)]
        for precision in args.precisions:
            for variant, actor in networks.items():
                learner = benchlib.build_learner(rc, actor, critic, precision, compile=variant == "compiled")
                windows[(batch, precision, variant)] = update_window(learner, batches, updates)
                if variant == "ours":  # the floor: the same update's matrix multiplies alone
                    replay = benchlib.matmul_floor(learner, batches)
                    windows[(batch, precision, "floor")] = lambda replay=replay: benchlib.seconds_per_call(
                        replay, updates // 2, 1) / 2
    samples = benchlib.interleave(windows, args.rounds)

    medians, results = benchlib.summarize(samples)
    for row in results:
        row["updates_per_second"] = 1.0 / row["median_seconds"]
    compared = benchlib.comparisons(medians)
    print(benchlib.comparison_table(medians, compared, TABLE_HEADER, table_cells))
    floor_rows = [[c["batch_size"], c["precision"],
                   benchlib.fmt(medians[(c["batch_size"], c["precision"], "floor")] * 1e3),
                   benchlib.fmt(c["time_vs_floor"], ".2f", "x"), benchlib.fmt(c["compiled_time_vs_floor"], ".2f", "x")]
                  for c in compared]
    print(benchlib.markdown(["batch", "precision", "floor ms/update", "ours / floor", "compiled / floor"], floor_rows))
    settings = {"batches": args.batches, "precisions": args.precisions, "rounds": args.rounds,
                "updates_per_window": updates, "warmup_per_window": WARMUP, **benchlib.PAPER_SIZES}
    benchlib.write_report(args.out, "bench_update.py", argv, settings, results, compared)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
