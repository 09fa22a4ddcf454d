"""Where the critic's target action comes from: `algo.target`, a learner option of every algorithm that
keeps a target actor (TD3, DDPG; SAC samples its own and keeps none).

- `polyak` (TD3's): a frozen copy of the actor, Polyak-averaged with the critic's target.
- `proxy` (Proxy Target, Xu et al., NeurIPS 2025; madao2333/Proxy-Target-with-PLIF at b389797,
  actor_critic.py `PT_TD3`): a separate ReLU MLP with a tanh output, regressed onto the actor's
  deterministic actions before every update, `iters` Adam steps, each on a fresh replay batch; the
  critic's step and the actor's then take the last of those batches. The proxy is not averaged; only
  the critic's target is. A smooth network follows a spiking actor's discrete output better than a
  slowly averaged copy of it, which is the paper's point.

A target is built by the learner (`make_target`) and gives it: `network` (the module the TD target's
next action comes from), `batches_per_update` (replay batches an update takes: the schedule samples
them), `fit` (its own learning, before the critic's step), `soft_pairs` (what Polyak averaging moves),
and what a checkpoint keeps (`networks`, `optimizers`). A new kind is a class here with those, an
entry in TARGETS, its keys in conf/algo/ and its tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .learners.base import HyperparameterError, adam, check_positive, frozen_copy
from .networks import MLPActor
from .replay import Batch


def proxy_loss(proxy: nn.Module, actor: nn.Module, obs: torch.Tensor, precision):
    """The proxy's regression onto the actor's deterministic actions: mean squared error (one compiled
    graph). The actor is only read: the published loss also back-propagates into it, a gradient its
    own step clears before use (the same proxy gradients, weights and losses, at about 40 % of a
    spiking update's cost)."""
    with torch.no_grad(), precision.autocast():
        act = actor(obs).float()
    with precision.autocast():
        guess = proxy(obs).float()
    return F.mse_loss(act, guess), {}


class PolyakTarget:
    """TD3's target actor: a frozen copy of the actor, moved by the shell's soft update."""

    name: ClassVar[str] = "polyak"
    settings_key: ClassVar[str | None] = None  # the algo key holding its settings: none
    batches_per_update = 1

    def __init__(self, learner, actor: nn.Module, obs_dim: int, act_dim: int):
        self.actor, self.network = actor, frozen_copy(actor)

    def fit(self, batches: Sequence[Batch]) -> tuple[dict, torch.Tensor | None]:
        return {}, None

    def soft_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.actor, self.network)]

    def networks(self) -> dict[str, nn.Module]:
        return {"actor_target": self.network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}


class ProxyTarget:
    """Proxy Target's MLP (`hidden_sizes`, ReLU, tanh output; Adam at `lr`), fitted `iters` times per
    update. Its published defaults: 512 x 512, 1e-3, 3 (its README's cheaper setting: 1 at 3e-3)."""

    name: ClassVar[str] = "proxy"
    settings_key: ClassVar[str | None] = "proxy"

    def __init__(self, learner, actor: nn.Module, obs_dim: int, act_dim: int, *,
                 hidden_sizes: Sequence[int] = (512, 512), lr: float = 1e-3, iters: int = 3):
        check_positive(**{"proxy.lr": lr})
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise HyperparameterError("proxy.iters", f"must be a positive integer, got {iters!r}")
        sizes = list(hidden_sizes)
        if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
            raise HyperparameterError("proxy.hidden_sizes", f"must list positive integers, got {hidden_sizes!r}")
        self.learner, self.actor = learner, actor
        device = next(actor.parameters()).device
        self.network = MLPActor(obs_dim, act_dim, sizes).to(device)  # its own initialisation, as published
        if learner.sync is not None:
            learner.sync.broadcast(self.network)
        self.batches_per_update = iters
        self.optimizer = adam([(self.network, lr)])
        self.objective = learner.compiled_objective(proxy_loss)

    def fit(self, batches: Sequence[Batch]) -> tuple[dict, torch.Tensor]:
        """One regression step per batch, in order; returns ({"loss/proxy": mean loss}, skipped)."""
        learner, total, skipped = self.learner, 0.0, None
        for batch in batches:
            if learner.cuda_graphs:  # each step replays the graph: the last replay's outputs are read already
                torch.compiler.cudagraph_mark_step_begin()
            loss, _ = self.objective(proxy=self.network, actor=learner.actor, obs=batch.obs,
                                     precision=learner.precision)
            step = learner.precision.step(loss, self.optimizer, learner.sync)
            skipped = step if skipped is None else torch.maximum(skipped, step)
            total = total + loss.detach()
        return {"loss/proxy": total / len(batches)}, skipped

    def soft_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return []

    def networks(self) -> dict[str, nn.Module]:
        return {"proxy": self.network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"proxy_opt": self.optimizer}


TARGETS = {cls.name: cls for cls in (PolyakTarget, ProxyTarget)}


def make_target(learner, kind: str, settings: Mapping[str, Mapping | None], actor: nn.Module, obs_dim: int,
                act_dim: int):
    """The target `kind` names, built with its own settings (`settings[cls.settings_key]`; a key it does not
    take is refused by name)."""
    if kind not in TARGETS:
        raise HyperparameterError("target", f"must be one of {', '.join(TARGETS)}, got {kind!r}")
    cls = TARGETS[kind]
    own = dict(settings.get(cls.settings_key) or {}) if cls.settings_key else {}
    known = [p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(own) - set(known))
    if unknown:
        raise HyperparameterError(f"{cls.settings_key}.{unknown[0]}",
                                  f"is not a setting of the {kind} target (its settings: {', '.join(known)})")
    return cls(learner, actor, obs_dim, act_dim, **own)
