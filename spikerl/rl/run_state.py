"""A run's state across its segments (a run stopped and resumed is one run): the step counters, the
wall time spent, the checkpoint that gathers every part's state, and the ranks' agreement on when to stop."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ..runtime import checkpoint
from ..runtime.compiler import compile_seconds
from ..runtime.distributed import DistInfo, all_reduce_


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]."""
    return every > 0 and after // every > before // every


@dataclass(frozen=True)
class Tick:
    """One iteration's advance: global env steps (summed over ranks) and this rank's own."""

    before: int
    after: int
    local_before: int
    local_after: int
    final: bool  # the run's last iteration

    def crossed(self, every: int) -> bool:
        return crossed(self.before, self.after, every)


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict): ...


class RunState:
    """`parts` are saved under their names (learner, normalizer, collector, updates, evaluator, and
    replay when asked); the counters, the wall time of every segment so far and the process-wide
    generators beside them. Rank 0 writes `checkpoints/<name>`; other ranks keep their own envs,
    generators and replay beside it (`last.rank<r>.pt`)."""

    def __init__(self, total_steps: int, num_envs: int, run_dir: str | Path, meta: dict, parts: dict[str, Stateful],
                 dist: DistInfo | None = None, save_replay: bool = False):
        self.dist = dist or DistInfo()
        self.total_steps, self.num_envs = total_steps, num_envs
        self.steps_per_iteration = num_envs * self.dist.world_size  # global env steps
        self.run_dir, self.meta, self.parts, self.save_replay = Path(run_dir), meta, parts, save_replay
        self.env_steps = 0
        self.local_steps = 0
        self.earlier_seconds = 0.0  # wall time of the run's earlier segments
        self.earlier_compile_seconds = 0.0  # their time spent compiling
        self.segments = 1
        self.segment_start = time.perf_counter()
        self.segment_compile_start = compile_seconds()
        self.stop_signal = 0  # set by a signal handler; the loop stops at the next safe point
        self.at_once = False  # a stop signal raises StopNow at once (runtime/signals.py): set by `stop_at_once`
        self.on_checkpoint: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        return self.env_steps >= self.total_steps

    def start_segment(self) -> None:
        self.segment_start = time.perf_counter()
        self.segment_compile_start = compile_seconds()

    @property
    def compile_seconds(self) -> float:
        """Of the wall time, what torch.compile took (acting, updates and evaluation compile on their first
        calls, once per process): every segment's, this one's so far."""
        return self.earlier_compile_seconds + compile_seconds() - self.segment_compile_start

    @property
    def segment_seconds(self) -> float:
        return time.perf_counter() - self.segment_start

    @property
    def wall_seconds(self) -> float:
        """Wall time of the whole run: every segment's, this one's so far."""
        return self.earlier_seconds + self.segment_seconds

    def advance(self) -> Tick:
        before, local_before = self.env_steps, self.local_steps
        self.env_steps += self.steps_per_iteration
        self.local_steps += self.num_envs
        return Tick(before, self.env_steps, local_before, self.local_steps, self.done)

    @contextlib.contextmanager
    def stop_at_once(self):
        """A stop signal inside the block ends it there and then (StopNow) instead of at the next safe
        point: for a block that reaches none for minutes (compiling). One process only: ranks must stop
        together, at a round boundary."""
        self.at_once = not self.dist.enabled
        try:
            yield
        finally:
            self.at_once = False

    def stop_requested(self, at_round_boundary: bool) -> bool:
        """Whether to stop now. Ranks decide together, at update-round boundaries, so that they all
        leave at the same step (a rank leaving alone would hang the others' next collective)."""
        if not self.dist.enabled:
            return bool(self.stop_signal)
        if not at_round_boundary:
            return False
        flag = all_reduce_(torch.tensor([float(self.stop_signal)]), "max")
        self.stop_signal = self.stop_signal or int(flag.item())
        return bool(flag.item())

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self, with_replay: bool | None = None) -> dict:
        """Everything needed to continue exactly; tensors and plain values only."""
        with_replay = self.save_replay if with_replay is None else with_replay
        state = {name: part.state_dict() for name, part in self.parts.items() if name != "replay" or with_replay}
        state.update({
            "meta": self.meta,
            "counters": {"env_steps": self.env_steps, "local_steps": self.local_steps, "rank": self.dist.rank,
                         "world_size": self.dist.world_size, "wall_seconds": self.wall_seconds,
                         "compile_seconds": self.compile_seconds, "segments": self.segments},
            "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
        })
        return state

    def load_state_dict(self, state: dict) -> bool:
        """Continue from a checkpoint of this run's kind; returns whether the envs were restored
        exactly (MuJoCo tasks) rather than restarted."""
        exact = True
        for name, part in self.parts.items():
            if name in state:
                exact = part.load_state_dict(state[name]) is not False and exact
        counters = state["counters"]
        self.env_steps, self.local_steps = counters["env_steps"], counters["local_steps"]
        self.earlier_seconds = float(counters["wall_seconds"])
        self.earlier_compile_seconds = float(counters.get("compile_seconds", 0.0))  # 0 in older checkpoints
        self.segments = int(counters["segments"]) + 1
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        return exact

    def checkpoint_path(self, name: str = "last.pt") -> Path:
        if not self.dist.is_main:
            name = name.replace(".pt", f".rank{self.dist.rank}.pt")
        return self.run_dir / "checkpoints" / name

    def save(self, name: str = "last.pt", with_replay: bool | None = None) -> Path:
        """Write a checkpoint; after the one to resume from (`last.pt`), call `on_checkpoint` (the job
        keeps the energy measured so far beside it)."""
        path = checkpoint.save_atomic(self.state_dict(with_replay), self.checkpoint_path(name))
        if name == "last.pt" and self.on_checkpoint is not None:
            self.on_checkpoint()
        return path
