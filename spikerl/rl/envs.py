"""Gymnasium environments: vector envs for collection and evaluation, and action scaling."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


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


def _time_limit(env: gym.Env):
    while env is not None:
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = getattr(env, "env", None)
    return None


def get_env_states(envs: gym.vector.SyncVectorEnv) -> list[dict]:
    """What it takes to continue each env copy exactly where it is: its random generator, the
    elapsed steps of its time limit and, for MuJoCo tasks, the simulator's full integration state
    (positions, velocities, controls, solver warm start). Tensors and plain values only."""
    import mujoco

    states = []
    for env in envs.envs:
        base = env.unwrapped
        state = {"np_random": base.np_random.bit_generator.state}
        limit = _time_limit(env)
        if limit is not None:
            state["elapsed_steps"] = int(limit._elapsed_steps or 0)
        if hasattr(base, "model") and hasattr(base, "data"):
            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            buf = np.empty(mujoco.mj_stateSize(base.model, spec))
            mujoco.mj_getState(base.model, base.data, buf, spec)
            state["mujoco"] = torch.from_numpy(buf)
        states.append(state)
    return states


def set_env_states(envs: gym.vector.SyncVectorEnv, states: list[dict]) -> bool:
    """Put each (already reset) env copy back where `get_env_states` saw it. Returns False when a
    copy's simulator state could not be restored (not a MuJoCo task): that copy starts a new episode."""
    import mujoco

    exact = True
    for env, state in zip(envs.envs, states, strict=True):
        base = env.unwrapped
        base.np_random.bit_generator.state = state["np_random"]
        limit = _time_limit(env)
        if limit is not None and "elapsed_steps" in state:
            limit._elapsed_steps = state["elapsed_steps"]
        if "mujoco" in state and hasattr(base, "data"):
            mujoco.mj_setState(base.model, base.data, state["mujoco"].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)
            # recompute derived quantities (body positions, contact forces) from the restored state, as
            # a step would; a task whose reward reads them may differ in its first step's last digits
            mujoco.mj_forward(base.model, base.data)
            mujoco.mj_rnePostConstraint(base.model, base.data)
        else:
            exact = False
    return exact
