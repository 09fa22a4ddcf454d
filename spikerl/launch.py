"""Launching a job's ranks: in this process, as one rank of a torchrun/SLURM job, or by spawning
`dist.world_size / dist.nnodes` ranks with torch.multiprocessing."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import torch

from .config import ConfigError, RunConfig
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


@contextlib.contextmanager
def _quiet_c10d():
    """Spawned ranks start with torch's C++ log level at FATAL unless the user set TORCH_CPP_LOG_LEVEL:
    c10d logs every failed rendezvous attempt with a C++ stack trace, where the rank's own error says it
    in one line (distributed.RendezvousError). This process's environment is left as it was."""
    if "TORCH_CPP_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["TORCH_CPP_LOG_LEVEL"] = "FATAL"
    try:
        yield
    finally:
        del os.environ["TORCH_CPP_LOG_LEVEL"]


def _rank_main(local_rank: int, rc: RunConfig, run_dir: Path, actor_name: str, backend: str, port: int,
               jobs_at_once: int = 1) -> None:
    """One spawned rank of a job launched from this command. A preempted rank exits with 128 + the
    signal number, which the launching process passes on."""
    nprocs = rc.dist.world_size // rc.dist.nnodes
    info = DistInfo(rc.dist.node_rank * nprocs + local_rank, rc.dist.world_size, local_rank, nprocs)
    try:
        run_rank(rc, run_dir, actor_name, info, backend, rc.dist.master_addr, port, jobs_at_once)
    except Preempted as stop:
        sys.exit(128 + stop.signum)


def run_rank(rc: RunConfig, run_dir: Path, actor_name: str, info: DistInfo, backend: str, addr: str,
             port: int, jobs_at_once: int = 1) -> dict | None:
    """Join the group, train, leave cleanly. A failing rank leaves without the final barrier, so the
    others fail in their next collective (within dist.timeout_s) instead of waiting forever. Its torch
    threads: its share of the cores, with `jobs_at_once` jobs side by side (a parallel sweep)."""
    import torch.distributed as dist

    if info.rank != 0:
        silence_notices()  # rank 0 shows third-party notices once for the job
    torch.set_num_threads(distributed.threads_per_rank(distributed.ranks_sharing_cores(info), jobs_at_once))
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


def launch(rc: RunConfig, run_dir: Path, actor_name: str, jobs_at_once: int = 1) -> dict | None:
    """Run the job: in this process, as this process's rank of a torchrun/SLURM job, or by spawning
    `dist.world_size / dist.nnodes` ranks here. Returns the summary on the process that has it (on
    rank 0's node). Each node's local rank 0 measures the node's energy (see `job.train_run`).
    `jobs_at_once`: jobs of a parallel sweep running side by side here, which share the cores."""
    import torch.multiprocessing as mp

    backend = distributed.resolve_backend(rc.dist.backend, device_type(rc.device))
    external = distributed.external_launch()
    if external is not None:
        if external.world_size != rc.dist.world_size:
            raise ConfigError(f"dist.world_size is {rc.dist.world_size} but the launcher started {external.world_size} "
                              "ranks (torchrun's processes or SLURM's tasks): make them agree")
        return run_rank(rc, run_dir, actor_name, external, backend, rc.dist.master_addr,
                        int(os.environ.get("MASTER_PORT", rc.dist.master_port or 29500)), jobs_at_once)
    if rc.dist.world_size == 1:  # one thread on a CPU: a run on every core collapses beside a busy process
        torch.set_num_threads(distributed.single_run_threads(device_type(rc.device), jobs_at_once))
        return train_run(rc, run_dir, actor_name)
    port = rc.dist.master_port or distributed.free_port()
    with _quiet_c10d():
        context = mp.start_processes(_rank_main, args=(rc, run_dir, actor_name, backend, port, jobs_at_once),
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
