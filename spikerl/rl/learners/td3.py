"""TD3 (Fujimoto et al., 2018) with PopSAN's published settings: clipped double-Q with target policy
smoothing, a delayed actor and soft target updates. The losses are pure functions of their networks
and a batch; the shell (base.py) runs them."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...runtime.precision import Precision
from ..replay import Batch
from .base import Learner, check_non_negative, q_ensemble_loss


@torch.no_grad()
def td_target(batch: Batch, noise: torch.Tensor, actor_target: nn.Module, critic_target: nn.Module, gamma: float,
              noise_clip: float, precision: Precision) -> torch.Tensor:
    """r + gamma * (1 - terminated) * min_i Q_i'(s', clip(pi'(s') + clip(noise), -1, 1)), with `noise`
    drawn by the caller (N(0, target_noise^2) per action): drawn outside, so a compiled update consumes
    the same random numbers as an eager one. With one Q-network and no noise this is DDPG's target.

    Only `terminated` stops the bootstrap: a time-limit truncation keeps it. The target is fp32 even
    when the networks run under autocast."""
    with precision.autocast():
        next_act = actor_target(batch.next_obs).float()
    next_act = (next_act + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)
    with precision.autocast():
        next_q = critic_target(batch.next_obs, next_act).float().min(0).values
    return batch.rew + gamma * (1.0 - batch.terminated) * next_q


def critic_loss(critic: nn.Module, actor_target: nn.Module, critic_target: nn.Module, batch: Batch,
                noise: torch.Tensor, gamma: float, noise_clip: float, precision: Precision):
    """The critic step's forward: the TD target and every Q-network's squared error (one compiled graph)."""
    target = td_target(batch, noise, actor_target, critic_target, gamma, noise_clip, precision)
    return q_ensemble_loss(critic, batch, target, precision)


def actor_loss(actor: nn.Module, critic: nn.Module, obs: torch.Tensor, precision: Precision):
    """-Q1(s, pi(s)), the actor step's forward (one compiled graph). The shell calls it with the critic
    frozen, so gradients reach the actor only, through the critic's input."""
    with precision.autocast():
        q = critic.q1_value(obs, actor(obs))
    return -q.float().mean(), {}


class TD3(Learner):
    name = "td3"
    num_q = 2
    critic_loss = critic_loss
    actor_loss = actor_loss

    def __init__(self, actor: nn.Module, critic: nn.Module, obs_dim: int, act_dim: int, *, gamma: float,
                 polyak: float, actor_lr: float, critic_lr: float, policy_delay: int, act_noise: float,
                 target_noise: float, noise_clip: float, shared_noise: bool = False, target: str = "polyak",
                 proxy: Mapping | None = None, **runtime):
        """`shared_noise`: one exploration noise draw for all of an action's dimensions, and one target
        smoothing draw for the whole batch (DSRL's src/td3_agent.py); else one per number (TD3's).
        `target`: where the TD target's next action comes from, `polyak` (a soft-updated copy of the
        actor) or `proxy` (Proxy Target's regressed MLP, with the `proxy` settings): spikerl/rl/targets.py."""
        check_non_negative(act_noise=act_noise, target_noise=target_noise, noise_clip=noise_clip)
        super().__init__(actor, critic, obs_dim, act_dim, gamma=gamma, polyak=polyak, actor_lr=actor_lr,
                         critic_lr=critic_lr, policy_delay=policy_delay, target=target,
                         target_settings={"proxy": proxy}, **runtime)
        self.act_noise, self.target_noise, self.noise_clip = act_noise, target_noise, noise_clip
        self.shared_noise = bool(shared_noise)

    def critic_inputs(self, batch: Batch) -> dict:
        act = batch.act
        draw = torch.randn((1, 1), device=act.device, dtype=act.dtype).expand_as(act) if self.shared_noise \
            else torch.randn_like(act)
        noise = draw * self.target_noise if self.target_noise else torch.zeros_like(act)
        return {"critic": self.critic, "actor_target": self.actor_target, "critic_target": self.critic_target,
                "batch": batch, "noise": noise, "gamma": self.gamma, "noise_clip": self.noise_clip,
                "precision": self.precision}

    def actor_inputs(self, batch: Batch) -> dict:
        return {"actor": self.policy, "critic": self.critic, "obs": batch.obs, "precision": self.precision}
