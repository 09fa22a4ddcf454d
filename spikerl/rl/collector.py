"""Collecting experience: step the vector envs with exploration, store the transitions, fit the
observation normaliser and count episodes."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..errors import FAILED, SpikeRLError
from ..runtime.distributed import all_reduce_
from ..telemetry.metrics import RunningMeans
from .envs import ActionScaler, get_env_states, make_vec_env, real_next_obs, set_env_states
from .normalizer import ObsNormalizer
from .replay import ReplayBuffer
from .sections import EnvConfig


class EnvFault(SpikeRLError, RuntimeError):
    """The environment raised, or returned something that must not be learned from. The job failed:
    exit code 1."""

    exit_code = FAILED


class Collector:
    """One rank's env copies. While `explore_randomly`, actions are uniform over the action box
    (`start_actions="uniform"`), or N(0, start_action_std) per dimension plus the exploration noise
    (`"normal"`, DSRL's warm-up); after it, the policy's (the learner's action to explore with) plus
    Gaussian noise of scale `act_noise` (the learner's: 0 for SAC, whose policy samples), one draw per
    action dimension, or one for all of an action's dimensions where `shared_noise` (DSRL); clipped to
    [-1, 1]. An episode that ends is reset in the same step (its real last observation is stored, and
    only `terminated` stops the bootstrap). Env copy i is seeded `seed + i` once; later episodes
    continue each copy's own random stream, so every episode starts from a fresh state."""

    def __init__(self, env: EnvConfig, policy: Callable[[torch.Tensor], torch.Tensor], replay: ReplayBuffer,
                 normalizer: ObsNormalizer, *, act_noise: float, seed: int, rank: int = 0,
                 shared_noise: bool = False, start_actions: str = "uniform", start_action_std: float = 0.1,
                 distributed: bool = False):
        self.env_id, self.rank = env.id, rank
        self.envs = make_vec_env(env.id, env.num_envs, env.max_episode_steps)
        self.scale = ActionScaler(self.envs.single_action_space)
        self.num_envs, self.act_dim = env.num_envs, self.envs.single_action_space.shape[0]
        self.policy, self.replay, self.normalizer, self.act_noise = policy, replay, normalizer, act_noise
        self.shared_noise, self.start_actions, self.start_action_std = shared_noise, start_actions, start_action_std
        self.distributed = distributed
        normalizer.start_at(self.envs.single_observation_space.high)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.obs: np.ndarray | None = None  # the envs' current observations (set by reset or resume)
        self.episode_returns = np.zeros(env.num_envs)
        self.episodes = 0
        self.act_seconds = 0.0  # time spent in the policy (benchmarks read it)

    def explore(self, obs: np.ndarray, randomly: bool) -> np.ndarray:
        shape = (obs.shape[0], self.act_dim)
        if randomly and self.start_actions == "uniform":
            return self.rng.uniform(-1.0, 1.0, shape)
        if randomly:
            act = self.start_action_std * self.rng.standard_normal(shape)
        else:
            start = time.perf_counter()
            act = self.policy(torch.as_tensor(obs, dtype=torch.float32)).cpu().numpy()
            self.act_seconds += time.perf_counter() - start
        noise = self.rng.standard_normal((shape[0], 1) if self.shared_noise else shape)
        return np.clip(act + self.act_noise * noise, -1.0, 1.0)

    def step(self, explore_randomly: bool, env_step: int, window: RunningMeans) -> None:
        """Step every env copy once and store the transitions; finished episodes' returns go to `window`."""
        if self.obs is None:
            self.obs, _ = self.envs.reset(seed=self.seed)
        obs = self.obs
        self.normalizer.update(obs)
        if self.normalizer.every_step:  # the policy acts on statistics that include this observation
            self.sync_normalizer(self.distributed)
        act = self.explore(obs, explore_randomly)
        try:
            next_obs, rew, term, trunc, info = self.envs.step(self.scale(act))
        except Exception as exc:
            raise EnvFault(f"{self.env_id} raised at env step {env_step} (rank {self.rank}): "
                           f"{type(exc).__name__}: {exc}") from exc
        if not (np.isfinite(next_obs).all() and np.isfinite(rew).all()):
            raise EnvFault(f"{self.env_id} returned a non-finite observation or reward at env step "
                           f"{env_step} (rank {self.rank})")
        done = term | trunc
        last_obs = real_next_obs(next_obs, done, info)
        self.replay.add(obs, act, rew, last_obs, term)
        if self.normalizer.every_step and done.any():  # an episode's last observation counts too
            self.normalizer.update(last_obs[done])
        self.episode_returns += rew
        for i in np.flatnonzero(done):
            window.add("train/episode_return", self.episode_returns[i])
            self.episode_returns[i] = 0.0
            self.episodes += 1
        self.obs = next_obs

    def sync_normalizer(self, distributed: bool) -> None:
        """Fold the observations seen since the last sync (every rank's, in a distributed job) into
        the normaliser's statistics."""
        self.normalizer.sync(all_reduce_ if distributed else None)

    def close(self) -> None:
        self.envs.close()

    def state_dict(self) -> dict:
        """Each env copy's own state (MuJoCo simulator, time limit, generator), the current
        observations and episode returns, the exploration generator and the episode count."""
        if self.obs is None:
            self.obs, _ = self.envs.reset(seed=self.seed)
        return {
            "envs": get_env_states(self.envs),
            "obs": torch.from_numpy(np.asarray(self.obs, dtype=np.float64).copy()),
            "episode_returns": torch.from_numpy(self.episode_returns.copy()),
            "rng": self.rng.bit_generator.state,
            "episodes": self.episodes,
        }

    def load_state_dict(self, state: dict) -> bool:
        """Continue where `state` was taken; returns whether the envs were restored exactly (MuJoCo
        tasks) rather than restarted."""
        self.rng.bit_generator.state = state["rng"]
        self.episodes = int(state["episodes"])
        self.obs, _ = self.envs.reset(seed=self.seed)
        exact = set_env_states(self.envs, state["envs"])
        if exact:
            self.obs = state["obs"].numpy().astype(self.obs.dtype)
            self.episode_returns = state["episode_returns"].numpy().copy()
        return exact
