"""The update schedule (PopSAN's): every `update_every` env steps of a rank, `gradient_steps` learner
updates on batches from that rank's replay, once `update_after` global env steps have been taken."""

from __future__ import annotations

import time

import torch

from ..errors import FAILED, SpikeRLError
from ..runtime.compiler import compile_seconds
from ..telemetry.metrics import RunningMeans
from .normalizer import ObsNormalizer
from .protocols import Learner
from .replay import ReplayBuffer
from .run_state import crossed


class TrainingDiverged(SpikeRLError, RuntimeError):
    """Too many updates in a row had non-finite gradients. The job failed: exit code 1."""

    exit_code = FAILED


class UpdateSchedule:
    def __init__(self, learner: Learner, replay: ReplayBuffer, normalizer: ObsNormalizer, batch_size: int,
                 update_every: int, gradient_steps: int, *, update_after: int, seed: int,
                 max_consecutive_skips: int = 100):
        self.learner, self.replay, self.normalizer = learner, replay, normalizer
        self.batch_size, self.update_every, self.gradient_steps = batch_size, update_every, gradient_steps
        self.update_after, self.max_consecutive_skips = update_after, max_consecutive_skips
        self.sampler = torch.Generator().manual_seed(seed)
        self.seconds = 0.0  # time spent updating, over every segment of the run
        self.compile_seconds = 0.0  # of which compiling (the update's graphs, once per process)

    def round_due(self, local_before: int, local_after: int) -> bool:
        """Whether this rank's env steps crossed a round boundary (every rank crosses it together)."""
        return crossed(local_before, local_after, self.update_every)

    def ready(self, env_steps: int) -> bool:
        return env_steps > self.update_after and len(self.replay) >= self.batch_size

    def run_round(self, env_step: int, window: RunningMeans) -> int:
        """`gradient_steps` learner updates; their metrics go to `window`. Returns the number run. The
        skip count is read once, after the round: reading it per update would wait for the device."""
        start, compiling = time.perf_counter(), compile_seconds()
        for _ in range(self.gradient_steps):
            # the batches a target fits first (Proxy Target's), then the critic's: sampled in that order
            lead = [self.replay.sample(self.batch_size, self.normalizer, self.sampler)
                    for _ in range(self.learner.batches_per_update - 1)]
            batch = self.replay.sample(self.batch_size, self.normalizer, self.sampler)
            window.update(self.learner.update(batch, lead))
        self.seconds += time.perf_counter() - start
        self.compile_seconds += compile_seconds() - compiling
        if self.learner.consecutive_skips >= self.max_consecutive_skips:
            raise TrainingDiverged(
                f"{self.learner.consecutive_skips} updates in a row had non-finite gradients at env step "
                f"{env_step}; stopping (the last checkpoint is kept)")
        return self.gradient_steps

    def recalibrate(self, tick) -> bool:
        """Recalibrate the actor's normalisation statistics (CaRe-BN) on replay batches when the env
        steps cross its period; whether it ran. Actors without such layers have no `recalibration`."""
        actor = getattr(self.learner, "actor", None)
        plan = actor.recalibration() if hasattr(actor, "recalibration") else None
        if plan is None or not tick.crossed(plan[0]) or len(self.replay) == 0:
            return False
        _, batches, size = plan
        actor.recalibrate([self.replay.sample(size, self.normalizer, self.sampler).obs for _ in range(batches)])
        return True

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.get_state(), "seconds": self.seconds, "compile_seconds": self.compile_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.set_state(state["sampler"])
        self.seconds = float(state["seconds"])
        self.compile_seconds = float(state.get("compile_seconds", 0.0))  # 0 in older checkpoints
