"""Jobs that a scheduler runs through submitit (Hydra's submitit launcher: SLURM, or submitit's local
executor): its preemption signal, handing a stopped job back to submitit to be requeued, knowing that a
job was requeued, and the torch.distributed rendezvous of a SLURM job whose tasks are the ranks.

submitit signals a job (USR2 unless `SUBMITIT_PREEMPT_SIGNAL` says otherwise) when the scheduler
preempts it and `signal_delay_s` before its time limit. Its own handler for that signal calls the
submitted callable's `checkpoint` (Hydra's launcher resubmits the same job: same overrides, same run
folder), requeues the job and exits. SpikeRL stops first, at a safe point with a checkpoint (the
training loop treats the signal as a stop request), then calls that handler; the requeued job
resumes the run folder's checkpoint (`requeued`).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

REQUEUE_MARKER = "checkpoints/requeued.json"  # in the run folder: written before submitit requeues the job


def executor() -> str | None:
    """`slurm` or `local` when submitit started this process, else None."""
    return os.environ.get("SUBMITIT_EXECUTOR") or None


def preemption_signal() -> int | None:
    """The signal submitit preempts and times out this job with, when submitit started it."""
    if executor() is None:
        return None
    try:
        from submitit import JobEnvironment

        name = JobEnvironment.USR_SIG
    except ImportError:
        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", None)


def requeued(run_dir: Path) -> bool:
    """Whether this job is a requeued one that must continue its run folder: submitit requeued it after
    a preemption signal (the marker written by `hand_over`), or SLURM restarted it (its own requeue
    on preemption)."""
    if executor() is None:
        return False
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    return (run_dir / REQUEUE_MARKER).is_file() or (restarts.isdigit() and int(restarts) > 0)


def clear_requeue_marker(run_dir: Path) -> None:
    (run_dir / REQUEUE_MARKER).unlink(missing_ok=True)


def hand_over(signum: int, step: int, run_dir: Path, rank: int = 0) -> str:
    """After a stop on the preemption signal (checkpoint written): let submitit's own handler for it,
    which the training loop's handler had replaced, checkpoint the submission and requeue the job. When
    it requeues, the process exits here (SystemExit). Otherwise returns why it did not: another signal,
    not a submitit job, a task other than the job's first (that one requeues the whole job), or
    submitit's refusal (timed out more than `max_num_timeout` times)."""
    if signum != preemption_signal():
        return f"signal {signum} is not the scheduler's preemption signal"
    handler = signal.getsignal(signum)
    if not callable(handler):
        return "no submitit handler for the preemption signal"
    marker = run_dir / REQUEUE_MARKER
    if rank == 0:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"signal": signum, "env_step": step}) + "\n")
    try:
        handler(signum, None)  # submitit: checkpoint, requeue, sys.exit
    except Exception as exc:  # submitit.core.utils.UncompletedJobError: not requeued
        marker.unlink(missing_ok=True)
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return "only the job's first task requeues it"


def export_slurm_rendezvous(master_port: int = 0) -> bool:
    """In a task of a multi-task SLURM job that submitit started: set the torch.distributed variables
    (MASTER_ADDR: the job's first node; MASTER_PORT: `master_port`, or one submitit derives from the job
    id; RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE from the task) with submitit's own helper, so the
    task joins as a rank, as under torchrun. Returns whether it did."""
    if executor() != "slurm" or "RANK" in os.environ:
        return False
    import submitit

    if submitit.JobEnvironment().num_tasks < 2:
        return False
    if master_port:
        os.environ.setdefault("MASTER_PORT", str(master_port))
    given = os.environ.get("MASTER_ADDR")
    # submitit keeps a MASTER_PORT already set, and refuses to export over it unless told to overwrite
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    if given:  # a rendezvous address the user exported wins over the job's first node
        os.environ["MASTER_ADDR"] = given
    return True
