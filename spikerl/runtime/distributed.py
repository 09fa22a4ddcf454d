"""Data-parallel training: process-group set-up, rank launch, and the few collectives the loop needs.

A job of `world_size` ranks runs one training loop per rank. Each rank steps its own environment
copies (seeded `seed + rank`) into its own replay buffer; GradientMean averages the gradients of the
online actor and critics, so every rank holds the same weights after every update. Targets are copies
of the online networks' rank-0 start, updated alike on every rank.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import FAILED, SpikeRLError
from .sections import BACKENDS


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_backend(requested: str, device_type: str = "cpu") -> str:
    """`auto`: NCCL when the networks live on CUDA GPUs, else gloo. An explicit choice that cannot
    work here is a ValueError naming why. `device_type` is where the networks live: job.py places each
    rank's networks on its own CUDA GPU when device is auto or cuda and a GPU exists (runtime/device.py),
    else on the CPU, where NCCL (which reduces CUDA tensors only) is refused."""
    if requested not in BACKENDS:
        raise ValueError(f"dist.backend must be one of {', '.join(BACKENDS)}; got {requested!r}")
    cuda = device_type == "cuda" and torch.cuda.is_available() and dist.is_nccl_available()
    if requested == "auto":
        return "nccl" if cuda else "gloo"
    if requested == "nccl" and not cuda:
        raise ValueError("dist.backend=nccl needs networks on CUDA GPUs (and NCCL); use dist.backend=gloo")
    if requested == "mpi" and not dist.is_mpi_available():
        raise ValueError("dist.backend=mpi needs a PyTorch built from source with MPI; use gloo or nccl")
    return requested


def external_launch() -> DistInfo | None:
    """The ranks set by torchrun or SLURM (`srun`), when this process was started by one of them."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or a launcher that mimics it
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                        int(env.get("LOCAL_WORLD_SIZE", 1)))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return DistInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)),
                        int(env.get("SLURM_NTASKS_PER_NODE", env.get("SLURM_NTASKS", 1)).split("(")[0]))
    return None


def ranks_sharing_cores(info: DistInfo) -> int:
    """How many ranks share the cores this process sees: one where each rank is a SLURM task with CPUs
    of its own (`--cpus-per-task`), else the node's ranks (spawned here, or by torchrun)."""
    env = os.environ
    own_cpus = "SLURM_STEP_ID" in env and env.get("SLURM_CPUS_PER_TASK") and env.get("SLURM_NTASKS") == str(
        info.world_size)
    return 1 if own_cpus else info.local_world_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available_cores() -> int:
    """The cores this process may run on: its affinity (taskset, a scheduler's allocation), and in a
    SLURM task no more than the CPUs the job asked for it (`SLURM_CPUS_PER_TASK`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "") if "SLURM_STEP_ID" in os.environ else ""
    return min(cores, int(per_task)) if per_task.isdigit() and int(per_task) > 0 else cores


def threads_per_rank(ranks_sharing: int, jobs_at_once: int = 1) -> int:
    """This rank's share of the cores that `ranks_sharing` ranks of this job share, with `jobs_at_once`
    such jobs side by side on the machine (a parallel sweep). Oversubscribed ranks get one thread each:
    a data-parallel step with two threads per rank at four ranks on two cores was measured 70x slower. An
    `OMP_NUM_THREADS` the user set caps it, as it caps torch's own default."""
    share = max(1, available_cores() // (max(1, ranks_sharing) * max(1, jobs_at_once)))
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) > 0 else share


def single_run_threads(device: str, jobs_at_once: int = 1) -> int:
    """A single-process run's torch threads. On a CPU, one: a run on every core collapses when another
    process keeps one of them busy (20x slower on a 2-core Xeon, experiments/bench_threads.py), which one
    thread never does, for 1.2x less speed on a quiet machine; `OMP_NUM_THREADS` set by the user asks for
    more (up to the run's share of the cores). With a GPU the host's share of the cores, as before."""
    if device == "cuda":
        return threads_per_rank(1, jobs_at_once)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return threads_per_rank(1, jobs_at_once) if cap.isdigit() and int(cap) > 0 else 1


class RendezvousError(SpikeRLError, RuntimeError):
    """The ranks did not all meet at the rendezvous address within the timeout; the message is one line.
    The job failed (nothing was trained): exit code 1."""

    exit_code = FAILED


def init(info: DistInfo, backend: str, master_addr: str, master_port: int, timeout_s: float) -> DistInfo:
    """Join the process group; returns `info` with the backend filled in. A rank that cannot reach the
    rendezvous, or waits there longer than `timeout_s` for the others, raises RendezvousError."""
    import datetime

    os.environ.setdefault("MASTER_ADDR", master_addr)
    os.environ.setdefault("MASTER_PORT", str(master_port))
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    try:
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    except dist.DistError as exc:
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        raise RendezvousError(
            f"rank {info.rank} of {info.world_size} could not meet the others at dist.master_addr:dist.master_port "
            f"= {where} within dist.timeout_s = {timeout_s:g} s ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:200]})") from None
    return DistInfo(info.rank, info.world_size, info.local_rank, info.local_world_size, backend)


def shutdown() -> None:
    """Barrier, then destroy the group (destroying without the barrier aborts intermittently)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce of a CPU tensor when a group is up; a no-op in a single process. (NCCL
    reduces CUDA tensors only: the values make a round trip through this rank's GPU.)"""
    if dist.is_initialized() and dist.get_world_size() > 1:
        reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        if dist.get_backend() == "nccl":
            on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(on_gpu, op=reduce_op)
            tensor.copy_(on_gpu.cpu())
        else:
            dist.all_reduce(tensor, op=reduce_op)
    return tensor


class GradientMean:
    """Data parallelism's one collective per optimizer step: every rank's gradients of that optimizer's
    parameters, flattened into one buffer, all-reduced and divided by the world size. It runs after
    backward, outside the compiled losses, so each loss stays one whole graph (DDP's forward and
    backward hooks, which dynamo cannot trace, broke them); the networks here are too small for DDP's
    overlap of buckets with backward to repay its hooks. Ranks hold the same parameters (`broadcast`)
    and run the same graphs, so the same parameters have gradients on every rank."""

    def __init__(self) -> None:
        self.world_size = dist.get_world_size()

    @staticmethod
    @torch.no_grad()
    def broadcast(module: torch.nn.Module) -> None:
        """Rank 0's parameters to every rank, in one collective (buffers are neuron constants, equal)."""
        params = list(module.parameters())
        flat = _flatten(params)
        dist.broadcast(flat, 0)
        _unflatten_into(flat, params)

    @torch.no_grad()
    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flat = _flatten(grads)
        dist.all_reduce(flat)  # on the networks' device: NCCL's CUDA tensors, gloo's CPU ones
        flat.div_(self.world_size)
        _unflatten_into(flat, grads)


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """`tensors` end to end in one new 1-D buffer (what `_unflatten_into` takes apart)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy consecutive pieces of `flat` into `tensors`, in order."""
    pieces = flat.split([t.numel() for t in tensors])
    torch._foreach_copy_(tensors, [piece.view_as(t) for piece, t in zip(pieces, tensors)])
