"""Where two data-parallel ranks lose their time: the compiled TD3 update (plus the action a rank takes
per update) at the paper's sizes, one thread per process, timed in each of two processes at once.

    python experiments/bench_ranks.py [--updates 200] [--rounds 2] [--eager] [--out PATH]

Variants (each in fresh processes, the rounds interleaved):
- `solo`: one process, the other core idle: a rank's update with the machine to itself.
- `alone`: two processes, each training alone (no collective): what the machine takes when both cores
  work (memory bandwidth, shared caches, the scheduler).
- `flat`: two ranks of one job, gradients averaged as `spikerl.run` does (GradientMean: one all-reduce
  of each optimizer's gradients after backward).
`flat` also times what its iterations spend inside GradientMean (the all-reduce, and waiting there for
the other rank). experiments/results/bench_ranks_ddp.json has a `ddp` variant too, the same with torch's
DistributedDataParallel around the trained networks, measured at commit 01dcd8a (before GradientMean
replaced it) with that commit's version of this script.
Each is run with the processes unpinned (as `spikerl.run` leaves ranks) and pinned to a core each.
`alone` against `solo` is the machine's share of the loss; `flat` against `alone`, the
synchronisation's (the collective, and each rank waiting for the other).
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

from spikerl import job
from spikerl.runtime import distributed
from spikerl.runtime.precision import Precision

VARIANTS = ("solo", "alone", "flat")


class TimedMean(distributed.GradientMean):
    """GradientMean that adds up the seconds its calls take."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        start = time.perf_counter()
        super().__call__(optimizer)
        self.seconds += time.perf_counter() - start


def _rank(rank: int, world: int, port: int, variant: str, pinned: bool, updates: int, compiled: bool,
          out: mp.SimpleQueue) -> None:
    if pinned:
        os.sched_setaffinity(0, {rank % (os.cpu_count() or 1)})
    torch.set_num_threads(1)
    distributed.init(distributed.DistInfo(rank, world, rank, world), "gloo", "127.0.0.1", port, 120)
    torch.manual_seed(rank)
    rc = benchlib.paper_config(compiled=compiled)
    actor, critic = job.build_components(rc, benchlib.OBS_DIM, benchlib.ACT_DIM)
    sync = TimedMean() if variant == "flat" else None
    learner = job.build_learner(rc, actor, critic, benchlib.OBS_DIM, benchlib.ACT_DIM, Precision("fp32"), sync=sync)
    gen = torch.Generator().manual_seed(rank)
    batches = [benchlib.random_batch(100, gen) for _ in range(8)]
    one = benchlib.random_obs(1, gen)

    def iteration(i: int) -> None:
        learner.update(batches[i % len(batches)])
        learner.explore(one)

    for i in range(20):  # compiling (or loading the compiled graphs) and oneDNN's first calls
        iteration(i)
    windows, syncing = [], []
    for _ in range(5):
        dist.barrier()  # both ranks start each window together
        synced, start = sync.seconds if sync else 0.0, time.perf_counter()
        for i in range(updates // 5):
            iteration(i)
        windows.append((time.perf_counter() - start) / (updates // 5))
        syncing.append(((sync.seconds if sync else 0.0) - synced) / (updates // 5))
    out.put((rank, statistics.median(windows), statistics.median(syncing)))
    distributed.shutdown()
    # the result is sent: skip the interpreter's teardown, where gloo's threads sometimes abort the process
    # (SIGABRT after a clean barrier and destroy, more often on a loaded machine), failing a finished run
    os._exit(0)


def measure(variant: str, pinned: bool, updates: int, compiled: bool) -> list[tuple[float, float]]:
    """Each rank's median seconds per iteration, and of it in GradientMean."""
    world = 1 if variant == "solo" else 2
    out = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_rank, args=(world, distributed.free_port(), variant, pinned, updates, compiled, out),
                       nprocs=world, start_method="spawn")
    return [(seconds, syncing) for _, seconds, syncing in sorted(out.get() for _ in range(world))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200, help="timed iterations per process and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--eager", action="store_true", help="time the eager update instead of the compiled one")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_ranks.json"))
    args = parser.parse_args(argv)
    if args.updates < 5 or args.rounds < 1:
        parser.error("need --updates of at least 5 (five timed windows) and --rounds of at least 1")
    samples: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for round_ in range(args.rounds):
        for variant in args.only:
            for pinned in (False, True):
                per_rank = measure(variant, pinned, args.updates, not args.eager)
                samples.setdefault((variant, pinned), []).append(max(per_rank))  # the job waits for the slower
                print(f"round {round_ + 1}: {variant:5s} {'pinned' if pinned else 'unpinned':8s} "
                      + " ".join(f"{s * 1e3:.2f} ({sync * 1e3:.2f} syncing)" for s, sync in per_rank)
                      + " ms per iteration", file=sys.stderr)
    results = [{"variant": v, "pinned": p, "seconds": [s for s, _ in runs],
                "median_seconds": statistics.median(s for s, _ in runs),
                "sync_seconds": [sync for _, sync in runs] if v == "flat" else None,
                "median_sync_seconds": statistics.median(sync for _, sync in runs) if v == "flat" else None}
               for (v, p), runs in samples.items()]
    benchlib.write_report(args.out, "bench_ranks.py", argv,
                          {"updates": args.updates, "rounds": args.rounds, "backend": "gloo", "threads": 1,
                           "algo": "td3", "batch": 100, "precision": "fp32", "compile": not args.eager}, results, [])


if __name__ == "__main__":
    main()
