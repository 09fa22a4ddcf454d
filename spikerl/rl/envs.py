"""Gymnasium environments: vector envs for collection and evaluation, and action scaling."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

# Notices that would otherwise come once per env copy, evaluation, rank and job, drowning the progress
# bar: gymnasium's "is out of date" for the paper's v4 MuJoCo tasks (a DeprecationWarning under
# gymnasium's own "once" filter, which forgets what it showed whenever anything changes the warning
# filters, as importing torch's dependencies does) and MuJoCo's compiler warnings (HalfCheetah-v4's
# `settotalmass`, printed by every model compile). Each is shown once per process instead, only by rank 0
# of a distributed job (`silence_notices`), and once per sweep where a sweep's jobs share a ledger
# folder (NOTICE_LEDGER): see `_quiet_repeats` and `_first_time`.
_GYM_OUT_OF_DATE = r".*The environment \S+ is out of date"
NOTICE_LEDGER = "SPIKERL_NOTICE_LEDGER"  # env var: a folder where a sweep's processes mark the notices shown
_shown: set[str] = set()
_notices = True  # off in ranks other than 0: a job's rank 0 shows each notice once for the whole job


def silence_notices() -> None:
    """Show none of these notices in this process (a distributed job's ranks other than 0)."""
    global _notices
    _notices = False


@contextlib.contextmanager
def notices_held():
    """Show none of these notices inside (a command's checks before its jobs start), and leave them unshown,
    so that the job that meets them next shows them."""
    global _notices
    before, _notices = _notices, False
    try:
        yield
    finally:
        _notices = before


def _first_time(message: str) -> bool:
    """Whether to show `message` now: not yet shown by this process, nor by another process of the sweep
    (the first to create its mark in the ledger folder shows it; creating a file is atomic)."""
    if not _notices or message in _shown:
        return False
    _shown.add(message)
    ledger = os.environ.get(NOTICE_LEDGER)
    if ledger:
        mark = Path(ledger) / hashlib.sha1(message.encode()).hexdigest()[:16]
        try:
            mark.parent.mkdir(parents=True, exist_ok=True)
            with open(mark, "x") as f:
                f.write(message + "\n")
        except FileExistsError:
            return False
        except OSError:  # an unwritable ledger: once per process, as without one
            pass
    return True


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warning handler: each distinct message once (`_first_time`), on stderr (MuJoCo's own
    prints every one and appends it to MUJOCO_LOG.TXT in the working directory)."""
    if _first_time(message):
        print(f"MuJoCo warning: {message}", file=sys.stderr, flush=True)


def _quiet_repeats() -> None:
    """Silence gymnasium's "is out of date" (`make_vec_env` says it once instead) with an "ignore"
    filter, which, unlike "once", keeps no state to forget; and hand MuJoCo's warnings to
    `_mujoco_warning` unless the process has a handler of its own. Idempotent."""
    if not any(f[0] == "ignore" and f[1] is not None and f[1].pattern == _GYM_OUT_OF_DATE for f in warnings.filters):
        warnings.filterwarnings("ignore", message=_GYM_OUT_OF_DATE, category=DeprecationWarning)
    try:
        import mujoco
    except ImportError:
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


def _note_out_of_date(env_id: str) -> None:
    """Gymnasium's notice that `env_id` is not the task's latest version, once (`_first_time`)."""
    from gymnasium.envs.registration import find_highest_version, parse_env_id

    try:
        namespace, name, version = parse_env_id(env_id)
        latest = find_highest_version(namespace, name)
    except gym.error.Error:
        return
    message = f"The environment {env_id} is out of date: gymnasium's latest is v{latest} (shown once per run or sweep)"
    if version is not None and latest is not None and latest > version and _first_time(message):
        warnings.warn(message, UserWarning, stacklevel=3)


_quiet_repeats()


def make_vec_env(env_id: str, num_envs: int, max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
    """A synchronous vector env (on few cores it beats subprocess envs for MuJoCo) that resets an
    episode in the same step it ends: `info["final_obs"]` then holds the real last observation."""
    _quiet_repeats()
    _note_out_of_date(env_id)
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        max_episode_steps=max_episode_steps,
    )


class ActionScaler:
    """Maps actions in [-1, 1] to the env's box [low, high]; on an exported actor's host too
    (spikerl/export/host.py: `host_state`, `from_host`)."""

    def __init__(self, space: gym.spaces.Box):
        if not isinstance(space, gym.spaces.Box) or not np.all(np.isfinite(space.low)):
            raise ValueError(f"SpikeRL needs a bounded continuous (Box) action space, got {space}")
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)

    def __call__(self, action: np.ndarray) -> np.ndarray:
        return self.low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)

    def host_state(self) -> tuple[dict, dict]:
        return {"formula": "low + (clip(a, -1, 1) + 1) / 2 (high - low)"}, {"low": self.low, "high": self.high}

    @classmethod
    def from_host(cls, config: dict, arrays: dict) -> ActionScaler:
        low, high = (np.asarray(arrays[k], np.float64) for k in ("low", "high"))
        return cls(gym.spaces.Box(low, high, dtype=np.float64))


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

