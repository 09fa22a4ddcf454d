"""SAC (Haarnoja et al., 2018) as PopSAN ships it (popsan_drl/popsan_sac): the actor's output before its
tanh is the mean of a Gaussian whose log std a separate ReLU MLP gives from the same observation
(clamped to [log_std_min, log_std_max]); actions are tanh-squashed samples; a fixed entropy
coefficient alpha; two Q-networks whose minimum both losses use; the TD target's next action is
sampled from the current policy (SAC keeps no target actor); an actor step and soft target updates at
every iteration. The mean network learns at `actor_lr`, the log-std network at `log_std_lr`.

The deterministic action, tanh of the mean, is the actor's own forward: what evaluation runs, and
what a checkpoint's actor (and so `evaluate` and `export`) holds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...runtime.precision import Precision
from ..networks import mlp
from ..replay import Batch
from .base import HyperparameterError, Learner, check_non_negative, check_positive, q_ensemble_loss

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussianPolicy(nn.Module):
    """The actor's output before its tanh (the mean) and the log-std network's output, from the same
    normalised observation, as one module."""

    def __init__(self, actor: nn.Module, log_std_net: nn.Module):
        super().__init__()
        self.actor, self.log_std_net = actor, log_std_net

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor.unsquashed(obs), self.log_std_net(obs)


def gaussian_head(policy: nn.Module, obs: torch.Tensor, precision: Precision, log_std_min: float,
                  log_std_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's mean and clamped log std, fp32."""
    with precision.autocast():
        mean, log_std = policy(obs)
    return mean.float(), log_std.float().clamp(log_std_min, log_std_max)


def squashed_sample(mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh(u), u = mean + std * eps (reparameterised), and log pi(tanh(u)): the Gaussian's log density
    of u less the tanh's log-Jacobian, log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) (stable form)."""
    u = mean + log_std.exp() * eps
    log_prob = (-0.5 * eps.pow(2) - log_std - LOG_SQRT_2PI).sum(-1)
    log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_prob


def critic_loss(critic: nn.Module, policy: nn.Module, critic_target: nn.Module, batch: Batch, eps: torch.Tensor,
                gamma: float, alpha: float, precision: Precision, log_std_min: float, log_std_max: float):
    """The critic step's forward (one compiled graph): every Q-network's squared error against the soft
    TD target r + gamma (1 - terminated) (min_i Q_i'(s', a') - alpha log pi(a'|s')), a' sampled from
    the current policy with the caller's `eps` (drawn outside, so compiled and eager draw alike)."""
    with torch.no_grad():
        next_act, next_log_prob = squashed_sample(
            *gaussian_head(policy, batch.next_obs, precision, log_std_min, log_std_max), eps)
        with precision.autocast():
            next_q = critic_target(batch.next_obs, next_act).float().min(0).values
        target = batch.rew + gamma * (1.0 - batch.terminated) * (next_q - alpha * next_log_prob)
    return q_ensemble_loss(critic, batch, target, precision)


def actor_loss(policy: nn.Module, critic: nn.Module, obs: torch.Tensor, eps: torch.Tensor, alpha: float,
               precision: Precision, log_std_min: float, log_std_max: float):
    """alpha log pi(a|s) - min_i Q_i(s, a), a = the reparameterised sample (one compiled graph). The shell
    calls it with the critic frozen."""
    act, log_prob = squashed_sample(*gaussian_head(policy, obs, precision, log_std_min, log_std_max), eps)
    with precision.autocast():
        q = critic(obs, act).float().min(0).values
    return (alpha * log_prob - q).mean(), {"train/log_prob": log_prob.detach().mean()}


class SAC(Learner):
    name = "sac"
    num_q = 2
    uses_actor_target = False
    critic_loss = critic_loss
    actor_loss = actor_loss

    def __init__(self, actor: nn.Module, critic: nn.Module, obs_dim: int, act_dim: int, *, gamma: float,
                 polyak: float, actor_lr: float, critic_lr: float, alpha: float, log_std_lr: float,
                 log_std_hidden_sizes: Sequence[int] = (256, 256), log_std_min: float = -20.0,
                 log_std_max: float = 2.0, shared_noise: bool = False, **runtime):
        """`shared_noise` is TD3's and DDPG's (one exploration draw for all of an action's dimensions):
        SAC samples its own exploration, so it is refused rather than ignored (a preset that sets it,
        DSRL's, trains with SAC once it is set false)."""
        if shared_noise:
            raise HyperparameterError("shared_noise", "is a TD3/DDPG exploration setting (DSRL's); SAC samples its "
                                                      "own exploration: set algo.shared_noise=false to train with SAC")
        check_non_negative(alpha=alpha)
        check_positive(log_std_lr=log_std_lr)
        if not log_std_min < log_std_max:
            raise HyperparameterError("log_std_min", f"must be below log_std_max ({log_std_max}), got {log_std_min}")
        if not hasattr(actor, "unsquashed"):
            raise HyperparameterError("actor", f"{type(actor).__name__} has no `unsquashed` output for SAC's mean")
        log_std_net = mlp([obs_dim, *log_std_hidden_sizes, act_dim]).to(next(actor.parameters()).device)
        super().__init__(actor, critic, obs_dim, act_dim, gamma=gamma, polyak=polyak, actor_lr=actor_lr,
                         critic_lr=critic_lr, policy=GaussianPolicy(actor, log_std_net),
                         policy_extras={"log_std": (log_std_net, log_std_lr)}, **runtime)
        self.alpha, self.bounds = alpha, {"log_std_min": log_std_min, "log_std_max": log_std_max}
        self.explore_head = self.compiled_acting(gaussian_head)

    def critic_inputs(self, batch: Batch) -> dict:
        return {"critic": self.critic, "policy": self.policy, "critic_target": self.critic_target, "batch": batch,
                "eps": torch.randn_like(batch.act), "gamma": self.gamma, "alpha": self.alpha,
                "precision": self.precision, **self.bounds}

    def actor_inputs(self, batch: Batch) -> dict:
        return {"policy": self.policy, "critic": self.critic, "obs": batch.obs, "eps": torch.randn_like(batch.act),
                "alpha": self.alpha, "precision": self.precision, **self.bounds}

    @torch.no_grad()
    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """A sample of the squashed Gaussian policy (the collector adds no noise of its own)."""
        mean, log_std = self.explore_head(self.policy, obs, self.precision, **self.bounds)
        return torch.tanh(mean + log_std.exp() * torch.randn_like(mean))  # squashed_sample's action, no log pi
