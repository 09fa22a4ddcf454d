"""Deterministic evaluation of a policy: episodes run side by side in a vector env, split over the
ranks of a distributed job."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..runtime.distributed import DistInfo, all_reduce_
from .envs import ActionScaler, make_vec_env
from .normalizer import ObsNormalizer
from .protocols import Learner
from .sections import EnvConfig
from .seeding import EVAL_SEED_OFFSET

Policy = Callable[[torch.Tensor], torch.Tensor]  # raw observations (CPU) -> actions in [-1, 1]


def greedy_policy(learner: Learner, normalizer: ObsNormalizer, device: torch.device | str = "cpu",
                  explore: bool = False) -> Policy:
    """The learner's deterministic action for raw observations, normalised with the current statistics;
    with `explore`, its action to explore with (SAC's sample; the deterministic one for TD3 and DDPG,
    to which the collector adds its noise)."""
    device = torch.device(device)
    act = learner.explore if explore else learner.act

    def policy(raw_obs: torch.Tensor) -> torch.Tensor:
        return act(normalizer(raw_obs.to(device)))

    return policy


def trained_actor(state: dict) -> tuple[torch.nn.Module, ObsNormalizer]:
    """The actor (eval mode, float32, eager: a few episodes do not pay for compiling) and the observation
    normaliser saved in a checkpoint; CheckpointError (one line) where they cannot be rebuilt."""
    from hydra.utils import instantiate

    from ..runtime.checkpoint import CheckpointError

    meta = state["meta"]
    missing = [k for k in ("actor_spec", "obs_dim", "act_dim", "env_id") if k not in meta]
    if missing or not isinstance(state.get("learner"), dict) or "actor" not in state["learner"] \
            or "normalizer" not in state:
        what = f"meta {', '.join(missing)}" if missing else "actor weights or observation normaliser"
        raise CheckpointError(f"the checkpoint has no {what}: not a checkpoint of a trained actor")
    try:  # with its class's default execution settings: eager, bptt
        actor = instantiate(meta["actor_spec"], obs_dim=meta["obs_dim"], act_dim=meta["act_dim"])
        actor.load_state_dict(state["learner"]["actor"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit its actor spec: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # a spec that names no class of this SpikeRL
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot rebuild the checkpoint's actor: {message}") from None
    actor.eval().float()
    normalizer = ObsNormalizer(meta["obs_dim"])
    normalizer.load_state_dict(state["normalizer"])
    return actor, normalizer


def evaluate_policy(policy: Policy, env_id: str, episodes: int, seed: int, max_episode_steps: int | None = None,
                    observe: Callable[[torch.Tensor, np.ndarray], None] | None = None,
                    scale: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Returns of `episodes` episodes, the k-th reset with seed `seed + k`, acting with `policy`.
    Each env copy runs exactly one episode. `observe(raw_obs, running)` is called after each action is
    chosen (`running`: which episodes are still on); `scale` maps actions in [-1, 1] to the env's box
    (default: the env's own bounds)."""
    envs = make_vec_env(env_id, episodes, max_episode_steps)
    try:
        scale = scale or ActionScaler(envs.single_action_space)
        obs, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            raw = torch.as_tensor(obs, dtype=torch.float32)
            action = policy(raw).cpu().numpy()
            if observe is not None:
                observe(raw, running)
            obs, rew, term, trunc, _ = envs.step(scale(action))
            returns += rew * running
            running &= ~(term | trunc)
        return returns
    finally:
        envs.close()


class Evaluator:
    """`episodes` deterministic episodes per evaluation, split over the ranks (rounded up to a multiple
    of the world size); episode k is reset with seed + EVAL_SEED_OFFSET + k whatever the number of ranks. Keeps
    the history [(env step, mean, std)], when each evaluation came [(run wall seconds, of which training
    seconds: wall time less earlier evaluations)] and the time spent evaluating."""

    def __init__(self, policy: Policy, env: EnvConfig, episodes: int, seed: int, dist: DistInfo | None = None):
        self.policy, self.env, self.episodes, self.seed = policy, env, episodes, seed
        self.dist = dist or DistInfo()
        self.history: list[tuple[int, float, float]] = []
        self.timing: list[tuple[float, float]] = []
        self.episodes_run = 0
        self.seconds = 0.0

    @property
    def best(self) -> float:
        return max((mean for _, mean, _ in self.history), default=-np.inf)

    def __call__(self, env_step: int, wall_seconds: float = float("nan")) -> tuple[float, float, bool]:
        """Evaluate now, `wall_seconds` into the run: (mean, std, whether it beats every earlier evaluation)."""
        self.timing.append((wall_seconds, wall_seconds - self.seconds))
        start = time.perf_counter()
        per_rank = -(-self.episodes // self.dist.world_size)
        returns = evaluate_policy(self.policy, self.env.id, per_rank,
                                  self.seed + EVAL_SEED_OFFSET + self.dist.rank * per_rank, self.env.max_episode_steps)
        sums = all_reduce_(torch.tensor([len(returns), returns.sum(), (returns**2).sum()], dtype=torch.float64))
        n, total, squares = sums.tolist()
        mean = total / n
        std = float(np.sqrt(max(squares / n - mean**2, 0.0)))
        improved = mean > self.best
        self.history.append((env_step, mean, std))
        self.episodes_run = int(n)
        self.seconds += time.perf_counter() - start
        return mean, std, improved

    def state_dict(self) -> dict:
        return {"history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 3),
                "timing": torch.tensor(self.timing, dtype=torch.float64).reshape(-1, 2), "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.history = [(int(step), mean, std) for step, mean, std in state["history"].tolist()]
        timing = state.get("timing", torch.full((len(self.history), 2), float("nan")))  # format 1 had none
        self.timing = [tuple(row) for row in timing.tolist()]
        self.seconds = float(state["seconds"])

    def rows(self) -> list[tuple]:
        """(env step, mean, std, wall seconds, training seconds) of every evaluation: evaluations.csv."""
        return [(*h, *t) for h, t in zip(self.history, self.timing)]
