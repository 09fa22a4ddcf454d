"""The learners (TD3, DDPG, SAC on one shell): gradient isolation between the losses, the TD targets,
delays and target updates, compiled against eager, no host reads, and the saved state."""

import functools

import pytest
import torch

from spikerl.rl.learners import DDPG, SAC, TD3
from spikerl.rl.learners.base import adam
from spikerl.rl.learners.td3 import td_target
from spikerl.rl.networks import MLPActor, QEnsemble
from spikerl.rl.replay import Batch
from spikerl.runtime.precision import Precision
from spikerl.snn.actors import DSRLSpikingActor, PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder, TwoNeuronEncoder

OBS, ACT = 4, 2
ALGOS = {
    "td3": (TD3, {"policy_delay": 2, "act_noise": 0.1, "target_noise": 0.2, "noise_clip": 0.5}),
    "ddpg": (DDPG, {"act_noise": 0.1}),
    "sac": (SAC, {"alpha": 0.2, "log_std_lr": 1e-3, "log_std_hidden_sizes": (32, 32)}),
}
ACTORS = {
    "popsan": lambda compile=False: PopSpikingActor(OBS, ACT, encoder=PopulationEncoder, hidden_sizes=(32, 32),
                                                    compile=compile),
    "dsrl": lambda compile=False: DSRLSpikingActor(OBS, ACT, encoder=TwoNeuronEncoder, hidden_sizes=(32, 32),
                                                   compile=compile),
    "mlp": lambda compile=False: MLPActor(OBS, ACT, hidden_sizes=(32, 32)),
    "popsan_poisson": lambda compile=False: PopSpikingActor(  # PopSAN's Hopper and Walker2d encoder
        OBS, ACT, encoder=functools.partial(PopulationEncoder, spikes="poisson"), hidden_sizes=(32, 32),
        compile=compile),
}


def make_batch(n=16, terminated=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, OBS, generator=g),
        act=torch.rand(n, ACT, generator=g) * 2 - 1,
        rew=torch.randn(n, generator=g),
        next_obs=torch.randn(n, OBS, generator=g),
        terminated=torch.zeros(n) if terminated is None else terminated,
    )


def make_learner(spiking=True, algo="td3", actor=None, compile_actor=False, **overrides):
    torch.manual_seed(0)
    cls, hyper = ALGOS[algo]
    net = ACTORS[actor or ("popsan" if spiking else "mlp")](compile_actor)
    kwargs = dict(actor_lr=1e-3, critic_lr=1e-3, gamma=0.99, polyak=0.995, **hyper)
    kwargs.update(overrides)
    return cls(net, QEnsemble(OBS, ACT, hidden_sizes=(32, 32), n=cls.num_q), OBS, ACT, **kwargs)


def step_gradients(learner, monkeypatch):
    """Run one update whose actor step is due, recording each optimizer step's gradients (by parameter)."""
    seen = []
    real = learner.precision.step

    def step(loss, optimizer, sync=None):
        found = real(loss, optimizer, sync)
        seen.append({name: None if p.grad is None else p.grad.clone() for name, p in named(learner).items()})
        return found

    monkeypatch.setattr(learner.precision, "step", step)
    learner.updates = learner.policy_delay - 1  # the coming iteration takes an actor step
    learner.update(make_batch(seed=1))
    return seen


def named(learner):
    return {f"{key}.{n}": p for key, net in learner.networks().items() if not key.endswith("target")
            for n, p in net.named_parameters()}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("spiking", [True, False])
def test_each_step_of_an_update_moves_only_its_own_networks(algo, spiking, monkeypatch):
    """Through the update that training runs: the critic step leaves no gradient on the policy (its TD
    target is computed without one), and the actor step adds none to the critic (frozen while its loss
    is evaluated) while reaching every trained policy network (SAC's log-std network too)."""
    learner = make_learner(spiking, algo)
    critic_step, actor_step = step_gradients(learner, monkeypatch)
    critic = {n for n in critic_step if n.startswith("critic.")}
    policy = set(critic_step) - critic
    assert all(critic_step[n] is not None for n in critic) and all(critic_step[n] is None for n in policy)
    for n in critic:  # the actor step put nothing on the critic's gradients
        assert torch.equal(actor_step[n], critic_step[n]), n
    assert all(actor_step[n] is not None and actor_step[n].abs().sum() > 0 for n in policy
               if n.split(".")[-1] in ("weight", "bias") and ".neurons." not in n)
    assert all(p.requires_grad for p in learner.critic.parameters())  # unfrozen again afterwards


def constant_critic(*values: float) -> QEnsemble:
    critic = QEnsemble(OBS, ACT, hidden_sizes=(8,), n=len(values))
    with torch.no_grad():
        for i, value in enumerate(values, 1):
            net = getattr(critic, f"q{i}")
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


def test_sac_soft_target_subtracts_the_entropy_term(monkeypatch):
    """SAC's TD target, by hand: r + gamma (1 - d) (min Q' - alpha log pi), with the policy's mean 0 and
    log std 0 (a standard normal before the tanh), so log pi of a sample u is known in closed form."""
    import math

    from spikerl.rl.learners import sac

    learner = make_learner(False, "sac", gamma=0.9, alpha=0.5)
    learner.critic_target = constant_critic(4.0, 2.0)
    for net in (learner.actor.net, learner.extra_networks["log_std"]):
        with torch.no_grad():
            net[-1].weight.zero_()
            net[-1].bias.zero_()
    batch = make_batch(3, terminated=torch.tensor([0.0, 1.0, 0.0]))
    eps = torch.randn(3, ACT)
    seen = {}
    real = sac.q_ensemble_loss
    monkeypatch.setattr(sac, "q_ensemble_loss", lambda c, b, target, p: seen.setdefault("t", target) is None
                        or real(c, b, target, p))
    sac.critic_loss(learner.critic, learner.policy, learner.critic_target, batch, eps, 0.9, 0.5, Precision(), -20, 2)
    log_pi = (-0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - torch.log(1 - torch.tanh(eps) ** 2)).sum(-1)
    expected = batch.rew + 0.9 * torch.tensor([1.0, 0.0, 1.0]) * (2.0 - 0.5 * log_pi)
    torch.testing.assert_close(seen["t"], expected, rtol=1e-5, atol=1e-5)


def test_target_policy_smoothing_noise_is_clipped():
    torch.manual_seed(0)
    batch = make_batch(512)
    actor = MLPActor(OBS, ACT, hidden_sizes=(8,))
    seen = []

    class Recorder(QEnsemble):
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


@pytest.mark.parametrize("algo", ["ddpg", "sac"])
def test_ddpg_and_sac_step_the_actor_and_targets_every_iteration(algo):
    learner = make_learner(False, algo, polyak=0.9)
    critic_target = [p.clone() for p in learner.critic_target.parameters()]
    metrics = learner.update(make_batch(seed=1))
    assert "loss/actor" in metrics and ("train/log_prob" in metrics) == (algo == "sac")
    for old, target, online in zip(critic_target, learner.critic_target.parameters(), learner.critic.parameters()):
        torch.testing.assert_close(target, 0.9 * old + 0.1 * online)
    assert learner.critic.n == (1 if algo == "ddpg" else 2)
    assert (learner.actor_target is None) == (algo == "sac")  # SAC's next action comes from the current policy


@pytest.mark.parametrize("algo", ALGOS)
def test_targets_are_frozen_copies(algo):
    learner = make_learner(algo=algo)
    for online, target in learner.targets():
        assert online is not target
        assert all(not p.requires_grad for p in target.parameters())
        for a, b in zip(online.parameters(), target.parameters()):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


@pytest.mark.parametrize("algo", ALGOS)
def test_update_reduces_critic_loss_on_a_fixed_batch(algo):
    learner = make_learner(spiking=False, algo=algo, gamma=0.0)  # the target is the reward: a plain regression
    batch = make_batch(64)
    losses = [learner.update(batch)["loss/critic"].item() for _ in range(200)]
    assert losses[-1] < 0.5 * losses[0]


def test_sac_explores_with_samples_and_acts_with_tanh_of_the_mean():
    sac = make_learner(False, "sac")
    obs = torch.randn(256, OBS)
    greedy = sac.act(obs)
    torch.testing.assert_close(greedy, torch.tanh(sac.actor.unsquashed(obs)).detach())
    torch.testing.assert_close(greedy, sac.actor(obs).detach())  # what evaluate and export run
    samples = torch.stack([sac.explore(obs) for _ in range(2)])
    assert not torch.equal(samples[0], samples[1]) and samples.abs().max() < 1.0
    assert sac.act_noise == 0.0 and make_learner(algo="ddpg").act_noise == 0.1


def test_sac_saves_and_restores_its_log_std_network():
    sac = make_learner(False, "sac")
    sac.update(make_batch(seed=1))
    state = sac.state_dict()
    assert {"actor", "critic", "critic_target", "log_std", "actor_opt"} <= set(state) and "actor_target" not in state
    other = make_learner(False, "sac", actor=None)
    torch.nn.init.zeros_(other.extra_networks["log_std"][0].weight)
    other.load_state_dict(state)
    for a, b in zip(sac.extra_networks["log_std"].parameters(), other.extra_networks["log_std"].parameters()):
        assert torch.equal(a, b)
    obs = torch.randn(8, OBS)
    torch.manual_seed(3)
    first = sac.explore(obs)
    torch.manual_seed(3)
    assert torch.equal(first, other.explore(obs))


def test_sac_learns_the_log_std_at_its_own_rate():
    sac = make_learner(False, "sac", actor_lr=1e-4, log_std_lr=1e-3)
    assert [g["lr"] for g in sac.actor_opt.param_groups] == [1e-4, 1e-3]
    assert {id(p) for p in sac.actor_opt.param_groups[1]["params"]} == \
        {id(p) for p in sac.extra_networks["log_std"].parameters()}


@pytest.mark.parametrize("algo,bad,message", [
    ("td3", {"gamma": 1.5}, "gamma must be in"), ("td3", {"policy_delay": 0}, "policy_delay must be positive"),
    ("ddpg", {"act_noise": -0.1}, "act_noise must not be negative"), ("sac", {"alpha": -1}, "alpha must not be"),
    ("sac", {"log_std_min": 3.0}, "log_std_min must be below"),
])
def test_hyperparameters_out_of_range_are_refused(algo, bad, message):
    from spikerl.rl.learners import HyperparameterError

    with pytest.raises(HyperparameterError, match=message):
        make_learner(algo=algo, **bad)


def test_a_critic_of_the_wrong_size_is_refused():
    from spikerl.rl.learners import HyperparameterError

    with pytest.raises(HyperparameterError, match="ddpg uses 1"):
        DDPG(MLPActor(OBS, ACT), QEnsemble(OBS, ACT, n=2), OBS, ACT, gamma=0.99, polyak=0.995, actor_lr=1e-3,
             critic_lr=1e-3, act_noise=0.1)


def test_optimizers_use_the_fused_adam_kernel_and_fall_back_without_it(monkeypatch):
    assert adam([(torch.nn.Linear(3, 2), 1e-3)]).defaults["fused"] is True  # CPU, torch >= 2.4
    real = torch.optim.Adam

    def no_fused(params, fused=None):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(params)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    opt = adam([(torch.nn.Linear(3, 2), 1e-3), (torch.nn.Linear(2, 1), 1e-4)])
    assert not opt.defaults.get("fused") and [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4]


def learner_pair(algo, actor, **overrides):
    """An eager and a compiled learner from the same initial weights."""
    return [make_learner(algo=algo, actor=actor, compile_actor=compiled, compile=compiled, **overrides)
            for compiled in (False, True)]


# Each spiking actor's update compiles for about a minute on one AVX2 core: make test keeps PopSAN with TD3
# and every learner with the MLP (seconds each); the other spiking pairs run in make test-slow (CI runs both).
@pytest.mark.parametrize("algo,actor", [("td3", "popsan"), ("td3", "mlp"), ("sac", "mlp"), ("ddpg", "mlp"),
                                        pytest.param("td3", "dsrl", marks=pytest.mark.slow),
                                        pytest.param("sac", "popsan", marks=pytest.mark.slow)])
def test_compiled_update_equals_the_eager_one(algo, actor):
    """The whole update compiled (both steps' forward and backward graphs, the bptt kernels traced
    into them) computes what the eager update computes: same losses, same weights after a critic-only
    and an actor update, up to float rounding."""
    eager, compiled = learner_pair(algo, actor)
    for seed in (1, 2, 3, 4):
        results = []
        for learner in (eager, compiled):
            torch.manual_seed(seed)  # the same noise drawn outside the graphs
            results.append(learner.update(make_batch(seed=seed)))
        assert results[0].keys() == results[1].keys()
        for key in results[0]:
            torch.testing.assert_close(results[1][key], results[0][key], rtol=1e-4, atol=1e-5)
    assert compiled.critic_objective.failed is None and compiled.actor_objective.failed is None
    for (name, a), b in zip(eager.networks().items(), compiled.networks().values()):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("actor", ["popsan", "popsan_poisson"])
def test_compiled_acting_serves_one_env_and_a_vector_of_envs_without_falling_back(actor):
    """Acting compiles once over a symbolic batch size: a collector's env (batch 1) and an evaluation's
    envs share the graph. Spikes drawn at random (PopSAN's Bernoulli encoder) once made that graph fail
    to build, and acting then ran eagerly; integrated spikes give the eager actions."""
    eager, compiled = learner_pair("td3", actor)
    for n in (1, 5, 1):
        obs = torch.randn(n, OBS)
        action = compiled.act(obs)
        assert action.shape == (n, ACT) and action.abs().max() <= 1
        if actor == "popsan":
            torch.testing.assert_close(action, eager.act(obs), rtol=1e-4, atol=1e-5)
    assert compiled.policy_action.failed is None


@pytest.mark.parametrize("algo,compiled", [("td3", False), ("td3", True), ("sac", False), ("ddpg", False)])
def test_an_update_never_reads_a_value_back_to_the_host(algo, compiled, monkeypatch):
    """No tensor value is read on the host inside an update (`.item()`, `bool()`, `float()`, `int()`,
    `.tolist()`: on a GPU each waits for the device): the non-finite check, the skip decision and the
    skip counters stay on the device, and the metrics are tensors read when they are logged. (On a GPU,
    tests/test_gpu.py runs an update under CUDA's sync-debug mode, which also sees syncs inside torch.)"""
    learner = learner_pair(algo, "popsan")[compiled]
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


# -- algo.target=proxy (Proxy Target; its update against the published one: test_published_proxytarget.py) --
PROXY = {"target": "proxy", "proxy": {"hidden_sizes": [16, 16], "lr": 1e-3, "iters": 3}}


def proxy_update(learner, seed=1):
    batches = [make_batch(seed=seed * 10 + k) for k in range(learner.batches_per_update)]
    return learner.update(batches[-1], batches[:-1])


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_a_proxy_target_is_regressed_onto_the_actor_and_never_averaged(algo):
    learner = make_learner(algo=algo, **PROXY)
    proxy = learner.target.network
    assert learner.actor_target is proxy and learner.batches_per_update == 3
    assert set(learner.networks()) == {"actor", "critic", "critic_target", "proxy"}
    assert "proxy_opt" in learner.state_dict()
    before = [p.detach().clone() for p in proxy.parameters()]
    learner.soft_update()  # Polyak averaging moves the critic's target only
    assert all(torch.equal(a, b) for a, b in zip(before, proxy.parameters()))
    obs = make_batch(seed=99).obs
    with torch.no_grad():
        gap = ((proxy(obs) - learner.actor(obs)) ** 2).mean()
    for seed in range(30):
        metrics = proxy_update(learner, seed)
    with torch.no_grad():
        assert ((proxy(obs) - learner.actor(obs)) ** 2).mean() < gap  # it follows the actor
    assert torch.isfinite(metrics["loss/proxy"]) and torch.isfinite(metrics["loss/critic"])


def test_the_proxy_step_moves_only_the_proxy(monkeypatch):
    """The proxy's regression reads the actor without a gradient into it (the published one puts one there
    that the actor's own step clears before use), then the critic and actor steps go on as before."""
    learner = make_learner(**PROXY)
    steps = []
    real = learner.precision.step

    def step(loss, optimizer, sync=None):
        found = real(loss, optimizer, sync)
        steps.append({key: [p.grad is not None for p in net.parameters()] for key, net in learner.networks().items()
                      if not key.endswith("target")})
        return found

    monkeypatch.setattr(learner.precision, "step", step)
    learner.updates = learner.policy_delay - 1
    proxy_update(learner)
    assert len(steps) == 3 + 2  # three regression steps, the critic's, the actor's
    for seen in steps[:3]:
        assert all(seen["proxy"]) and not any(seen["actor"]) and not any(seen["critic"])


def test_an_update_takes_as_many_batches_as_its_target_asks():
    learner = make_learner(**PROXY)
    with pytest.raises(ValueError, match="takes 3 replay batches, got 1"):
        learner.update(make_batch(seed=1))
    with pytest.raises(ValueError, match="takes 1 replay batches, got 2"):
        make_learner().update(make_batch(seed=1), [make_batch(seed=2)])


def test_the_schedule_samples_the_proxys_batches_first_and_gives_the_critic_the_last():
    import numpy as np

    from spikerl.rl.normalizer import ObsNormalizer
    from spikerl.rl.replay import ReplayBuffer
    from spikerl.rl.updates import UpdateSchedule
    from spikerl.telemetry.metrics import RunningMeans

    replay = ReplayBuffer(OBS, ACT, 100)
    replay.add(np.arange(100.0)[:, None].repeat(OBS, 1), np.zeros((100, ACT)), np.zeros(100), np.zeros((100, OBS)),
               np.zeros(100))
    seen = []

    class Recording:
        batches_per_update, consecutive_skips = 3, 0

        def update(self, batch, lead=()):
            seen.append([b.obs[:, 0].tolist() for b in (*lead, batch)])
            return {}

    norm = ObsNormalizer(OBS, kind="none")
    schedule = UpdateSchedule(Recording(), replay, norm, 4, 1, 2, update_after=0, seed=5)
    schedule.run_round(0, RunningMeans())
    again = torch.Generator().manual_seed(5)
    expected = [replay.sample(4, norm, again).obs[:, 0].tolist() for _ in range(6)]
    assert seen == [expected[:3], expected[3:]]


@pytest.mark.parametrize("bad,message", [
    ({"target": "soft"}, "target must be one of polyak, proxy"),
    ({"target": "proxy", "proxy": {"iters": 0}}, "proxy.iters must be a positive integer"),
    ({"target": "proxy", "proxy": {"lr": 0.0}}, "proxy.lr must be positive"),
    ({"target": "proxy", "proxy": {"hidden_sizes": []}}, "proxy.hidden_sizes must list positive integers"),
    ({"target": "proxy", "proxy": {"layers": 2}}, "proxy.layers is not a setting of the proxy target"),
])
def test_bad_target_settings_are_refused(bad, message):
    from spikerl.rl.learners import HyperparameterError

    with pytest.raises(HyperparameterError, match=message):
        make_learner(**bad)


def test_the_compiled_proxy_update_equals_the_eager_one():
    eager, compiled = learner_pair("td3", "mlp", **PROXY)
    for seed in (1, 2, 3):
        results = []
        for learner in (eager, compiled):
            torch.manual_seed(seed)
            results.append(proxy_update(learner, seed))
        for key in results[0]:
            torch.testing.assert_close(results[1][key], results[0][key], rtol=1e-4, atol=1e-5)
    assert compiled.target.objective.failed is None
    for (name, a), b in zip(eager.networks().items(), compiled.networks().values()):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
