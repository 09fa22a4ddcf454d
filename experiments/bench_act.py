"""Acting speed at the paper's sizes: latency of one action and throughput for a vector of envs.

    python experiments/bench_act.py [--batches 1 8 64] [--precisions fp32 bf16] [--rounds 5] [--calls 200]
        [--threads N] [--out experiments/results/bench_act.json]

One-thread figures: `taskset -c 0 python experiments/bench_act.py --threads 1 --out
experiments/results/bench_act_1thread.json`.

The timed call is the training loop's acting path: `spikerl.rl.evaluation.greedy_policy` (observation
normaliser, then `TD3.act`: inference mode, the precision's autocast) on a raw NumPy observation batch,
as `Collector.explore` calls it, without the exploration noise (the same for every actor). Batch 1 is the
latency of one env; larger batches are a vector of envs. Variants, learners and the equivalence check
(same actions and actor-loss gradients in fp32 at every batch size, or exit 1) are bench_update.py's;
timing windows of `--calls` calls (after 5 untimed) cycle over all variants `--rounds` times and the
report gives the median time per call, actions/s and the same ratios.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import benchlib
import numpy as np
import torch

from spikerl.rl.evaluation import greedy_policy
from spikerl.rl.normalizer import ObsNormalizer

FULL = {"compiled": True, "batches": [1, 8, 64], "precisions": ["fp32", "bf16"], "rounds": 5, "calls": 200}
QUICK = {"compiled": False, "batches": [1, 8], "rounds": 2, "calls": 5}
WARMUP = 5  # untimed calls per window


def fitted_normalizer(rc, rng: np.random.Generator) -> ObsNormalizer:
    """The run's observation normaliser with statistics from a few thousand raw observations."""
    normalizer = ObsNormalizer(benchlib.OBS_DIM, rc.normalizer.kind, rc.normalizer.clip)
    normalizer.update(rng.normal(0.5, 2.0, (5000, benchlib.OBS_DIM)))
    normalizer.sync()
    return normalizer


def act_window(policy: Callable, raw_obs: np.ndarray, calls: int) -> Callable[[], float]:
    """A timing window: seconds per action batch, from NumPy observations to NumPy actions."""
    return lambda: benchlib.seconds_per_call(
        lambda: policy(torch.as_tensor(raw_obs, dtype=torch.float32)).cpu().numpy(), calls, WARMUP)


TABLE_HEADER = ["ours ms", "compiled ms", "baseline ms", "MLP ms", "ours actions/s"]


def table_cells(batch: int, seconds: dict) -> list[str]:
    """Every variant's milliseconds per call, then ours' actions/s."""
    milliseconds = [benchlib.fmt(seconds[v] * 1e3 if seconds[v] else None) for v in benchlib.VARIANTS]
    return [*milliseconds, benchlib.fmt(batch / seconds["ours"], ".0f")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, help="observations per call (default 1 8 64)")
    parser.add_argument("--calls", type=int, help="timed calls per window (default 200)")
    benchlib.add_common_options(parser, "experiments/results/bench_act.json")
    args = parser.parse_args(argv)
    benchlib.resolve_defaults(args, FULL, QUICK)

    networks, critic = benchlib.paper_networks(compiled=args.compiled)
    benchlib.check_equivalence(networks, critic, args.batches)
    rc, rng = benchlib.paper_config(), np.random.default_rng(1)
    normalizer = fitted_normalizer(rc, rng)
    observations = {batch: rng.normal(0.5, 2.0, (batch, benchlib.OBS_DIM)) for batch in args.batches}
    policies = {(precision, variant): greedy_policy(benchlib.build_learner(rc, actor, critic, precision,
                                                                           compile=variant == "compiled"), normalizer)
                for precision in args.precisions for variant, actor in networks.items()}
    windows = {(batch, *key): act_window(policy, raw_obs, args.calls)
               for batch, raw_obs in observations.items() for key, policy in policies.items()}
    samples = benchlib.interleave(windows, args.rounds, show=lambda s: f"{s * 1e3:.3g} ms/call")

    medians, results = benchlib.summarize(samples)
    for row in results:
        row["actions_per_second"] = row["batch_size"] / row["median_seconds"]
    compared = benchlib.comparisons(medians)
    print(benchlib.comparison_table(medians, compared, TABLE_HEADER, table_cells))
    settings = {"batches": args.batches, "precisions": args.precisions, "rounds": args.rounds,
                "calls_per_window": args.calls, "warmup_per_window": WARMUP, **benchlib.PAPER_SIZES}
    benchlib.write_report(args.out, "bench_act.py", argv, settings, results, compared)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
