"""Deterministic evaluation of an actor: N episodes run side by side in a vector env."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .envs import ActionScaler, make_vec_env


def evaluate_policy(
    policy: Callable[[torch.Tensor], torch.Tensor],
    env_id: str,
    episodes: int,
    seed: int,
    max_episode_steps: int | None = None,
) -> np.ndarray:
    """Returns of `episodes` episodes, the k-th reset with seed `seed + k`, acting with `policy`
    (raw observation tensor -> action in [-1, 1]). Each env copy runs exactly one episode."""
    envs = make_vec_env(env_id, episodes, max_episode_steps)
    try:
        scale = ActionScaler(envs.single_action_space)
        obs, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            action = policy(torch.as_tensor(obs, dtype=torch.float32)).cpu().numpy()
            obs, rew, term, trunc, _ = envs.step(scale(action))
            returns += rew * running
            running &= ~(term | trunc)
        return returns
    finally:
        envs.close()
