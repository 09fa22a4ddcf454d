"""A MuJoCo task that fails on purpose, for fault tests: `env.id=faulty_env:FaultyPendulum-v0`.

The copy reset with an odd seed (rank 1 of a two-rank job with seed 0) raises after FAIL_AFTER steps;
with a NaN mode it returns a NaN observation instead."""

import os

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv

FAIL_AFTER = 150


class FaultyPendulum(InvertedPendulumEnv):
    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._faulty = seed % 2 == 1
            self._steps = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, rew, term, trunc, info = super().step(action)
        self._steps = getattr(self, "_steps", 0) + 1
        if getattr(self, "_faulty", False) and self._steps > FAIL_AFTER:
            if os.environ.get("FAULTY_ENV_MODE") == "nan":
                obs = np.full_like(obs, np.nan)
            else:
                raise RuntimeError("simulated crash of this rank's environment")
        return obs, rew, term, trunc, info


gym.register("FaultyPendulum-v0", entry_point=FaultyPendulum, max_episode_steps=1000)
