"""The off-policy training loop, as one rank runs it: collect, update on schedule, evaluate, log,
checkpoint. Each job is done by its own part (collector, update schedule, evaluator, run state);
this module only orders them."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import torch
from tqdm.auto import tqdm

from ..runtime.distributed import all_reduce_
from ..runtime.signals import Preempted, StopNow
from ..telemetry.metrics import RunningMeans
from .collector import Collector
from .evaluation import Evaluator
from .protocols import MetricWriter
from .run_state import RunState, Tick
from .sections import TrainConfig
from .updates import UpdateSchedule


class TrainingLoop:
    """In a job of N ranks every rank runs this loop in lockstep; the update schedule is per rank, each
    update averaging gradients over ranks. Rank 0 alone writes metrics and checkpoints and shows progress."""

    def __init__(self, collector: Collector, updates: UpdateSchedule, evaluator: Evaluator, state: RunState,
                 train: TrainConfig, metrics: MetricWriter | None = None, name: str | None = None):
        self.collector, self.updates, self.evaluator, self.state = collector, updates, evaluator, state
        self.train, self.metrics = train, metrics  # rank 0's metric writers; None logs nothing
        self.window = RunningMeans()  # metric means since the last logged row
        self.last_log = (time.perf_counter(), state.env_steps, 0)  # time, env steps, updates at the last row
        self.updates_run = 0
        self.name = name or collector.env_id  # what the bar calls the run (a multirun's job: its method and task)
        self.bar: tqdm | None = None

    def run(self) -> dict:
        """Train to `train.total_steps` (from where a resumed run stopped); returns the loop's summary."""
        self.bar, warm = self.progress_bar(warming_up=True), False  # `saying` writes on it too
        self.state.start_segment()
        try:
            while not self.state.done:
                tick = self.iteration()
                self.bar.update(tick.after - tick.before)
                if not warm and self.updates_run and tick.after >= self.train.start_steps:
                    # the segment's first policy action and update round compiled (once per process): the
                    # rate and time left count from here, or that one-off wait reads as hours to go
                    self.bar.close()
                    self.bar, warm = self.progress_bar(warming_up=False), True
                if self.evaluator.history and self.evaluator.history[-1][0] == tick.after:
                    self.bar.set_postfix(eval=f"{self.evaluator.history[-1][1]:.1f}", refresh=False)
        finally:
            self.bar.close()
            self.collector.close()  # the metric writers belong to the caller, who closes them
        return self.summary()

    def progress_bar(self, warming_up: bool) -> tqdm:
        """Rank 0's bar from the current env step: its rate counts this segment's steps since it was made
        (a resumed run's earlier segments never). While warming up it says so and leaves no line behind."""
        return tqdm(total=self.train.total_steps, initial=self.state.env_steps, unit="step", dynamic_ncols=True,
                    disable=not (self.train.progress and self.state.dist.is_main), mininterval=1.0,
                    desc=f"{self.name}{' (warming up)' if warming_up else ''}", leave=not warming_up)

    @contextlib.contextmanager
    def saying(self, what: str, every: float = 1.0):
        """While the block runs, the bar says `what` and for how long, each second (a compiled update's first
        round blocks for minutes on a CPU: a frozen bar with an ETA of hours read as a hang)."""
        if self.bar is None or self.bar.disable:
            yield
            return
        done, start = threading.Event(), time.perf_counter()

        def tell():
            while not done.wait(every):
                self.bar.set_postfix_str(f"{what}: {time.perf_counter() - start:.0f} s", refresh=True)

        teller = threading.Thread(target=tell, daemon=True)
        teller.start()
        try:
            yield
        finally:
            done.set()
            teller.join()
            self.bar.set_postfix_str("", refresh=False)

    @contextlib.contextmanager
    def compiling(self, env_step: int):
        """The first update round, which compiles: minutes on a CPU without a safe point. The bar says so,
        and a stop request ends it at once; the run continues from its last checkpoint (before the
        round: nothing of it is kept)."""
        try:
            with self.saying("compiling the update (once per process)"), self.state.stop_at_once():
                yield
        except StopNow as stop:
            raise Preempted(stop.signum, env_step, checkpointed=False) from None

    def iteration(self) -> Tick:
        """One step of every env copy, and whatever falls due at the env step it reaches."""
        state, train = self.state, self.train
        self.collector.step(state.env_steps < train.start_steps, state.env_steps, self.window)
        tick = state.advance()
        round_due = self.updates.round_due(tick.local_before, tick.local_after)
        if round_due or tick.final:  # every rank folds in every rank's new observations
            self.collector.sync_normalizer(state.dist.enabled)
        if round_due and self.updates.ready(tick.after):
            first = not self.updates_run and getattr(self.updates.learner, "compile", False)
            with self.compiling(tick.after) if first else contextlib.nullcontext():
                self.updates_run += self.updates.run_round(tick.after, self.window)
        self.updates.recalibrate(tick)
        row = {}
        if tick.crossed(train.eval_every) or tick.final:
            row = self.evaluate(tick.after)
        if self.metrics and (row or tick.crossed(train.log_every)):
            self.log(row, tick.after)
        if tick.crossed(train.checkpoint_every) or tick.final:
            state.save()
        if state.stop_requested(round_due) and not tick.final:
            state.save()
            raise Preempted(state.stop_signal or signal.SIGTERM, tick.after)
        return tick

    def evaluate(self, env_step: int) -> dict:
        mean, std, improved = self.evaluator(env_step, self.state.wall_seconds)
        if improved and self.train.keep_best and self.state.dist.is_main:
            self.state.save("best.pt", with_replay=False)
        return {"eval/return_mean": mean, "eval/return_std": std}

    def log(self, row: dict, env_step: int) -> None:
        now = time.perf_counter()
        then, steps_then, updates_then = self.last_log
        seconds = max(now - then, 1e-9)
        self.metrics.write({
            **row, **self.window.pop(),
            "step": env_step,
            "time/wall": self.state.wall_seconds,
            "time/env_steps_per_second": (env_step - steps_then) / seconds,
            "time/updates_per_second": (self.updates_run - updates_then) / seconds,
            "train/episodes": self.collector.episodes,
        })
        self.last_log = (now, env_step, self.updates_run)

    def summary(self) -> dict:
        """The run's figures over all its segments. `wall_seconds` is the whole training time,
        evaluations included; `eval_seconds`, `update_seconds` and `compile_seconds` say how much of it
        they took (`update_compile_seconds`: compiling within the updates). The all-in rates divide by
        what the user waited; the steady ones leave out the compiling, paid once per process (and not
        at all with a warm cache), so that runs compare however their compiling went."""
        learner, state, evaluator = self.updates.learner, self.state, self.evaluator
        _, mean, std = evaluator.history[-1]
        episodes = all_reduce_(torch.tensor([float(self.collector.episodes)]))  # every rank's episodes
        segment = state.segment_seconds
        wall = state.earlier_seconds + segment
        updates = self.updates
        steady_update_seconds = updates.seconds - updates.compile_seconds
        return {
            "total_env_steps": state.env_steps,
            "wall_seconds": wall,
            "segments": state.segments,
            "segment_wall_seconds": segment,
            "eval_seconds": evaluator.seconds,
            "update_seconds": self.updates.seconds,
            "compile_seconds": state.compile_seconds,
            "update_compile_seconds": updates.compile_seconds,
            "eval_return_mean": mean,
            "eval_return_std": std,
            "eval_episodes": evaluator.episodes_run,
            "best_eval_return": evaluator.best,
            "updates": learner.updates,
            "skipped_updates": learner.skipped,
            "updates_per_second": learner.updates / self.updates.seconds if self.updates.seconds else 0.0,
            "env_steps_per_second": state.env_steps / wall,
            "steady_updates_per_second": learner.updates / steady_update_seconds if steady_update_seconds > 0 else 0.0,
            "steady_env_steps_per_second": state.env_steps / max(wall - state.compile_seconds, 1e-9),
            "episodes": int(episodes.item()),
            "eval_history": evaluator.rows(),  # evaluations.csv
        }
