"""Where a TD3 update's time goes, by kind of operation (torch.profiler), for our actor, the PopSAN-style
baseline and the MLP at the paper's sizes.

    taskset -c 0 python experiments/profile_update.py [--batch 100] [--updates 40] [--compiled]
        [--out experiments/results/profile_update.json]

Each variant's learner runs `--updates` updates under torch.profiler (after a few untimed ones). The
table splits the profiled time per update into matrix multiplies (self time: the floor every variant
shares), our bptt neuron nodes and the optimizer step (each with everything it calls), and the rest
(encoder, decoder, the critic's element-wise work, autograd bookkeeping, Python). Milliseconds per
update, one thread (profiles on a shared core are the stable ones); the profiler adds its own overhead.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import benchlib
import torch
from torch.profiler import ProfilerActivity, profile

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm"}
SPANS = {"optimizer step": "Optimizer.step", "bptt neuron nodes": "_LIFThroughTime"}  # totals, children included


def profile_updates(learner, batches, updates: int) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Milliseconds per update: the total, the matrix multiplies, the spans of SPANS (the optimizer step,
    our bptt neuron nodes: their time with everything they call), and the rest; plus the ten costliest
    operators by self time."""
    for batch in batches[:4]:
        learner.update(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(updates):
            learner.update(batches[i % len(batches)])
    times: dict[str, float] = defaultdict(float)
    ops = []
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1e3 / updates
        times["total"] += ms
        times["matmul"] += ms if event.key in MATMUL else 0.0
        for span, marker in SPANS.items():
            if event.key.startswith(marker):  # forward and backward nodes, not the engine's wrappers
                times[span] += event.cpu_time_total / 1e3 / updates
        ops.append((event.key, ms))
    times["rest"] = times["total"] - times["matmul"] - sum(times[span] for span in SPANS)
    return dict(times), sorted(ops, key=lambda op: -op[1])[:10]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--compiled", action="store_true", help="also profile ours with compile=true")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/profile_update.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    networks, critic = benchlib.paper_networks(compiled=args.compiled)
    rc, gen = benchlib.paper_config(), torch.Generator().manual_seed(1)
    batches = [benchlib.random_batch(args.batch, gen) for _ in range(4)]
    results, rows = {}, []
    for variant, actor in networks.items():
        learner = benchlib.build_learner(rc, actor, critic, "fp32", compile=variant == "compiled")
        groups, top = profile_updates(learner, batches, args.updates)
        results[variant] = {"ms_per_update": groups, "top_operators_ms": top}
        rows.append([variant, *(benchlib.fmt(groups.get(g, 0.0), ".2f") for g in
                                ("total", "matmul", "bptt neuron nodes", "optimizer step", "rest"))])
    print(benchlib.markdown(["variant", "profiled ms/update", "matmul", "bptt neuron nodes", "optimizer step",
                             "rest (encoder, decoder, critic element-wise, autograd, Python)"], rows))
    settings = {"batch": args.batch, "updates": args.updates, "threads": 1, **benchlib.PAPER_SIZES}
    benchlib.write_report(args.out, "profile_update.py", argv, settings, [results], [])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
