"""Stop requests (SIGTERM from a scheduler, SIGINT from Ctrl-C, and in a job that submitit started its
preemption signal, USR2 by default): the first asks for a clean stop, a second one ends at once. The
preemption signal never ends at once: arriving after another stop request, it only marks the stop as
a preemption (the job is then requeued, see runtime/scheduler.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from .scheduler import preemption_signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_signals() -> tuple[int, ...]:
    """The signals that ask this process to stop: STOP_SIGNALS, and submitit's preemption signal."""
    preempt = preemption_signal()
    return STOP_SIGNALS + ((preempt,) if preempt is not None and preempt not in STOP_SIGNALS else ())


class Preempted(Exception):
    """Training stopped on request (SIGTERM, SIGINT, submitit's preemption signal), after writing a
    checkpoint unless it stopped while compiling (`checkpointed` False: the last checkpoint is kept)."""

    def __init__(self, signum: int, step: int, checkpointed: bool = True):
        what = "; checkpoint written" if checkpointed else \
            " while compiling the update, at once: no checkpoint written since the last one"
        super().__init__(f"stopped by signal {signum} at env step {step}{what}")
        self.signum, self.step, self.checkpointed = signum, step, checkpointed


class StopNow(KeyboardInterrupt):
    """Raised by the stop handler inside a block that cannot reach a safe point soon (torch.compile
    compiling the first update: minutes on a CPU). A KeyboardInterrupt, so that nothing that catches
    Exception (torch.compile's own error handling, the fallback to eager) swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def handling(handler):
    """Install `handler(signum, frame)` for the stop signals while the block runs (main thread only:
    Python delivers signals there), then put the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in stop_signals()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_on_signals(state):
    """Set `state.stop_signal`: the training loop stops at its next safe point (after the current
    update, with a checkpoint); inside `state.at_once` (compiling), it stops there and then (StopNow)."""

    preempt = preemption_signal()

    def handler(signum, frame):
        if state.stop_signal and signum != preempt:
            os._exit(128 + signum)
        state.stop_signal = signum
        if state.at_once:
            state.at_once = False
            raise StopNow(signum)

    return handling(handler)


def forward_signals(pids: list[int]):
    """While spawned ranks run, pass stop signals on to them (a scheduler signals this process; the
    ranks checkpoint and stop together); a second signal kills them."""
    received = []
    preempt = preemption_signal()

    def handler(signum, frame):
        again = bool(received) and signum != preempt
        received.append(signum)
        for pid in pids:  # the ranks stop on the same signal: a preempted job's ranks exit 128 + its number
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if again else signum)

    return handling(handler)
