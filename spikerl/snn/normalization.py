"""Normalisation between a layer's synapses and its neurons: CaRe-BN (xuzijie32/CaRe-BN,
continuous_control/care_bn.py, `BatchNorm`; ICLR 2026), batch normalisation whose moving statistics
are made accurate for online RL.

Each feature of a layer's input current [T, B, N] is normalised, y = gamma (x - mean) / sqrt(var + eps)
+ beta (gamma and beta start at threshold / 2 = 0.25), with

- where gradients are computed through the layer (the actor's loss): the statistics of the batch, over
  its B samples and T steps; and then, without gradient, a confidence-adaptive update of the moving
  statistics, a Kalman gain per feature:

      d = batch - moving;  P = m P + (1 - m) d^2;  K = P / (P + R);  moving = moving + K d

  with m = `momentum` (0.8), R = var / 255 for the mean and 2 var^2 / 255 for the variance (the
  published 255, a batch of 256 less one, is `noise_dof`);
- everywhere else (acting, target actions, evaluation): the moving statistics;
- during a recalibration (`recalibrating`): the pooled statistics of every batch seen so far in it; at
  its last batch they become the moving statistics (`SpikingActor.recalibrate`, which the training loop
  calls every `recalibrate_every` env steps on `recalibration_batches` replay batches).

The moving statistics are parameters without gradient, as published, so that the target network's
copy follows the online one by the soft update like every other weight.
"""

from __future__ import annotations

import torch
from torch import nn


def pool(mean: torch.Tensor, var: torch.Tensor, count: float, new_mean: torch.Tensor, new_var: torch.Tensor,
         new_count: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and (population) variance of two groups pooled, given each group's (care_bn.py,
    `batch_norm_update`, in the same operations)."""
    total = count + new_count
    var = count / total * var + new_count / total * new_var + count * new_count / total / total * (mean - new_mean) ** 2
    mean = count / total * mean + new_count / total * new_mean
    return mean, var


class CareBN(nn.Module):
    """CaRe-BN for a layer of `num_features` neurons (see the module docstring)."""

    def __init__(self, num_features: int, threshold: float = 0.5, momentum: float = 0.8, noise_dof: float = 255.0,
                 eps: float = 1e-5, recalibrate_every: int = 5000, recalibration_batches: int = 100,
                 recalibration_batch_size: int = 256):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"normalization momentum must be in [0, 1), got {momentum}")
        self.momentum, self.noise_dof, self.eps = float(momentum), float(noise_dof), float(eps)
        self.recalibrate_every, self.recalibration_batches = int(recalibrate_every), int(recalibration_batches)
        self.recalibration_batch_size = int(recalibration_batch_size)
        self.gamma = nn.Parameter(torch.full((num_features,), threshold / 2.0))
        self.beta = nn.Parameter(torch.full((num_features,), threshold / 2.0))
        self.moving_mean = nn.Parameter(torch.zeros(num_features), requires_grad=False)
        self.moving_var = nn.Parameter(torch.ones(num_features), requires_grad=False)
        # the gains' running squared errors; kept in checkpoints (the published code does not keep them)
        self.register_buffer("p_mean", torch.zeros(num_features))
        self.register_buffer("p_var", torch.zeros(num_features))
        self.recalibrating: tuple[int, int] | None = None  # (batch index, batches) during a recalibration
        self.pooled: tuple[torch.Tensor, torch.Tensor] | None = None

    def normalise(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return self.gamma * ((x - mean) / torch.sqrt(var + self.eps)) + self.beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [T, B, N] -> the same, normalised."""
        if self.recalibrating is not None:
            return self.recalibrate(x)
        if not torch.is_grad_enabled():
            return self.normalise(x, self.moving_mean, self.moving_var)
        mean = x.mean((0, 1))
        var = ((x - mean) ** 2).mean((0, 1))
        with torch.no_grad():
            self.track(mean, var)
        return self.normalise(x, mean, var)

    def track(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """The moving statistics' Kalman update from a batch's statistics."""
        d_mean, d_var = mean - self.moving_mean, var - self.moving_var
        self.p_mean.mul_(self.momentum).add_((1.0 - self.momentum) * d_mean**2)
        self.p_var.mul_(self.momentum).add_((1.0 - self.momentum) * d_var**2)
        gain_mean = self.p_mean / (self.p_mean + var / self.noise_dof)
        gain_var = self.p_var / (self.p_var + 2.0 * var**2 / self.noise_dof)
        self.moving_mean.add_(gain_mean * d_mean)
        self.moving_var.add_(gain_var * d_var)

    @torch.no_grad()
    def recalibrate(self, x: torch.Tensor) -> torch.Tensor:
        index, batches = self.recalibrating
        steps = x.shape[0]
        if index == 0 or self.pooled is None:
            self.pooled = (torch.zeros_like(self.moving_mean), torch.zeros_like(self.moving_var))
        mean, var = self.pooled
        for t in range(steps):  # step by step, each weighted as one group, as published
            xt = x[t]
            step_mean = xt.mean(0)
            mean, var = pool(mean, var, t + index * steps, step_mean, ((xt - step_mean) ** 2).mean(0))
        self.pooled = (mean, var)
        if index == batches - 1:
            self.moving_mean.copy_(mean)
            self.moving_var.copy_(var)
            self.pooled = None
        return self.normalise(x, mean, var)

    def extra_repr(self) -> str:
        return (f"{self.gamma.numel()}, momentum={self.momentum}, noise_dof={self.noise_dof}, "
                f"recalibrate_every={self.recalibrate_every}")
