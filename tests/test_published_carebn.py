"""CaRe-BN side by side with its published code (xuzijie32/CaRe-BN at 6be027d: `continuous_control/care_bn.py`,
`SAN.py`, `actor_critic.py`, `main.py`).

- `published`: the published `SNN_Actor` (dynamic neurons, CaRe-BN) and `BatchNorm` themselves. They need a
  checkout of the published repository (not part of SpikeRL, not installed by it):
  `SPIKERL_CAREBN_REPO=/path/to/CaRe-BN make test` runs them; without one they are skipped.
- `restated`: the published `BatchNorm` written out below with the line numbers it comes from; it runs
  everywhere, CI included.

The same weights and inputs must give the same outputs, gradients and moving statistics through a
sequence of what training does to the layer: moving-statistics passes (acting, targets), update passes
(the actor's loss: batch statistics, then the Kalman update), and a recalibration over several batches.
"""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reference import import_published, relative_error
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder
from spikerl.snn.normalization import CareBN

REPO = os.environ.get("SPIKERL_CAREBN_REPO")
needs_repo = pytest.mark.skipif(not REPO, reason="set SPIKERL_CAREBN_REPO to a checkout of xuzijie32/CaRe-BN")
REFERENCES = ["restated", pytest.param("published", marks=needs_repo)]
T, B, N = 5, 32, 24
OBS, ACT = 17, 6


def published_module(name: str):
    return import_published(Path(REPO) / "CaRe-BN" / "continuous_control", name)


# ---- the published layer, restated --------------------------------------------------------------------

def restated_pool(x, mean, var, num1, num2):
    """care_bn.py 11-22 (`batch_norm_update`, 2-D input): the batch's mean and variance pooled into
    (mean, var) with weights num1 : num2."""
    m = x.mean(dim=0)
    v = ((x - m) ** 2).mean(dim=0)
    var = num1 / (num1 + num2) * var + num2 / (num1 + num2) * v + num1 * num2 / (num1 + num2) / (num1 + num2) * (
        mean - m) ** 2
    mean = num1 / (num1 + num2) * mean + num2 / (num1 + num2) * m
    return mean, var


class RestatedBN(nn.Module):
    """care_bn.py 24-120 (`BatchNorm`, 2-D features, input [B, N, T])."""

    def __init__(self, n, momentum=0.8):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((1, n), 0.25))  # 34-35: NEURON_VTH / 2
        self.beta = nn.Parameter(torch.full((1, n), 0.25))
        self.moving_mean, self.moving_var = torch.zeros(1, n), torch.ones(1, n)  # 37-38
        self.temp_mean, self.temp_var = torch.zeros(1, n), torch.ones(1, n)
        self.p_mean, self.p_var = torch.zeros(1, n), torch.zeros(1, n)
        self.momentum, self.eps = momentum, 1e-5

    def out(self, x, mean, var):
        return torch.stack([self.gamma * (x[:, :, t] - mean) / torch.sqrt(var + self.eps) + self.beta
                            for t in range(T)], dim=2)

    def forward(self, x, update=False, re_calibration=False):
        if re_calibration:  # 67-88
            with torch.no_grad():
                if re_calibration[0] == 0:
                    self.temp_mean, self.temp_var = torch.zeros_like(self.temp_mean), torch.zeros_like(self.temp_var)
                for t in range(T):
                    self.temp_mean, self.temp_var = restated_pool(x[:, :, t], self.temp_mean, self.temp_var,
                                                                  t + re_calibration[0] * T, 1)
                if re_calibration[1] == re_calibration[0] + 1:
                    self.moving_mean, self.moving_var = self.temp_mean, self.temp_var
                return self.out(x, self.temp_mean, self.temp_var)
        if update:  # 90-111: batch statistics (with gradient), then the Kalman update of the moving ones
            mean, var = torch.zeros_like(self.temp_mean), torch.zeros_like(self.temp_var)
            for t in range(T):
                mean, var = restated_pool(x[:, :, t], mean, var, t, 1)
            with torch.no_grad():
                d_mean, d_var = mean - self.moving_mean, var - self.moving_var
                self.p_mean = self.p_mean * self.momentum + (1 - self.momentum) * d_mean**2
                self.p_var = self.p_var * self.momentum + (1 - self.momentum) * d_var**2
                k_mean = self.p_mean / (self.p_mean + var / 255)
                k_var = self.p_var / (self.p_var + 2 * var**2 / 255)
                self.moving_mean = self.moving_mean + k_mean * d_mean
                self.moving_var = self.moving_var + k_var * d_var
            return self.out(x, mean, var)
        return self.out(x, self.moving_mean, self.moving_var)  # 112-118


def reference_layer(reference: str):
    if reference == "restated":
        return RestatedBN(N)
    return published_module("care_bn").BatchNorm(N, T)


def inputs(seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """A layer's input current [T, B, N]: features with their own offsets and spreads."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randn(N, generator=g) * 2 + shift
    return (torch.randn(T, B, N, generator=g) * (0.5 + torch.rand(N, generator=g)) * scale + offsets)


def follow(reference: str, ours: CareBN) -> list[str]:
    """Moving pass, two update passes, a moving pass, a three-batch recalibration, a moving pass through the
    published layer and ours: where outputs, input gradients or moving statistics differ."""
    theirs = reference_layer(reference)
    probe = torch.randn(T, B, N, generator=torch.Generator().manual_seed(9))
    plan = ["moving", "update", "update", "moving", ("recal", 0, 3), ("recal", 1, 3), ("recal", 2, 3), "moving"]
    problems = []
    for i, stage in enumerate(plan):
        x = inputs(i, scale=1.0 + 0.3 * i, shift=0.2 * i).requires_grad_()
        x_theirs = x.detach().permute(1, 2, 0).clone().requires_grad_()  # [B, N, T], as published
        kwargs = {"update": stage == "update", "re_calibration": False}
        if isinstance(stage, tuple):
            kwargs["re_calibration"] = [stage[1], stage[2]]
            ours.recalibrating = (stage[1], stage[2])
        with torch.set_grad_enabled(stage == "update"):
            y_theirs = theirs(x_theirs, **kwargs).permute(2, 0, 1)
            y_ours = ours(x)
        ours.recalibrating = None
        if not torch.allclose(y_ours, y_theirs, atol=1e-5, rtol=1e-5):
            problems.append(f"{stage}: output")
        if stage == "update":
            (y_theirs * probe).sum().backward()
            (y_ours * probe).sum().backward()
            if not torch.allclose(x.grad, x_theirs.grad.permute(2, 0, 1), atol=1e-5, rtol=1e-4):
                problems.append(f"{stage}: input gradient")
            if not torch.allclose(ours.gamma.grad, theirs.gamma.grad.flatten(), rtol=1e-4, atol=1e-5):
                problems.append(f"{stage}: gamma gradient")
            ours.gamma.grad = theirs.gamma.grad = ours.beta.grad = theirs.beta.grad = None
        for name in ("moving_mean", "moving_var"):
            if not torch.allclose(getattr(ours, name), getattr(theirs, name).detach().flatten(), rtol=1e-5, atol=1e-6):
                problems.append(f"{stage}: {name}")
    return problems


@pytest.mark.parametrize("reference", REFERENCES)
def test_carebn_follows_the_published_layer_through_training(reference):
    ours = CareBN(N)
    assert follow(reference, ours) == []
    assert not torch.equal(ours.moving_mean, torch.zeros(N))  # the sequence moved them


class _MovingInTheLoss(CareBN):
    def forward(self, x):  # the moving statistics in the actor's loss too (a frozen batch norm)
        return super().forward(x) if self.recalibrating else self.normalise(x, self.moving_mean, self.moving_var)


class _NoGain(CareBN):
    def track(self, mean, var):  # the batch's statistics become the moving ones outright
        self.moving_mean.copy_(mean)
        self.moving_var.copy_(var)


class _LastBatchOnly(CareBN):
    def recalibrate(self, x):  # each recalibration batch starts the pooling afresh
        self.pooled = None
        return super().recalibrate(x)


@pytest.mark.parametrize("reverted", [_MovingInTheLoss, _NoGain, _LastBatchOnly, partial(CareBN, momentum=0.9)],
                         ids=["moving statistics in the loss", "no Kalman gain", "last batch only", "momentum 0.9"])
def test_each_published_part_of_carebn_is_needed(reverted):
    assert follow("restated", reverted(N))


def test_the_moving_statistics_follow_the_batch_where_it_is_consistent_and_resist_noise():
    """A Kalman gain: a batch whose mean differs from the moving mean again and again pulls it most of the
    way; the gain is the running squared error over itself plus the statistic's noise."""
    norm = CareBN(1)
    x = torch.full((T, 256, 1), 3.0) + 0.01 * torch.randn(T, 256, 1)
    for _ in range(5):
        with torch.enable_grad():
            norm(x.requires_grad_())
    assert abs(norm.moving_mean.item() - 3.0) < 0.05 and norm.moving_mean.requires_grad is False


def our_actor(**kwargs) -> PopSpikingActor:
    encoder = partial(PopulationEncoder, mean_range=(-1.0, 1.0), std=math.sqrt(0.05), squash="tanh")
    return PopSpikingActor(OBS, ACT, encoder, neuron={"model": "dynamic", "theta_u": -0.529},
                           normalization=CareBN, **kwargs)


def load_published(ours: PopSpikingActor, published) -> None:
    snn = published.snn
    pairs = {"encoder.mean": published.encoder.mean, "encoder.std": published.encoder.std,
             "decoder.weight": published.decoder.decoder.weight, "decoder.bias": published.decoder.decoder.bias}
    norms = [*snn.hidden_norms, snn.out_pop_norm]
    for i, (layer, norm) in enumerate(zip([*snn.hidden_layers, snn.out_pop_layer], norms)):
        pairs[f"snn.linears.{i}.weight"], pairs[f"snn.linears.{i}.bias"] = layer.weight, layer.bias
        pairs[f"snn.norms.{i}.gamma"], pairs[f"snn.norms.{i}.beta"] = norm.gamma, norm.beta
    state = ours.state_dict()
    with torch.no_grad():
        for name, value in pairs.items():
            state[name].copy_(value.detach().reshape(state[name].shape))
    return pairs


@needs_repo
@pytest.mark.parametrize("backend", ["bptt", "snntorch", "bptt-compiled"])
def test_the_actor_computes_the_published_actions_gradients_and_statistics(backend):
    """SNN_Actor(neurons='DN', BN=True) as main.py builds it, and ours as conf/actor/carebn.yaml does: act
    (moving statistics), an actor-loss pass (update), act again, recalibrate over three batches, act."""
    torch.manual_seed(0)
    published = published_module("SAN").SNN_Actor(OBS, ACT, 1.0, "DN", BN=True, device=torch.device("cpu"))
    name, _, compiled = backend.partition("-")
    ours = our_actor(neuron_backend=name, compile=bool(compiled))
    pairs = load_published(ours, published)
    g = torch.Generator().manual_seed(1)
    obs = [torch.randn(64, OBS, generator=g) * 2 for _ in range(6)]
    probe = torch.randn(64, ACT, generator=g)

    def same(a, b, what):
        assert torch.allclose(a, b, atol=1e-5), (what, (a - b).abs().max())

    with torch.no_grad():
        same(ours(obs[0]), published(obs[0]), "acting")
    (ours(obs[1]) * probe).sum().backward()
    (published(obs[1], update=True) * probe).sum().backward()
    ours_params = dict(ours.named_parameters())
    for key, param in pairs.items():
        if key.startswith("snn.linears.") and key.endswith(".bias"):  # a bias in front of a batch norm: its
            assert ours_params[key].grad.abs().max() < 1e-5 > param.grad.abs().max()  # gradient is 0, up to rounding
            continue
        assert relative_error(param.grad, ours_params[key].grad) < 1e-4, key
    with torch.no_grad():
        same(ours(obs[2]), published(obs[2]), "acting after an update")
        ours.recalibrate(obs[3:6])
        for i, o in enumerate(obs[3:6]):
            published(o, re_calibration=[i, 3])
        same(ours(obs[0]), published(obs[0]), "acting after a recalibration")
    same(ours.snn.norms[2].moving_var, published.snn.out_pop_norm.moving_var.flatten(), "moving variance")


def test_the_loop_recalibrates_on_replay_batches_when_the_env_steps_cross_the_period():
    from spikerl.rl.normalizer import ObsNormalizer
    from spikerl.rl.replay import ReplayBuffer
    from spikerl.rl.run_state import Tick
    from spikerl.rl.updates import UpdateSchedule

    actor = our_actor(hidden_sizes=(16, 16))
    actor.snn.norms[0].recalibrate_every, actor.snn.norms[0].recalibration_batches = 100, 3
    seen = []
    actor.recalibrate = lambda batches: seen.append([b.shape for b in batches])

    class Learner:
        pass

    learner = Learner()
    learner.actor = actor
    replay = ReplayBuffer(OBS, ACT, 1000)
    rng = np.random.default_rng(0)
    replay.add(rng.normal(size=(150, OBS)), np.zeros((150, ACT)), np.zeros(150), rng.normal(size=(150, OBS)),
               np.zeros(150))
    schedule = UpdateSchedule(learner, replay, ObsNormalizer(OBS, "none"), 8, 1, 1, update_after=0, seed=0)
    assert not schedule.recalibrate(Tick(98, 99, 98, 99, False))
    assert schedule.recalibrate(Tick(99, 100, 99, 100, False))
    assert seen == [[torch.Size([256, OBS])] * 3]
    learner.actor = PopSpikingActor(OBS, ACT, PopulationEncoder, hidden_sizes=(8,))  # no normalisation layers
    assert not schedule.recalibrate(Tick(199, 200, 199, 200, False))
