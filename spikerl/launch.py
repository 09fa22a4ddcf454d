"""Launching a job's ranks: in this process, as one rank of a torchrun/SLURM job, or by spawning
`dist.world_size / dist.nnodes` ranks with torch.multiprocessing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from .config import RunConfig
from .job import train_run
from .rl.envs import silence_notices
from .runtime import distributed
from .runtime.device import device_type
from .runtime.distributed import DistInfo
from .runtime.signals import Preempted, forward_signals


def _checkpoint_step(run_dir: Path) -> int:
    from .runtime import checkpoint

    try:
        return checkpoint.load(run_dir)["counters"]["env_steps"]
    except checkpoint.CheckpointError:
        return -1


def _rank_main(local_rank: int, rc: RunConfig, run_dir: Path, actor_name: str, backend: str, port: int) -> None:
    """One spawned rank of a job launched from this command. A preempted rank exits with 128 + the
    signal number, which the launching process passes on."""
    nprocs = rc.dist.world_size // rc.dist.nnodes
    info = DistInfo(rc.dist.node_rank * nprocs + local_rank, rc.dist.world_size, local_rank, nprocs)
    try:
        run_rank(rc, run_dir, actor_name, info, backend, rc.dist.master_addr, port)
    except Preempted as stop:
        sys.exit(128 + stop.signum)


def run_rank(rc: RunConfig, run_dir: Path, actor_name: str, info: DistInfo, backend: str, addr: str,
             port: int) -> dict | None:
    """Join the group, train, leave cleanly. A failing rank leaves without the final barrier, so the
    others fail in their next collective (within dist.timeout_s) instead of waiting forever."""
    import torch.distributed as dist

    if info.rank != 0:
        silence_notices()  # rank 0 shows third-party notices once for the job
    torch.set_num_threads(distributed.threads_per_rank(info.local_world_size))
    info = distributed.init(info, backend, addr, port, rc.dist.timeout_s)
    try:
        summary = train_run(rc, run_dir, actor_name, info)
    except Preempted:
        distributed.shutdown()  # every rank stopped at the same step: leave together
        raise
    except BaseException:
        dist.destroy_process_group()
        raise
    distributed.shutdown()
    return summary


def launch(rc: RunConfig, run_dir: Path, actor_name: str) -> dict | None:
    """Run the job: in this process, as this process's rank of a torchrun/SLURM job, or by spawning
    `dist.world_size / dist.nnodes` ranks here. Returns the summary on the process that has it (on
    rank 0's node). Each node's local rank 0 measures the node's energy (see `job.train_run`)."""
    import torch.multiprocessing as mp

    backend = distributed.resolve_backend(rc.dist.backend, device_type(rc.device))
    external = distributed.external_launch()
    if external is not None:
        return run_rank(rc, run_dir, actor_name, external, backend, rc.dist.master_addr,
                        int(os.environ.get("MASTER_PORT", rc.dist.master_port or 29500)))
    if rc.dist.world_size == 1:
        torch.set_num_threads(distributed.threads_per_rank(1))  # the cores this process may use (taskset)
        return train_run(rc, run_dir, actor_name)
    port = rc.dist.master_port or distributed.free_port()
    context = mp.start_processes(_rank_main, args=(rc, run_dir, actor_name, backend, port),
                                 nprocs=rc.dist.world_size // rc.dist.nnodes, join=False, start_method="spawn")
    with forward_signals([p.pid for p in context.processes]):
        try:
            while not context.join():
                pass
        except mp.ProcessExitedException as exc:
            if exc.exit_code > 128:  # the ranks stopped on a signal, after their checkpoint
                step = _checkpoint_step(run_dir)
                raise Preempted(exc.exit_code - 128, step) from None
            raise
    summary_file = run_dir / "summary.json"
    return json.loads(summary_file.read_text()) if rc.dist.node_rank == 0 and summary_file.exists() else None
