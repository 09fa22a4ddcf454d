"""TD3: gradient isolation between the losses, the TD target, delays and target updates."""

import pytest
import torch

from spikerl.rl.networks import MLPActor, TwinQ
from spikerl.rl.replay import Batch
from spikerl.rl.td3 import TD3, actor_loss, critic_loss, td_target
from spikerl.runtime.precision import Precision
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder

OBS, ACT = 4, 2


def make_batch(n=16, terminated=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, OBS, generator=g),
        act=torch.rand(n, ACT, generator=g) * 2 - 1,
        rew=torch.randn(n, generator=g),
        next_obs=torch.randn(n, OBS, generator=g),
        terminated=torch.zeros(n) if terminated is None else terminated,
    )


def make_learner(spiking=True, **overrides):
    torch.manual_seed(0)
    actor = (PopSpikingActor(OBS, ACT, encoder=PopulationEncoder, hidden_sizes=(32, 32)) if spiking
             else MLPActor(OBS, ACT, hidden_sizes=(32, 32)))
    kwargs = dict(actor_lr=1e-3, critic_lr=1e-3, gamma=0.99, polyak=0.995, policy_delay=2,
                  target_noise=0.2, noise_clip=0.5)
    kwargs.update(overrides)
    return TD3(actor, TwinQ(OBS, ACT, hidden_sizes=(32, 32)), **kwargs)


@pytest.mark.parametrize("spiking", [True, False])
def test_actor_loss_leaves_critic_gradients_untouched(spiking):
    td3 = make_learner(spiking)
    loss = actor_loss(td3.actor, td3.critic, make_batch().obs, Precision())
    loss.backward()
    assert all(p.grad is None for p in td3.critic.parameters())
    assert sum(p.grad.abs().sum() for p in td3.actor.parameters() if p.grad is not None) > 0
    assert all(p.requires_grad for p in td3.critic.parameters())  # unfrozen again afterwards


@pytest.mark.parametrize("spiking", [True, False])
def test_critic_loss_does_not_touch_the_actor(spiking):
    td3 = make_learner(spiking)
    batch = make_batch()
    noise = torch.randn_like(batch.act) * 0.2
    target = td_target(batch, noise, td3.actor_target, td3.critic_target, 0.99, 0.5, Precision())
    loss, _ = critic_loss(td3.critic, batch, target, Precision())
    loss.backward()
    assert all(p.grad is None for p in td3.actor.parameters())
    assert all(p.grad is not None for p in td3.critic.parameters())


def constant_critic(q1: float, q2: float) -> TwinQ:
    critic = TwinQ(OBS, ACT, hidden_sizes=(8,))
    with torch.no_grad():
        for net, value in ((critic.q1, q1), (critic.q2, q2)):
            net[-1].weight.zero_()
            net[-1].bias.fill_(value)
    return critic


def test_td_target_bootstraps_on_truncation_but_not_on_termination():
    terminated = torch.tensor([1.0, 0.0, 0.0])
    batch = make_batch(3, terminated=terminated)
    actor = MLPActor(OBS, ACT, hidden_sizes=(8,))
    noise = torch.randn_like(batch.act) * 0.2
    target = td_target(batch, noise, actor, constant_critic(5.0, 3.0), 0.9, 0.5, Precision())
    # clipped double-Q: min(5, 3) = 3; the terminated transition gets the reward alone. A time-limit
    # truncation is stored with terminated = 0, so it bootstraps like any other step.
    expected = batch.rew + 0.9 * torch.tensor([0.0, 3.0, 3.0])
    torch.testing.assert_close(target, expected)


def test_target_policy_smoothing_noise_is_clipped():
    torch.manual_seed(0)
    batch = make_batch(512)
    actor = MLPActor(OBS, ACT, hidden_sizes=(8,))
    seen = []

    class Recorder(TwinQ):
        def forward(self, obs, act):
            seen.append(act)
            return super().forward(obs, act)

    critic = Recorder(OBS, ACT, hidden_sizes=(8,))
    noise = torch.randn_like(batch.act) * 10.0  # target_noise 10: most draws are beyond the clip
    td_target(batch, noise, actor, critic, 0.99, noise_clip=0.5, precision=Precision())
    with torch.no_grad():
        clean = actor(batch.next_obs)
    delta = seen[0] - clean
    inside = (clean.abs() < 0.5).all(-1)  # away from the [-1, 1] clamp
    assert delta[inside].abs().max() == pytest.approx(0.5)


def test_policy_delay_and_soft_target_updates():
    td3 = make_learner(spiking=False, polyak=0.9)
    actor_before = [p.clone() for p in td3.actor.parameters()]
    target_before = [p.clone() for p in td3.actor_target.parameters()]
    m1 = td3.update(make_batch(seed=1))
    assert "loss/actor" not in m1  # first iteration: critic only
    assert all(torch.equal(a, b) for a, b in zip(actor_before, td3.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, td3.actor_target.parameters()))
    m2 = td3.update(make_batch(seed=2))
    assert "loss/actor" in m2
    for old_target, target, online in zip(target_before, td3.actor_target.parameters(), td3.actor.parameters()):
        torch.testing.assert_close(target, 0.9 * old_target + 0.1 * online)
    assert td3.updates == 2


def test_targets_are_frozen_copies():
    td3 = make_learner()
    for online, target in ((td3.actor, td3.actor_target), (td3.critic, td3.critic_target)):
        assert online is not target
        assert all(not p.requires_grad for p in target.parameters())
        for a, b in zip(online.parameters(), target.parameters()):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_update_reduces_critic_loss_on_a_fixed_batch():
    td3 = make_learner(spiking=False, gamma=0.0)  # the target is the reward: a plain regression
    batch = make_batch(64)
    losses = [td3.update(batch)["loss/critic"].item() for _ in range(200)]
    assert losses[-1] < 0.5 * losses[0]


def test_optimizers_use_the_fused_adam_kernel_and_fall_back_without_it(monkeypatch):
    from spikerl.rl.td3 import adam

    assert adam(torch.nn.Linear(3, 2).parameters(), 1e-3).defaults["fused"] is True  # CPU, torch >= 2.4
    real = torch.optim.Adam

    def no_fused(params, lr, fused=None):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(params, lr=lr)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    opt = adam(torch.nn.Linear(3, 2).parameters(), 1e-3)
    assert not opt.defaults.get("fused") and len(opt.param_groups[0]["params"]) == 2


def learner_pair(actor_factory, **overrides):
    """An eager and a compiled learner from the same initial weights."""
    learners = []
    for compiled in (False, True):
        torch.manual_seed(0)
        kwargs = dict(actor_lr=1e-3, critic_lr=1e-3, gamma=0.99, polyak=0.995, policy_delay=2,
                      target_noise=0.2, noise_clip=0.5, compile=compiled)
        learners.append(TD3(actor_factory(), TwinQ(OBS, ACT, hidden_sizes=(32, 32)), **{**kwargs, **overrides}))
    return learners


@pytest.mark.parametrize("actor", ["popsan", "dsrl", "mlp"])
def test_compiled_update_equals_the_eager_one(actor):
    """The whole update compiled (both steps' forward and backward graphs, the bptt kernels traced
    into them) computes what the eager update computes: same losses, same weights after a critic-only
    and an actor update, up to float rounding."""
    from spikerl.snn.actors import DSRLSpikingActor
    from spikerl.snn.encoders import TwoNeuronEncoder

    factories = {
        "popsan": lambda: PopSpikingActor(OBS, ACT, encoder=PopulationEncoder, hidden_sizes=(32, 32), compile=True),
        "dsrl": lambda: DSRLSpikingActor(OBS, ACT, encoder=TwoNeuronEncoder, hidden_sizes=(32, 32), compile=True),
        "mlp": lambda: MLPActor(OBS, ACT, hidden_sizes=(32, 32)),
    }
    eager, compiled = learner_pair(factories[actor])
    for seed in (1, 2, 3, 4):
        results = []
        for learner in (eager, compiled):
            torch.manual_seed(seed)  # the same target-smoothing noise
            results.append(learner.update(make_batch(seed=seed)))
        assert results[0].keys() == results[1].keys()
        for key in results[0]:
            torch.testing.assert_close(results[1][key], results[0][key], rtol=1e-4, atol=1e-5)
    assert compiled.critic_objective.failed is None and compiled.actor_objective.failed is None
    for a, b in ((eager.actor, compiled.actor), (eager.critic, compiled.critic),
                 (eager.actor_target, compiled.actor_target)):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("compiled", [False, True])
def test_an_update_never_reads_a_value_back_to_the_host(compiled, monkeypatch):
    """No tensor value is read on the host inside an update (`.item()`, `bool()`, `float()`, `int()`,
    `.tolist()`: on a GPU each waits for the device): the non-finite check, the skip decision and the
    skip counters stay on the device, and the metrics are tensors read when they are logged. (On a GPU,
    tests/test_gpu.py runs an update under CUDA's sync-debug mode, which also sees syncs inside torch.)"""
    learner = learner_pair(lambda: PopSpikingActor(OBS, ACT, encoder=PopulationEncoder, hidden_sizes=(32, 32),
                                                   compile=compiled))[compiled]
    learner.update(make_batch(seed=1)), learner.update(make_batch(seed=2))  # compiles, outside the count
    bad = make_batch(seed=3)
    bad.rew[0] = float("nan")
    reads = []
    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, _name=name: reads.append(_name)
                            or _real(self, *a))
    for batch in (make_batch(seed=4), bad, bad, make_batch(seed=5)):
        metrics = learner.update(batch)
    assert reads == []
    monkeypatch.undo()
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in metrics.values())
    assert (learner.skipped, learner.consecutive_skips) == (2, 0)
