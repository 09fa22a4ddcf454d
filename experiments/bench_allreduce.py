"""What one gradient all-reduce costs between two ranks on this machine (gloo over loopback), at the sizes
of a TD3 update's gradients: the critic's (two Q-networks) and the actor's, by whether each rank is
pinned to a core of its own.

    python experiments/bench_allreduce.py [--calls 200] [--out experiments/results/bench_allreduce.json]

A data-parallel TD3 update all-reduces the critic's gradients every iteration and the actor's every
`policy_delay` (2); set beside a rank's update time, this says how much of two ranks' loss is the
collective itself (docs/benchmarks.md, "Two ranks on two cores").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import benchlib
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spikerl.runtime import distributed


def sizes() -> dict[str, int]:
    """Gradient elements of the paper's critic and PopSAN actor at HalfCheetah's sizes, as built for a run."""
    actor, critic = benchlib.build_components(benchlib.paper_config(), benchlib.OBS_DIM, benchlib.ACT_DIM)
    count = lambda module: sum(p.numel() for p in module.parameters() if p.requires_grad)  # noqa: E731
    return {"critic": count(critic), "actor": count(actor)}


def _rank(rank: int, port: int, elements: int, pinned: bool, calls: int, out: mp.SimpleQueue) -> None:
    if pinned:
        os.sched_setaffinity(0, {rank % (os.cpu_count() or 1)})
    torch.set_num_threads(1)
    distributed.init(distributed.DistInfo(rank, 2, rank, 2), "gloo", "127.0.0.1", port, 60)
    grads = torch.randn(elements)
    for _ in range(20):
        dist.all_reduce(grads)
    seconds = []
    for _ in range(calls):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(grads)
        seconds.append(time.perf_counter() - start)
    if rank == 0:
        out.put(statistics.median(seconds))
    distributed.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_allreduce.json"))
    args = parser.parse_args(argv)
    results = []
    ctx = mp.get_context("spawn")
    for name, elements in sizes().items():
        for pinned in (False, True):
            out = ctx.SimpleQueue()
            mp.start_processes(_rank, args=(distributed.free_port(), elements, pinned, args.calls, out), nprocs=2,
                               start_method="spawn")
            median = out.get()
            results.append({"gradients": name, "elements": elements, "pinned": pinned, "median_seconds": median})
            print(f"{name} ({elements:,} floats), {'pinned' if pinned else 'unpinned'}: {median * 1e3:.2f} ms",
                  file=sys.stderr)
    benchlib.write_report(args.out, "bench_allreduce.py", argv, {"calls": args.calls, "backend": "gloo", "ranks": 2},
                          results, [])


if __name__ == "__main__":
    main()
