"""SpikeRL's errors: one base for every failure an entry point reports to the user.

A `SpikeRLError`'s message is one line for the user: what is wrong, naming the key, file or step, and
where there is a choice the valid options; no traceback is shown for it. Its `exit_code` says what kind
of failure it is:

    2  BAD_INPUT: bad input (a config mistake, an unusable checkpoint to resume from); nothing started
    1  FAILED: a job failed (an environment fault, diverged updates, ranks that did not meet, a
       checkpoint that cannot be written)

A class sets its code; a raise whose code depends on the moment passes `exit_code=` (an instance
attribute then). The entry points print `<program>: error: <message>` (`error_line`) and exit with
`exit_code(exc)`. This module imports nothing of SpikeRL's, so any module may import it.
"""

from __future__ import annotations

import sys

BAD_INPUT = 2
FAILED = 1


class SpikeRLError(Exception):
    """A failure reported in one line (the message) and an exit code (`exit_code`: 2 bad input,
    nothing started; 1 a job failed)."""

    exit_code: int = FAILED

    def __init__(self, *args, exit_code: int | None = None):
        super().__init__(*args)
        if exit_code is not None:
            self.exit_code = exit_code


def exit_code(exc: BaseException) -> int:
    """The exit code for `exc`: a SpikeRLError's own; any other exception is a failed job (1)."""
    return exc.exit_code if isinstance(exc, SpikeRLError) else FAILED


def error_line(program: str, message: object) -> str:
    """The one line an entry point prints on stderr for an error."""
    return f"{program}: error: {message}"


def report(exc: BaseException, program: str = "spikerl") -> int:
    """Print `exc`'s one line on stderr; returns its exit code."""
    print(error_line(program, exc), file=sys.stderr)
    return exit_code(exc)
