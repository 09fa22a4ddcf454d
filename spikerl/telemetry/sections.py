"""The `logger` config section: its keys and the rules on its values. Kept apart from the writers, which
need torch, so that spikerl.config answers a mistake in it before torch is imported (the `energy` section
lives with its meter, spikerl/telemetry/energy.py, which imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

LOGGER_KINDS = ("wandb", "tensorboard", "jsonl", "none")  # wandb and tensorboard write the JSON lines too
WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class LoggerConfig:
    """The `logger` config section (spikerl/telemetry/metrics.py)."""

    kind: str = "wandb"
    mode: str = "offline"  # W&B: offline (no network, no key; `wandb sync` later) | online | disabled
    project: str = "spikerl"
    entity: Optional[str] = None  # noqa: UP045 (OmegaConf needs typing.Optional)

    CHOICES = {"kind": LOGGER_KINDS, "mode": WANDB_MODES}
