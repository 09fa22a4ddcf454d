"""The `train`, `replay`, `normalizer` and `env` config sections: their keys and the rules on their values.
Kept apart from the code that uses them, which needs torch, so that spikerl.config answers a mistake in
them before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

NORMALIZER_KINDS = ("zscore", "maxabs", "none")


@dataclass
class TrainConfig:
    """The `train` config section (spikerl/rl/loop.py). Step counts are global env steps (summed over ranks)."""

    total_steps: int
    start_steps: int  # random actions (`start_actions`) before the actor acts
    update_after: int  # no gradient updates before this many env steps
    eval_every: int
    eval_episodes: int
    checkpoint_every: int
    log_every: int
    batch_size: int  # replay samples per update (per rank)
    update_every: int  # every update_every env steps of a rank ...
    gradient_steps: int  # ... this many updates
    progress: bool = True
    save_replay: bool = False  # put the replay buffer in checkpoints/last.pt (exact resume)
    keep_best: bool = True  # also keep checkpoints/best.pt, the actor with the best evaluation
    start_actions: str = "uniform"  # uniform over the action box | normal: N(0, start_action_std) + exploration noise
    start_action_std: float = 0.1

    CHOICES = {"start_actions": ("uniform", "normal")}
    POSITIVE = ("total_steps", "eval_episodes", "batch_size", "update_every", "start_action_std")
    NON_NEGATIVE = ("start_steps", "update_after", "eval_every", "checkpoint_every", "log_every", "gradient_steps")


@dataclass
class ReplayConfig:
    """The `replay` config section (spikerl/rl/replay.py)."""

    size: int  # transitions kept per rank

    POSITIVE = ("size",)


@dataclass
class NormalizerConfig:
    """The `normalizer` config section (spikerl/rl/normalizer.py)."""

    kind: str = "zscore"
    clip: float = 3.0  # zscore: clip to +-clip

    CHOICES = {"kind": NORMALIZER_KINDS}
    POSITIVE = ("clip",)


@dataclass
class EnvConfig:
    """The `env` config section (spikerl/rl/envs.py): which gymnasium task, and how many copies each rank steps."""

    name: str  # short name used in run folders and comparisons
    id: str  # gymnasium task id
    num_envs: int = 1  # vector-env copies per rank
    max_episode_steps: Optional[int] = None  # noqa: UP045 (OmegaConf needs typing.Optional); None: the task's limit

    POSITIVE = ("num_envs",)
