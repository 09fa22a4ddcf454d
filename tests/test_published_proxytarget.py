"""Proxy Target side by side with its author's code (madao2333/Proxy-Target-with-PLIF at b389797, the original
release: `SAN.py` `SNN_Actor`, `actor_critic.py` `PT_TD3` and `TD3`).

Two references, as in test_published_learners.py:

- `published`: the published classes themselves. They need a checkout of that commit (not part of SpikeRL,
  not installed by it): `SPIKERL_PROXYTARGET_REPO=/path/to/checkout make test` runs them; without one they
  are skipped.
- `restated`: the published computation written out below with the line numbers it comes from; it runs
  everywhere, CI included.

The actor: the same weights and observations give the same actions, the same spikes in every layer and
the same weight gradients, for LIF, CLIF and DN neurons, every neuron backend and compiled. The update: two
`PT_TD3.train` calls (a critic-only one, then one with the actor step) and two of our updates, on the same
weights, replay batches and smoothing noise, give the same proxy, critic and actor losses, the same
gradients at every optimizer step and the same weights after. Without the proxy (`--proxy No`: the
`proxytarget_vanilla` and `proxytarget_ann` rows), two `TD3.train` calls and two of our updates agree the
same way, for the LIF actor and the ANN, each learner built from its preset; and every preset's schedule is
`main.py`'s. `test_each_published_difference_is_needed` puts back, one at a time, a way ours could differ
and requires the comparison to fail.

Kept on purpose (docs/configuration.md, "Proxy Target"): the proxy loss does not back-propagate into the
spiking actor (the published code does, and the actor's own step clears that gradient before use).
"""

from __future__ import annotations

import copy
import math
import os
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from reference import StepRecorder, assert_same, import_published, popsan_spike, relative_error
from spikerl.config import compose
from spikerl.rl.learners import TD3
from spikerl.rl.networks import MLPActor, QEnsemble
from spikerl.rl.replay import Batch
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder

REPO = os.environ.get("SPIKERL_PROXYTARGET_REPO")
REFERENCES = ["restated", pytest.param("published", marks=pytest.mark.skipif(
    not REPO, reason="set SPIKERL_PROXYTARGET_REPO to a checkout of madao2333/Proxy-Target-with-PLIF at b389797"))]
OBS, ACT, POP, T, BATCH = 17, 6, 10, 5, 32  # HalfCheetah's sizes
HIDDEN = (64, 48)  # the actor alone; PT_TD3 builds its own at 256 x 256
STD = math.sqrt(0.05)


def config_neuron(actor: str) -> dict:
    """An actor config's neuron settings (conf/actor/<actor>.yaml, as the preset composes it)."""
    return dict(compose([f"actor={actor}"]).actor.neuron)


# SAN.py 17-24 and 148-168, 231-250: its neurons, as the configs give them (CLIF: the LIF with PopSAN's current)
NEURONS = {"LIF": config_neuron("proxytarget"), "CLIF": {**config_neuron("proxytarget"), "current_decay": 0.5},
           "DN": config_neuron("proxytarget_dn")}


def published(name: str):
    return import_published(Path(REPO), name)


# ---- the published actor, restated ------------------------------------------------------------------

class Restated(nn.Module):
    """`SNN_Actor` (SAN.py 288-325) with act_limit 1, the published parameter names and initialisation."""

    def __init__(self, neurons: str, hidden=HIDDEN):
        super().__init__()
        self.neurons = neurons
        # 56-63: means evenly spaced over (-1, 1) (its own arithmetic), std sqrt(0.05), both learned
        delta = 2.0 / (POP - 1)
        mean = torch.zeros(1, OBS, POP)
        for k in range(POP):
            mean[0, :, k] = -1.0 + delta * k
        self.mean, self.std = nn.Parameter(mean), nn.Parameter(torch.zeros(1, OBS, POP) + STD)
        widths = [OBS * POP, *hidden]
        self.hidden_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))  # 141-144
        self.out_pop_layer = nn.Linear(hidden[-1], ACT * POP)  # 145
        self.decoder = nn.Conv1d(ACT, ACT, POP, groups=ACT)  # 95

    def encoder(self, obs):
        """65-81: Gaussian fields on the observation, regular spikes at 0.999 with an identity gradient."""
        act = torch.exp(-0.5 * (obs.view(-1, OBS, 1) - self.mean).pow(2) / self.std.pow(2)).view(-1, OBS * POP)
        volt, out = torch.zeros_like(act), []
        for _ in range(T):
            volt = volt + act
            spike = (volt > 0.999).float() + (volt - volt.detach())
            volt = volt - spike * 0.999
            out.append(spike)
        return out

    def neuron(self, syn, x, state):
        """148-168 (LIF: no current kept; CLIF: it decays by 1/2) and 231-250 (DN: the voltage resets to
        theta_r and the resistance jumps by theta_s after a spike; then v + (v^2 - v - u + c) and
        u + (theta_v v + theta_u u), theta_u = +0.529, the sign CaRe-BN's code has too); spikes at v > 0.5,
        rectangular pseudo-gradient (108-119)."""
        if self.neurons == "DN":
            current, volt, u, spike = state
            current = current * 0.5 + syn(x)
            volt = volt * (1.0 - spike) + 0.021 * spike
            u = u + spike * 0.132
            volt, u = volt + (volt.square() - volt - u + current), u + (-0.172 * volt + 0.529 * u)
            return [current, volt, u, popsan_spike(volt)]
        current, volt, spike = state
        current = syn(x) if self.neurons == "LIF" else current * 0.5 + syn(x)
        volt = volt * 0.75 * (1.0 - spike) + current
        return [current, volt, popsan_spike(volt)]

    def forward(self, obs):
        """315-325 with 171-204: tanh of the observation in, every layer once per step, the rate decoded."""
        inputs = self.encoder(torch.tanh(obs))
        n_state = 4 if self.neurons == "DN" else 3
        layers = [*self.hidden_layers, self.out_pop_layer]
        states = [[torch.zeros(obs.shape[0], layer.out_features) for _ in range(n_state)] for layer in layers]
        spikes = [[] for _ in layers]
        for t in range(T):
            x = inputs[t]
            for i, layer in enumerate(layers):
                states[i] = self.neuron(layer, x, states[i])
                x = states[i][-1]
                spikes[i].append(x)
        rate = sum(spikes[-1]) / T  # 202-203
        return torch.tanh(self.decoder(rate.view(-1, ACT, POP)).view(-1, ACT)), spikes  # 98-105, 324


def published_actor(reference: str, neurons: str, hidden=HIDDEN):
    """The published actor with its own seeded weights, and obs -> (action, spikes [layer][t] [B, N])."""
    torch.manual_seed(0)
    if reference == "restated":
        actor = Restated(neurons, hidden)
        return actor, actor
    san = published("SAN")
    actor = san.SNN_Actor(OBS, ACT, 1.0, neurons, hidden_sizes=list(hidden), device=torch.device("cpu"))
    mlp = actor.snn

    def forward(obs):
        recorded = []
        step = mlp.neuron_model

        def neuron_model(*args):  # every layer's spikes, in the order the published loop steps them
            out = step(*args)
            recorded.append(out[-1])
            return out

        mlp.neuron_model = neuron_model
        try:
            action = actor(obs)
        finally:
            del mlp.neuron_model
        layers = len(hidden) + 1
        return action, [recorded[i::layers] for i in range(layers)]

    return actor, forward


def published_parameters(actor, reference: str) -> dict[str, torch.Tensor]:
    """Our parameter name -> the published parameter."""
    enc = actor if reference == "restated" else actor.encoder
    snn = actor if reference == "restated" else actor.snn
    out = {"encoder.mean": enc.mean, "encoder.std": enc.std}
    for i, layer in enumerate([*snn.hidden_layers, snn.out_pop_layer]):
        out[f"snn.linears.{i}.weight"], out[f"snn.linears.{i}.bias"] = layer.weight, layer.bias
    decoder = actor.decoder if reference == "restated" else actor.decoder.decoder
    out["decoder.weight"], out["decoder.bias"] = decoder.weight, decoder.bias
    return out


def our_actor(neurons: str, hidden=HIDDEN, **kwargs) -> PopSpikingActor:
    encoder = partial(PopulationEncoder, pop_dim=POP, mean_range=(-1.0, 1.0), std=STD, squash="tanh")
    return PopSpikingActor(OBS, ACT, encoder, hidden_sizes=hidden, out_pop_dim=POP, timesteps=T,
                           neuron=NEURONS[neurons], **kwargs)


def load(ours: nn.Module, params: dict[str, torch.Tensor]) -> None:
    state = ours.state_dict()
    with torch.no_grad():
        for name, value in params.items():
            state[name].copy_(value.detach().reshape(state[name].shape))


def our_states(actor: PopSpikingActor, obs: torch.Tensor):
    x, spikes = actor.encoder(obs, actor.timesteps), []
    for i in range(len(actor.snn.linears)):
        x = actor.snn.layer(i, x)
        spikes.append(x)
    return torch.tanh(actor.decoder.unsquashed(x)), spikes


def observations(seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, OBS, generator=torch.Generator().manual_seed(seed)) * 1.5


def compare(reference: str, neurons: str = "LIF", *, reversion=None, **kwargs) -> dict[str, float]:
    """Largest differences between the published actor and ours on the same weights and observations:
    the action, every layer's spikes, and every weight's gradient (relative)."""
    theirs, forward = published_actor(reference, neurons)
    params = published_parameters(theirs, reference)
    ours = our_actor(neurons, **kwargs)
    load(ours, params)
    if reversion is not None:
        ours = reversion(ours)
    obs = observations()
    probe = torch.randn(BATCH, ACT, generator=torch.Generator().manual_seed(2))
    action, spikes = forward(obs)
    (action * probe).sum().backward()
    run = torch.compile(partial(our_states, ours), dynamic=False) if kwargs.get("compile") else partial(
        our_states, ours)
    our_action, our_spikes = run(obs)
    (our_action * probe).sum().backward()
    found = {"action": (action - our_action).abs().max().item()}
    for i, layer in enumerate(spikes):
        found[f"spikes {i}"] = (torch.stack(layer) - our_spikes[i]).abs().max().item()
    mine = dict(ours.named_parameters())
    for name, param in params.items():
        grad = mine[name].grad
        found[f"grad {name}"] = relative_error(param.grad, grad)
    return found


def assert_equal(found: dict[str, float]) -> None:
    assert_same(found, "the published Proxy Target actor")


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("backend", ["bptt", "fused", "snntorch", "bptt-compiled"])
@pytest.mark.parametrize("neurons", ["LIF", "CLIF"])
def test_the_actor_computes_the_published_actions_spikes_and_gradients(reference, backend, neurons):
    name, _, compiled = backend.partition("-")
    assert_equal(compare(reference, neurons, neuron_backend=name, compile=bool(compiled)))


@pytest.mark.parametrize("reference", REFERENCES)
def test_its_dynamic_neurons_are_the_published_ones(reference):
    assert_equal(compare(reference, "DN"))


# ---- one update: PT_TD3.train and ours ----------------------------------------------------------------

ITERS, PROXY_HIDDEN, PROXY_LR = 3, (64, 32), 1e-3


def replay_batches(n: int) -> list[Batch]:
    g = torch.Generator().manual_seed(3)
    return [Batch(obs=torch.randn(BATCH, OBS, generator=g) * 2, act=torch.rand(BATCH, ACT, generator=g) * 2 - 1,
                  rew=torch.randn(BATCH, generator=g), next_obs=torch.randn(BATCH, OBS, generator=g) * 2,
                  terminated=(torch.rand(BATCH, generator=g) < 0.25).float()) for _ in range(n)]


def smoothing_noise(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return [torch.randn(BATCH, ACT, generator=g) for _ in range(n)]


def our_learner(neurons: str = "LIF", target: str = "proxy", **kwargs) -> TD3:
    """TD3 as the presets compose it: `neurons` LIF, CLIF or DN (`proxytarget`, its variants), or ANN
    (`proxytarget_ann`: SAN.py 328-342, a 256 x 256 ReLU MLP with a tanh output)."""
    preset = compose([f"experiment={'proxytarget_ann' if neurons == 'ANN' else 'proxytarget'}"])
    algo = {k: v for k, v in OmegaConf.to_container(preset.algo).items() if k != "_target_"}
    assert (algo["proxy"]["lr"], algo["proxy"]["iters"]) == (PROXY_LR, ITERS)
    algo["proxy"]["hidden_sizes"] = list(PROXY_HIDDEN)  # smaller than its 512 x 512, for time
    torch.manual_seed(0)
    actor = MLPActor(OBS, ACT, (256, 256)) if neurons == "ANN" else our_actor(neurons, hidden=(256, 256))
    critic = QEnsemble(OBS, ACT, tuple(preset.critic.hidden_sizes), n=2)
    return TD3(actor, critic, OBS, ACT, **{**algo, "target": target}, **kwargs)


def named(nets: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": p for k, net in nets.items() for n, p in net.named_parameters()}


def our_nets(learner: TD3) -> dict[str, nn.Module]:
    return {"actor": learner.actor, "critic": learner.critic, "critic_target": learner.critic_target,
            **learner.target.networks()}


def run_ours(monkeypatch, updates: int = 2, reversion=None, **kwargs) -> dict:
    learner = our_learner(**kwargs)
    if reversion is not None:
        reversion(learner)
    before = {k: v.detach().clone() for k, v in named(our_nets(learner)).items()}
    per = learner.batches_per_update  # ITERS with the proxy (each fit on its own batch), else 1
    batches, draws = replay_batches(per * updates), smoothing_noise(updates)
    with monkeypatch.context() as patch:
        patch.setattr(torch, "randn_like", lambda t, *a, **k: draws.pop(0))
        record = StepRecorder(patch, {id(p): n for n, p in named(our_nets(learner)).items()})
        for u in range(updates):
            mine = batches[u * per:(u + 1) * per]
            learner.update(mine[-1], mine[:-1])
    after = {k: v.detach().clone() for k, v in named(our_nets(learner)).items()}
    return {"losses": record.losses, "grads": record.grads, "before": before, "after": after}


def restated_q(net, i: int, s, a):
    """`Critic`'s i-th head (actor_critic.py 43-55) on our critic."""
    return getattr(net, f"q{i}")(torch.cat([s, a], 1))


class RestatedSteps:
    """Our networks for `neurons` and `target` holding `state`, stepped as the published code steps them:
    Adam at `lrs` (network -> learning rate), each step's loss and gradients recorded."""

    def __init__(self, state: dict, lrs: dict[str, float], neurons: str = "LIF", target: str = "proxy"):
        self.nets = our_nets(our_learner(neurons, target=target))  # the networks only
        with torch.no_grad():
            for name, p in named(self.nets).items():
                p.copy_(state[name])
        self.adam = {key: torch.optim.Adam(self.nets[key].parameters(), lr=lr) for key, lr in lrs.items()}
        self.losses, self.grads = [], {}

    def step(self, loss, key: str) -> None:
        self.losses.append(loss.detach())
        params = dict(self.nets[key].named_parameters())
        for (n, p), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()))):
            self.grads.setdefault(f"{key}.{n}", []).append(g)
            p.grad = g.clone()
        self.adam[key].step()

    def average(self, key: str) -> None:
        """`key`'s target moved towards it, tau 0.005."""
        with torch.no_grad():
            for p, p_t in zip(self.nets[key].parameters(), self.nets[f"{key}_target"].parameters()):
                p_t.copy_(0.005 * p + 0.995 * p_t)

    def result(self) -> dict:
        return {"losses": self.losses, "grads": self.grads,
                "after": {k: v.detach().clone() for k, v in named(self.nets).items()}}


def restated_update(state: dict, updates: int = 2) -> dict:
    """`PT_TD3.train` (actor_critic.py 216-269) written out, on our architecture holding `state`."""
    run = RestatedSteps(state, {"actor": 3e-4, "critic": 3e-4, "proxy": PROXY_LR})  # 194-200
    actor, critic, critic_t, proxy = (run.nets[k] for k in ("actor", "critic", "critic_target", "proxy"))
    batches, draws = replay_batches(ITERS * updates), smoothing_noise(updates)
    q = restated_q
    for it in range(1, updates + 1):
        for k in range(ITERS):  # 221-228: the proxy regressed onto the actor, a fresh batch each time
            b = batches[(it - 1) * ITERS + k]
            run.step(F.mse_loss(actor(b.obs), proxy(b.obs)), "proxy")
        s, a, r, s2, nd = b.obs, b.act, b.rew[:, None], b.next_obs, 1.0 - b.terminated[:, None]  # the last batch
        with torch.no_grad():  # 231-244
            noise = (draws[it - 1] * 0.2).clamp(-0.5, 0.5)
            a2 = (proxy(s2) + noise).clamp(-1.0, 1.0)
            target = r + nd * 0.99 * torch.min(q(critic_t, 1, s2, a2), q(critic_t, 2, s2, a2))
        run.step(F.mse_loss(q(critic, 1, s, a), target) + F.mse_loss(q(critic, 2, s, a), target), "critic")
        if it % 2 == 0:  # 256-269: the actor's step, then only the critic's target is averaged
            run.step(-q(critic, 1, s, actor(s)).mean(), "actor")
            run.average("critic")
    return run.result()


def published_critic(critic) -> dict[str, torch.Tensor]:
    """`Critic`'s l1-l3 and l4-l6 (actor_critic.py 31-41) as our q1 and q2."""
    return {f"q{i}.{2 * j}.{w}": getattr(getattr(critic, f"l{3 * (i - 1) + j + 1}"), w)
            for i in (1, 2) for j in range(3) for w in ("weight", "bias")}


def published_mlp(net) -> dict[str, torch.Tensor]:
    """A published 3-layer MLP's l1-l3 (`Proxy_target`, actor_critic.py 15-29; `ANN_Actor`, SAN.py 328-342)
    as our net.0, net.2, net.4."""
    return {f"net.{2 * j}.{w}": getattr(getattr(net, f"l{j + 1}"), w) for j in range(3) for w in ("weight", "bias")}


def train_published(policy, theirs: dict, copies: dict, state: dict, batches: list[Batch], monkeypatch,
                    updates: int) -> dict:
    """`policy.train` `updates` times on `batches` and the smoothing noises, its networks `theirs` (key ->
    our parameter name -> its parameter) holding `state`, and each target in `copies` (attribute -> its
    parameters) a copy of its network as it starts."""
    with torch.no_grad():
        for key, params in theirs.items():
            for n, p in params.items():
                p.copy_(state[f"{key}.{n}"].reshape(p.shape))
    for attr, params_of in copies.items():
        setattr(policy, attr, copy.deepcopy(getattr(policy, attr.removesuffix("_target"))))
        theirs[attr] = params_of(getattr(policy, attr))
    names = {id(p): f"{key}.{n}" for key, params in theirs.items() for n, p in params.items()}
    draws = smoothing_noise(updates)

    class Replay:
        def sample(self, batch_size):
            b = batches.pop(0)
            return b.obs, b.act, b.next_obs, b.rew[:, None], 1.0 - b.terminated[:, None]

    monkeypatch.setattr(torch, "randn_like", lambda t, *a, **k: draws.pop(0))
    record = StepRecorder(monkeypatch, names)
    for _ in range(updates):
        policy.train(Replay(), BATCH)
    after = {f"{key}.{n}": p.detach().clone().reshape(state[f"{key}.{n}"].shape)
             for key, params in theirs.items() for n, p in params.items()}
    grads = {n: [g.reshape(state[n].shape) for g in gs] for n, gs in record.grads.items()}
    return {"losses": record.losses, "grads": grads, "after": after}


def published_update(state: dict, monkeypatch, updates: int = 2) -> dict:
    """`PT_TD3.train` itself, its networks holding `state` (our names mapped onto its own)."""
    monkeypatch.syspath_prepend(REPO)
    ac = published("actor_critic")
    policy = ac.PT_TD3(OBS, ACT, 1.0, "LIF", list(PROXY_HIDDEN), PROXY_LR, ITERS, policy_noise=0.2, noise_clip=0.5)
    assert isinstance(policy.actor, published("SAN").SNN_Actor)
    theirs = {"actor": published_parameters(policy.actor, "published"), "critic": published_critic(policy.critic),
              "proxy": published_mlp(policy.actor_target)}  # its proxy is named actor_target
    # 199: the critic's target a copy of the critic as it starts
    return train_published(policy, theirs, {"critic_target": published_critic}, state,
                           replay_batches(ITERS * updates), monkeypatch, updates)


def assert_same_update(mine: dict, theirs: dict, steps: int = 2 * (ITERS + 1) + 1) -> None:
    """`steps` optimizer steps (by default 2 x (3 proxy steps and a critic step) and one actor step)."""
    assert len(mine["losses"]) == len(theirs["losses"]) == steps
    for i, (a, b) in enumerate(zip(mine["losses"], theirs["losses"])):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"loss {i}")
    assert set(theirs["grads"]) == set(mine["grads"]) and mine["grads"]
    for name, gs in mine["grads"].items():
        assert len(gs) == len(theirs["grads"][name]), name
        for g, h in zip(gs, theirs["grads"][name]):
            torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6, msg=name)
    assert set(theirs["after"]) == set(mine["after"])
    for name, value in mine["after"].items():
        torch.testing.assert_close(value, theirs["after"][name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("reference", REFERENCES)
def test_an_update_computes_what_pt_td3_train_computes(reference, monkeypatch):
    mine = run_ours(monkeypatch)
    theirs = restated_update(mine["before"]) if reference == "restated" else \
        published_update(mine["before"], monkeypatch)
    assert_same_update(mine, theirs)


@pytest.mark.slow  # compiling the update's four graphs: about a minute or two on one core
def test_the_compiled_update_computes_what_pt_td3_train_computes(monkeypatch):
    mine = run_ours(monkeypatch, compile=True)
    assert_same_update(mine, restated_update(mine["before"]))


# ---- without the proxy: TD3.train, the `proxytarget_vanilla` and `proxytarget_ann` rows ----------------

def restated_vanilla_update(state: dict, neurons: str, updates: int = 2) -> dict:
    """`TD3.train` (actor_critic.py 106-152, Fujimoto's TD3) written out, on our networks holding `state`."""
    run = RestatedSteps(state, {"actor": 3e-4, "critic": 3e-4}, neurons, target="polyak")  # 87, 90
    actor, actor_t, critic, critic_t = (run.nets[k] for k in ("actor", "actor_target", "critic", "critic_target"))
    batches, draws = replay_batches(updates), smoothing_noise(updates)
    q = restated_q
    for it in range(1, updates + 1):  # 107: total_it counts from 1
        b = batches[it - 1]
        s, a, r, s2, nd = b.obs, b.act, b.rew[:, None], b.next_obs, 1.0 - b.terminated[:, None]
        with torch.no_grad():  # 112-124: the target actor's smoothed action
            a2 = (actor_t(s2) + (draws[it - 1] * 0.2).clamp(-0.5, 0.5)).clamp(-1.0, 1.0)
            target = r + nd * 0.99 * torch.min(q(critic_t, 1, s2, a2), q(critic_t, 2, s2, a2))
        run.step(F.mse_loss(q(critic, 1, s, a), target) + F.mse_loss(q(critic, 2, s, a), target), "critic")
        if it % 2 == 0:  # 135-152: the actor's step, then both targets averaged
            run.step(-q(critic, 1, s, actor(s)).mean(), "actor")
            run.average("critic")
            run.average("actor")
    return run.result()


def published_vanilla_update(state: dict, neurons: str, monkeypatch, updates: int = 2) -> dict:
    """`TD3.train` itself (`main.py --proxy No`), its networks holding `state`."""
    monkeypatch.syspath_prepend(REPO)
    policy = published("actor_critic").TD3(OBS, ACT, 1.0, neurons, policy_noise=0.2, noise_clip=0.5)
    actor_params = published_mlp if neurons == "ANN" else partial(published_parameters, reference="published")
    theirs = {"actor": actor_params(policy.actor), "critic": published_critic(policy.critic)}
    # 85, 92: both targets copies of their networks as they start
    return train_published(policy, theirs, {"actor_target": actor_params, "critic_target": published_critic}, state,
                           replay_batches(updates), monkeypatch, updates)


@pytest.mark.parametrize("neurons", ["LIF", "ANN"])
@pytest.mark.parametrize("reference", REFERENCES)
def test_an_update_without_the_proxy_computes_what_td3_train_computes(reference, neurons, monkeypatch):
    """The vanilla LIF actor and the ANN on the paper's schedule (`--proxy No`): two critic steps, one
    actor step, both targets averaged after it."""
    mine = run_ours(monkeypatch, neurons=neurons, target="polyak")
    theirs = restated_vanilla_update(mine["before"], neurons) if reference == "restated" else \
        published_vanilla_update(mine["before"], neurons, monkeypatch)
    assert_same_update(mine, theirs, steps=3)


# main.py 20-34 (its argument defaults), actor_critic.py 87 and 90 (both learning rates), utils.py 51 (ten
# evaluation episodes): the schedule every row of the paper trains on
PUBLISHED_DEFAULTS = {"proxy_hidden_sizes": [512, 512], "proxy_lr": 1e-3, "proxy_iters": 3, "start_timesteps": 25e3,
                      "eval_freq": 5e3, "expl_noise": 0.1, "batch_size": 256, "discount": 0.99, "tau": 0.005,
                      "policy_noise": 0.2, "noise_clip": 0.5, "policy_freq": 2}


def published_defaults() -> dict:
    """main.py's `add_argument` defaults, read from the checkout."""
    import ast
    import re

    text = (Path(REPO) / "main.py").read_text()
    return {name: ast.literal_eval(value.strip()) for name, value in
            re.findall(r'add_argument\("--(\w+)", default=(\[[^]]*\]|[^,)]+)', text) if name in PUBLISHED_DEFAULTS}


@pytest.mark.parametrize("experiment", ["proxytarget", "proxytarget_vanilla", "proxytarget_ann"])
@pytest.mark.parametrize("reference", REFERENCES)
def test_the_presets_train_on_the_published_schedule(reference, experiment):
    given = PUBLISHED_DEFAULTS if reference == "restated" else published_defaults()
    assert given == PUBLISHED_DEFAULTS
    cfg = compose([f"experiment={experiment}"])
    train, algo = cfg.train, cfg.algo
    assert train.start_steps == train.update_after == given["start_timesteps"] and train.start_actions == "uniform"
    assert (train.batch_size, train.update_every, train.gradient_steps) == (given["batch_size"], 1, 1)
    assert (train.eval_every, train.eval_episodes) == (given["eval_freq"], 10)
    assert (algo.gamma, 1 - algo.polyak, algo.policy_delay) == pytest.approx(
        (given["discount"], given["tau"], given["policy_freq"]))
    assert (algo.act_noise, algo.target_noise, algo.noise_clip) == (given["expl_noise"], given["policy_noise"],
                                                                     given["noise_clip"])
    assert (algo.actor_lr, algo.critic_lr, list(cfg.critic.hidden_sizes)) == (3e-4, 3e-4, [256, 256])
    assert (list(algo.proxy.hidden_sizes), algo.proxy.lr, algo.proxy.iters) == (
        given["proxy_hidden_sizes"], given["proxy_lr"], given["proxy_iters"])
    assert algo.target == ("proxy" if experiment == "proxytarget" else "polyak")


# ---- each published difference is needed ------------------------------------------------------------

def _critic_takes_the_first_batch(learner):
    update = learner.update
    learner.update = lambda batch, lead: update(lead[0], [batch, *lead[1:]])


def _proxy_after_the_critic(learner):
    """The proxy fitted after the critic's step, so the critic's target comes from the proxy before its fit."""
    fit, update = learner.target.fit, learner.update
    learner.target.fit = lambda batches: ({}, None)

    def wrapped(batch, lead):
        metrics = update(batch, lead)
        fit([*lead, batch])
        return metrics

    learner.update = wrapped


def _lif_with_current(learner):
    """CLIF's current decay in the LIF actor."""
    from dataclasses import replace

    snn = learner.actor.snn
    snn.specs = tuple(replace(spec, alpha=0.5) for spec in snn.specs)


REVERSIONS = {"the critic takes the first proxy batch": _critic_takes_the_first_batch,
              "the proxy is fitted after the critic": _proxy_after_the_critic,
              "the LIF keeps a synaptic current": _lif_with_current}


@pytest.mark.parametrize("reversion", sorted(REVERSIONS))
def test_each_published_difference_is_needed(reversion, monkeypatch):
    mine = run_ours(monkeypatch, reversion=REVERSIONS[reversion])
    with pytest.raises(AssertionError):
        assert_same_update(mine, restated_update(mine["before"]))
