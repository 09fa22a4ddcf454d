"""The off-policy training loop: collect with a vector env, update on PopSAN's schedule, evaluate,
log, checkpoint. The algorithm lives in the learner (`TD3`); this loop knows only `act`, `update`,
`state_dict` and `load_state_dict`."""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..runtime import checkpoint
from ..runtime.distributed import DistInfo, all_reduce_
from ..telemetry.metrics import RunningMeans
from .envs import ActionScaler, get_env_states, make_vec_env, real_next_obs, set_env_states
from .evaluation import evaluate_policy
from .normalizer import ObsNormalizer
from .replay import ReplayBuffer
from .td3 import TD3


class EnvFault(RuntimeError):
    """The environment returned something that must not be learned from."""


class TrainingDiverged(RuntimeError):
    """Too many updates in a row had non-finite gradients."""


class Preempted(Exception):
    """Training stopped on request (SIGTERM, SIGINT) after writing a checkpoint."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by signal {signum} at env step {step}; checkpoint written")
        self.signum, self.step = signum, step


@dataclass
class TrainSettings:
    env_id: str
    total_steps: int
    start_steps: int
    update_after: int
    update_every: int
    gradient_steps: int
    batch_size: int
    replay_size: int
    act_noise: float
    eval_every: int
    eval_episodes: int
    checkpoint_every: int
    log_every: int
    seed: int
    num_envs: int = 1
    max_episode_steps: int | None = None
    progress: bool = True
    max_consecutive_skips: int = 100
    save_replay: bool = False
    keep_best: bool = True


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]."""
    return every > 0 and after // every > before // every


class Trainer:
    """One rank's loop. In a job of N ranks every rank runs it in lockstep: `train.*` step counts
    (total, start, update_after, eval, checkpoint, log) are global env steps, summed over ranks; the
    update schedule (`update_every`, `gradient_steps`) is per rank, each update averaging gradients
    over ranks. Rank 0 alone writes metrics, checkpoints and shows progress."""

    def __init__(
        self,
        learner: TD3,
        normalizer: ObsNormalizer,
        settings: TrainSettings,
        run_dir: str | Path,
        meta: dict,
        dist: DistInfo | None = None,
        device: torch.device | str = "cpu",
        metrics=None,
    ):
        self.learner, self.normalizer, self.s = learner, normalizer, settings
        self.dist = dist or DistInfo()
        self.device = torch.device(device)  # the networks'; envs and the replay store stay on the CPU
        self.run_dir = Path(run_dir)
        self.meta = meta  # what a checkpoint must carry to be evaluated or checked against a config
        self.envs = make_vec_env(settings.env_id, settings.num_envs, settings.max_episode_steps)
        self.scale = ActionScaler(self.envs.single_action_space)
        obs_dim = self.envs.single_observation_space.shape[0]
        self.act_dim = self.envs.single_action_space.shape[0]
        self.replay = ReplayBuffer(obs_dim, self.act_dim, settings.replay_size, device=self.device)
        self.rank_seed = settings.seed + self.dist.rank * settings.num_envs  # env copy i: rank_seed + i
        self.rng = np.random.default_rng(self.rank_seed)
        self.sample_gen = torch.Generator().manual_seed(self.rank_seed)
        self.metrics = metrics  # rank 0's metric writers (`write`); None logs nothing
        self.steps_per_iteration = settings.num_envs * self.dist.world_size  # global env steps
        self.local_steps = 0
        self.env_steps = 0
        self.episodes = 0
        self.eval_history: list[tuple[int, float, float]] = []
        self.update_seconds = 0.0
        self.eval_episodes_run = 0
        self.obs: np.ndarray | None = None  # the envs' current observations (set by reset or resume)
        self.ep_ret = np.zeros(settings.num_envs)
        self.stop_signal = 0  # set by a signal handler; the loop stops at the next safe point

    # -- acting ---------------------------------------------------------------------------------
    def explore(self, obs: np.ndarray) -> np.ndarray:
        n = obs.shape[0]
        if self.env_steps < self.s.start_steps:
            return self.rng.uniform(-1.0, 1.0, (n, self.act_dim))
        act = self.policy(torch.as_tensor(obs, dtype=torch.float32)).cpu().numpy()
        return np.clip(act + self.s.act_noise * self.rng.standard_normal(act.shape), -1.0, 1.0)

    def policy(self, raw_obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action for raw observations (a CPU tensor)."""
        return self.learner.act(self.normalizer(raw_obs.to(self.device)))

    def evaluate(self) -> tuple[float, float]:
        """Mean and std return over `eval_episodes` deterministic episodes, split over the ranks
        (rounded up to a multiple of the world size); episode k is reset with seed + 10000 + k
        whatever the number of ranks."""
        per_rank = -(-self.s.eval_episodes // self.dist.world_size)
        returns = evaluate_policy(self.policy, self.s.env_id, per_rank,
                                  self.s.seed + 10_000 + self.dist.rank * per_rank, self.s.max_episode_steps)
        sums = all_reduce_(torch.tensor([len(returns), returns.sum(), (returns**2).sum()], dtype=torch.float64))
        n, total, squares = sums.tolist()
        self.eval_episodes_run = int(n)
        mean = total / n
        return mean, float(np.sqrt(max(squares / n - mean**2, 0.0)))

    # -- loop -----------------------------------------------------------------------------------
    def train(self) -> dict:
        s = self.s
        if self.obs is None:
            self.obs, _ = self.envs.reset(seed=self.rank_seed)
        window = RunningMeans()
        start = time.perf_counter()
        window_start, window_steps, window_updates = start, 0, 0
        bar = tqdm(total=s.total_steps, initial=self.env_steps, unit="step",
                   disable=not (s.progress and self.dist.is_main), dynamic_ncols=True, mininterval=1.0,
                   desc=s.env_id)
        try:
            while self.env_steps < s.total_steps:
                self.obs = self.collect(self.obs, window)
                local_before, self.local_steps = self.local_steps, self.local_steps + s.num_envs
                before, self.env_steps = self.env_steps, self.env_steps + self.steps_per_iteration
                window_steps += self.steps_per_iteration
                final = self.env_steps >= s.total_steps

                round_due = crossed(local_before, self.local_steps, s.update_every)
                if round_due or final:  # every rank folds in every rank's new observations
                    self.normalizer.sync(all_reduce_ if self.dist.enabled else None)
                if round_due and self.env_steps > s.update_after and len(self.replay) >= s.batch_size:
                    window_updates += self.update_round(window)

                row = {}
                if crossed(before, self.env_steps, s.eval_every) or final:
                    mean, std = self.evaluate()
                    improved = mean > max((m for _, m, _ in self.eval_history), default=-np.inf)
                    self.eval_history.append((self.env_steps, mean, std))
                    if improved and s.keep_best and self.dist.is_main:
                        self.save_checkpoint("best.pt", with_replay=False)
                    row.update({"eval/return_mean": mean, "eval/return_std": std})
                    bar.set_postfix(eval=f"{mean:.1f}", refresh=False)
                if self.metrics and (row or crossed(before, self.env_steps, s.log_every)):
                    now = time.perf_counter()
                    row.update(window.pop())
                    row.update({
                        "step": self.env_steps,
                        "time/wall": now - start,
                        "time/env_steps_per_second": window_steps / max(now - window_start, 1e-9),
                        "time/updates_per_second": window_updates / max(now - window_start, 1e-9),
                        "train/episodes": self.episodes,
                    })
                    window_start, window_steps, window_updates = now, 0, 0
                    self.metrics.write(row)
                if crossed(before, self.env_steps, s.checkpoint_every) or final:
                    self.save_checkpoint()
                bar.update(self.steps_per_iteration)
                if self.stop_requested(round_due) and not final:
                    self.save_checkpoint()
                    raise Preempted(self.stop_signal or signal.SIGTERM, self.env_steps)
        finally:
            bar.close()
            self.envs.close()  # the metric writers belong to the caller, who closes them
        return self.summary(time.perf_counter() - start)

    def stop_requested(self, round_due: bool) -> bool:
        """Whether to stop now. Ranks decide together, at update-round boundaries, so that they
        all leave at the same step (a rank leaving alone would hang the others' next collective)."""
        if not self.dist.enabled:
            return bool(self.stop_signal)
        if not round_due:
            return False
        flag = all_reduce_(torch.tensor([float(self.stop_signal)]), "max")
        self.stop_signal = self.stop_signal or int(flag.item())
        return bool(flag.item())

    def collect(self, obs: np.ndarray, window: RunningMeans) -> np.ndarray:
        """Step every env copy once, store the transitions; returns the next observations."""
        act = self.explore(obs)
        try:
            next_obs, rew, term, trunc, info = self.envs.step(self.scale(act))
        except Exception as exc:
            raise EnvFault(f"{self.s.env_id} raised at env step {self.env_steps} (rank {self.dist.rank}): "
                           f"{type(exc).__name__}: {exc}") from exc
        if not (np.isfinite(next_obs).all() and np.isfinite(rew).all()):
            raise EnvFault(f"{self.s.env_id} returned a non-finite observation or reward at env step "
                           f"{self.env_steps} (rank {self.dist.rank})")
        done = term | trunc
        self.replay.add(obs, act, rew, real_next_obs(next_obs, done, info), term)
        self.normalizer.update(obs)
        self.ep_ret += rew
        for i in np.flatnonzero(done):
            window.add("train/episode_return", self.ep_ret[i])
            self.ep_ret[i] = 0.0
            self.episodes += 1
        return next_obs

    def update_round(self, window: RunningMeans) -> int:
        """`gradient_steps` learner updates on batches from this rank's replay."""
        t0 = time.perf_counter()
        for _ in range(self.s.gradient_steps):
            batch = self.replay.sample(self.s.batch_size, self.normalizer, self.sample_gen)
            window.update(self.learner.update(batch))
            if self.learner.consecutive_skips >= self.s.max_consecutive_skips:
                raise TrainingDiverged(
                    f"{self.learner.consecutive_skips} updates in a row had non-finite gradients at env step "
                    f"{self.env_steps}; stopping (the last checkpoint is kept)")
        self.update_seconds += time.perf_counter() - t0
        return self.s.gradient_steps

    def summary(self, wall: float) -> dict:
        last_step, mean, std = self.eval_history[-1]
        return {
            "env_id": self.s.env_id,
            "seed": self.s.seed,
            "total_env_steps": self.env_steps,
            "wall_seconds": wall,
            "eval_return_mean": mean,
            "eval_return_std": std,
            "eval_episodes": self.eval_episodes_run,
            "best_eval_return": max(m for _, m, _ in self.eval_history),
            "updates": self.learner.updates,
            "skipped_updates": self.learner.skipped,
            "updates_per_second": self.learner.updates / self.update_seconds if self.update_seconds else 0.0,
            "env_steps_per_second": self.env_steps / wall,
            "episodes": self.episodes,
            "eval_history": list(self.eval_history),  # [(env step, mean, std)]: evaluations.csv
        }

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self, with_replay: bool | None = None) -> dict:
        """Everything needed to continue exactly: learner, normaliser, counters, generators, the envs'
        own state and (with `save_replay`) the replay buffer. Tensors and plain values only."""
        state = {
            "meta": self.meta,
            "learner": self.learner.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "counters": {"env_steps": self.env_steps, "local_steps": self.local_steps, "episodes": self.episodes,
                         "rank": self.dist.rank, "world_size": self.dist.world_size},
            "rng": {
                "python": random.getstate(),
                "numpy": self.rng.bit_generator.state,
                "torch": torch.get_rng_state(),
                "sampler": self.sample_gen.get_state(),
            },
            "envs": get_env_states(self.envs),
            "obs": torch.from_numpy(np.asarray(self.obs, dtype=np.float64).copy()),
            "episode_returns": torch.from_numpy(self.ep_ret.copy()),
            "eval_history": torch.tensor(self.eval_history, dtype=torch.float64).reshape(-1, 3),
        }
        if self.s.save_replay if with_replay is None else with_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict) -> bool:
        """Continue from a checkpoint of this run's kind; returns whether the envs were restored
        exactly (MuJoCo tasks) rather than restarted."""
        self.learner.load_state_dict(state["learner"])
        self.normalizer.load_state_dict(state["normalizer"])
        counters = state["counters"]
        self.env_steps, self.local_steps = counters["env_steps"], counters["local_steps"]
        self.episodes = counters["episodes"]
        rng = state["rng"]
        random.setstate(rng["python"])
        self.rng.bit_generator.state = rng["numpy"]
        torch.set_rng_state(rng["torch"])
        self.sample_gen.set_state(rng["sampler"])
        self.eval_history = [tuple(row) for row in state["eval_history"].tolist()]
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
        self.obs, _ = self.envs.reset(seed=self.rank_seed)
        exact = set_env_states(self.envs, state["envs"])
        if exact:
            self.obs = state["obs"].numpy().astype(self.obs.dtype)
            self.ep_ret = state["episode_returns"].numpy().copy()
        return exact

    def checkpoint_path(self, name: str = "last.pt") -> Path:
        """Rank 0 writes `name`; other ranks keep their own envs, generators and replay beside it."""
        if not self.dist.is_main:
            name = name.replace(".pt", f".rank{self.dist.rank}.pt")
        return self.run_dir / "checkpoints" / name

    def save_checkpoint(self, name: str = "last.pt", with_replay: bool | None = None) -> Path:
        return checkpoint.save_atomic(self.state_dict(with_replay), self.checkpoint_path(name))
