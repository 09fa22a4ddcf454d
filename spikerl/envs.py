"""Gymnasium environments: vector envs for collection and evaluation, and action scaling."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def make_vec_env(env_id: str, num_envs: int, max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
    """A synchronous vector env (on few cores it beats subprocess envs for MuJoCo) that resets an
    episode in the same step it ends: `info["final_obs"]` then holds the real last observation."""
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        max_episode_steps=max_episode_steps,
    )


class ActionScaler:
    """Maps actions in [-1, 1] to the env's box [low, high]."""

    def __init__(self, space: gym.spaces.Box):
        if not isinstance(space, gym.spaces.Box) or not np.all(np.isfinite(space.low)):
            raise ValueError(f"SpikeRL needs a bounded continuous (Box) action space, got {space}")
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)

    def __call__(self, action: np.ndarray) -> np.ndarray:
        return self.low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)


def real_next_obs(next_obs: np.ndarray, done: np.ndarray, info: dict) -> np.ndarray:
    """The observation each transition really ended in: for envs that just finished an episode the
    vector env already returns the next episode's first observation, and the last one is in info."""
    if not done.any():
        return next_obs
    out = next_obs.copy()
    for i in np.flatnonzero(done):
        out[i] = info["final_obs"][i]
    return out
