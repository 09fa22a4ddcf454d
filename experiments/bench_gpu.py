"""TD3 updates per second on a CUDA GPU at the paper's sizes: eager, the whole update compiled, and
compiled with CUDA graphs (`compile_mode=reduce-overhead`), in fp32 and bf16.

    python experiments/bench_gpu.py [--batches 100 256 1024] [--precisions fp32 bf16] [--rounds 5]
        [--updates 50] [--out experiments/results/bench_gpu.json]

Variants, each its own TD3 on the same initial weights, updating on fixed random batches of HalfCheetah's
sizes: `ours` (PopSpikingActor as conf/actor/popsan.yaml builds it, eager), `compiled` (compile=true),
`cudagraphs` (compile=true compile_mode=reduce-overhead), the PopSAN-style `baseline`
(experiments/popsan_baseline.py, eager) and the `mlp` actor. Windows of `--updates` updates, timed
between CUDA synchronisations after 2 untimed updates, cycle over the variants `--rounds` times; the
report gives the median per variant and each one's speedup over eager ours and over the baseline. Also
times batch-1 acting (`act`), as a training run's collector calls it. Needs a CUDA GPU (exit 2 without).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import benchlib
import torch

VARIANTS = ("ours", "compiled", "cudagraphs", "baseline", "mlp")


def gpu_seconds(fn, calls: int, warmup: int = 2) -> float:
    """Mean seconds of one `fn()` on the GPU, the window bracketed by synchronisations."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[100, 256, 1024])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_gpu.json"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA GPU", file=sys.stderr)
        return 2
    updates = args.updates + args.updates % 2
    device = "cuda"
    networks, critic = benchlib.paper_networks(compiled=True)
    actors = {"ours": networks["ours"], "compiled": networks["compiled"], "cudagraphs": networks["compiled"],
              "baseline": networks["baseline"], "mlp": networks["mlp"]}
    options = {"compiled": {"compile": True}, "cudagraphs": {"compile": True, "compile_mode": "reduce-overhead"}}
    rc, gen = benchlib.paper_config(), torch.Generator().manual_seed(1)
    windows, learners = {}, {}
    for batch in args.batches:
        batches = [benchlib.random_batch(batch, gen) for _ in range(4)]
        batches = [type(b)(**{k: v.to(device) for k, v in vars(b).items()}) for b in batches]
        for precision in args.precisions:
            for variant, actor in actors.items():
                learner = benchlib.build_learner(rc, actor, critic, precision, device=device,
                                                 **options.get(variant, {}))
                learners[(batch, precision, variant)] = learner
                feed = itertools.cycle(batches)
                windows[(batch, precision, variant)] = (
                    lambda learner=learner, feed=feed: gpu_seconds(lambda: learner.update(next(feed)), updates))
    obs = torch.randn(1, benchlib.OBS_DIM, device=device)
    for variant in ("ours", "compiled"):
        learner = learners[(args.batches[0], "fp32", variant)]
        windows[(1, "fp32", f"act {variant}")] = lambda learner=learner: gpu_seconds(lambda: learner.act(obs), 200)
    samples = benchlib.interleave(windows, args.rounds, show=lambda s: f"{s * 1e3:.3g} ms")
    medians, results = benchlib.summarize(samples)
    for row in results:
        row["per_second"] = 1.0 / row["median_seconds"]
        learner = learners.get((row["batch_size"], row["precision"], row["variant"]))
        row["fell_back_to_eager"] = bool(learner and getattr(learner.critic_objective, "failed", None))
    compared, rows = [], []
    for batch, precision in itertools.product(args.batches, args.precisions):
        ms = {v: medians[(batch, precision, v)] for v in VARIANTS}
        row = {"batch_size": batch, "precision": precision,
               **{f"{v}_updates_per_second": 1 / ms[v] for v in VARIANTS},
               **{f"{v}_speedup_vs_eager": ms["ours"] / ms[v] for v in VARIANTS[1:]},
               **{f"{v}_speedup_vs_baseline": ms["baseline"] / ms[v] for v in VARIANTS if v != "baseline"}}
        compared.append(row)
        rows.append([batch, precision, *(benchlib.fmt(1 / ms[v], ".0f") for v in VARIANTS),
                     *(benchlib.fmt(row[f"{v}_speedup_vs_baseline"], ".2f", "x") for v in ("ours", "compiled",
                                                                                           "cudagraphs"))])
    print(benchlib.markdown(["batch", "precision", *(f"{v} updates/s" for v in VARIANTS),
                             "ours vs baseline", "compiled vs baseline", "cudagraphs vs baseline"], rows))
    for variant in ("ours", "compiled"):
        print(f"batch-1 act, {variant}: {medians[(1, 'fp32', f'act {variant}')] * 1e6:.0f} us")
    settings = {"batches": args.batches, "precisions": args.precisions, "rounds": args.rounds,
                "updates_per_window": updates, "gpu": torch.cuda.get_device_name(0),
                "cuda": torch.version.cuda, **benchlib.PAPER_SIZES}
    benchlib.write_report(args.out, "bench_gpu.py", argv, settings, results, compared)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
