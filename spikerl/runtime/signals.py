"""Stop requests (SIGTERM from a scheduler, SIGINT from Ctrl-C): the first asks for a clean stop, a
second one ends at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on request (SIGTERM, SIGINT) after writing a checkpoint."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by signal {signum} at env step {step}; checkpoint written")
        self.signum, self.step = signum, step


@contextlib.contextmanager
def handling(handler):
    """Install `handler(signum, frame)` for the stop signals while the block runs (main thread only:
    Python delivers signals there), then put the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_on_signals(state):
    """Set `state.stop_signal`: the training loop stops at its next safe point (after the current
    update, with a checkpoint)."""

    def handler(signum, frame):
        if state.stop_signal:
            os._exit(128 + signum)
        state.stop_signal = signum

    return handling(handler)


def forward_signals(pids: list[int]):
    """While spawned ranks run, pass stop signals on to them (a scheduler signals this process; the
    ranks checkpoint and stop together); a second signal kills them."""
    received = []

    def handler(signum, frame):
        received.append(signum)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if len(received) > 1 else signal.SIGTERM)

    return handling(handler)
