"""SAC and DDPG side by side with PopSAN's published code (combra-lab/pop-spiking-deep-rl,
`popsan_drl/popsan_sac/sac_cuda_norm.py` and `popsan_drl/popsan_ddpg/ddpg_cuda_norm.py`): the same weights
and the same replay batch must give the same losses, the same gradients and the same weights after one
update (optimizer steps and target updates included).

Two references:

- `published`: the published training function itself, run for one update on a stand-in environment,
  with our networks' weights loaded into its networks, its replay sampling handing out our batch and its
  Gaussian draws given our noise; its losses, gradients and weights are read as it computes them. It
  needs a checkout of the published repository (not part of SpikeRL, not installed by it):
  `SPIKERL_POPSAN_REPO=/path/to/pop-spiking-deep-rl make test` runs it; without one it is skipped.
- `restated`: the published update written out in this file (tests/reference.py style), which runs
  everywhere, CI included.

One difference is kept on purpose and does not show here: the published SAC also moves a target copy of
the spiking actor by Polyak averaging that nothing reads; SpikeRL's SAC keeps no target actor.
"""

from __future__ import annotations

import math
import os
import sys
import types
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from reference import StepRecorder
from spikerl.rl.learners import DDPG, SAC
from spikerl.rl.networks import QEnsemble
from spikerl.rl.replay import Batch
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder

OBS, ACT, HIDDEN, POP, BATCH = 5, 3, (32, 32), 10, 16
HYPER = {"gamma": 0.99, "polyak": 0.995, "actor_lr": 1e-4, "critic_lr": 1e-3}
REPO = os.environ.get("SPIKERL_POPSAN_REPO")
REFERENCES = ["restated", pytest.param("published", marks=pytest.mark.skipif(
    not REPO, reason="set SPIKERL_POPSAN_REPO to a checkout of combra-lab/pop-spiking-deep-rl"))]


def ours(algo: str):
    torch.manual_seed(0)
    actor = PopSpikingActor(OBS, ACT, encoder=PopulationEncoder, hidden_sizes=HIDDEN, out_pop_dim=POP)
    if algo == "sac":
        return SAC(actor, QEnsemble(OBS, ACT, HIDDEN, n=2), OBS, ACT, **HYPER, alpha=0.2, log_std_lr=1e-3,
                   log_std_hidden_sizes=HIDDEN)
    return DDPG(actor, QEnsemble(OBS, ACT, HIDDEN, n=1), OBS, ACT, **HYPER, act_noise=0.1)


def replay_batch() -> Batch:
    g = torch.Generator().manual_seed(1)
    terminated = (torch.rand(BATCH, generator=g) < 0.25).float()
    return Batch(obs=torch.randn(BATCH, OBS, generator=g).clamp(-3, 3), act=torch.rand(BATCH, ACT, generator=g) * 2 - 1,
                 rew=torch.randn(BATCH, generator=g), next_obs=torch.randn(BATCH, OBS, generator=g).clamp(-3, 3),
                 terminated=terminated)


def noise() -> list[torch.Tensor]:
    """The standard-normal draws of one SAC update: the next action's (critic step), the action's (actor step)."""
    g = torch.Generator().manual_seed(2)
    return [torch.randn(BATCH, ACT, generator=g) for _ in range(2)]


# -- our side ------------------------------------------------------------------------------------------------
def run_ours(algo: str, monkeypatch) -> dict:
    learner = ours(algo)
    named = {"actor": learner.actor, "critic": learner.critic, "critic_target": learner.critic_target,
             **({"log_std": learner.extra_networks["log_std"]} if algo == "sac" else
                {"actor_target": learner.actor_target})}
    before = {f"{k}.{n}": p.detach().clone() for k, m in named.items() for n, p in m.named_parameters()}
    names = {id(p): f"{k}.{n}" for k, m in named.items() for n, p in m.named_parameters()}
    draws = noise()
    with monkeypatch.context() as patch:
        if algo == "sac":  # our update draws its noise with randn_like: critic step, then actor step
            patch.setattr(torch, "randn_like", lambda t, *a, **k: draws.pop(0))
        record = StepRecorder(patch, names)
        learner.update(replay_batch())
    after = {f"{k}.{n}": p.detach().clone() for k, m in named.items() for n, p in m.named_parameters()}
    return {"losses": record.losses, "grads": {n: gs[-1] for n, gs in record.grads.items()}, "before": before,
            "after": after}


# -- the published update, restated ---------------------------------------------------------------------------
def restated(algo: str, state: dict) -> dict:
    """One update as the published code computes it, on networks holding `state` (our names)."""
    learner = ours(algo)  # the same architecture; the computation below is the published one
    for key, net in {"actor": learner.actor, "critic": learner.critic}.items():
        net.load_state_dict({n[len(key) + 1:]: v for n, v in state.items() if n.startswith(key + ".")}, strict=False)
    actor, critic = learner.actor, learner.critic
    log_std_net = learner.extra_networks.get("log_std")
    if log_std_net is not None:
        log_std_net.load_state_dict({n[8:]: v for n, v in state.items() if n.startswith("log_std.")})
    actor_t, critic_t = _copy(actor), _copy(critic)
    o, a, r, o2, d = (lambda b: (b.obs, b.act, b.rew, b.next_obs, b.terminated))(replay_batch())
    q = lambda net, i, x, u: getattr(net, f"q{i}")(torch.cat([x, u], -1)).squeeze(-1)  # noqa: E731
    draws = noise()

    def squashed(x, eps):
        mu = actor.unsquashed(x)
        std = torch.exp(torch.clamp(log_std_net(x), -20, 2))
        u = mu + std * eps
        logp = Normal(mu, std).log_prob(u).sum(-1) - (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(1)
        return torch.tanh(u), logp

    grads, losses = {}, []
    qs = range(1, critic.n + 1)
    with torch.no_grad():
        if algo == "sac":
            a2, logp2 = squashed(o2, draws[0])
            backup = r + 0.99 * (1 - d) * (torch.min(q(critic_t, 1, o2, a2), q(critic_t, 2, o2, a2)) - 0.2 * logp2)
        else:
            backup = r + 0.99 * (1 - d) * q(critic_t, 1, o2, actor_t(o2))
    loss_q = sum(((q(critic, i, o, a) - backup) ** 2).mean() for i in qs)
    losses.append(loss_q.detach())
    grads.update(_grads(loss_q, {"critic": critic}))
    _adam({"critic": critic}, grads, 1e-3)
    if algo == "sac":
        pi, logp = squashed(o, draws[1])
        loss_pi = (0.2 * logp - torch.min(q(critic, 1, o, pi), q(critic, 2, o, pi))).mean()
        nets = {"actor": actor, "log_std": log_std_net}
    else:
        loss_pi = -q(critic, 1, o, actor(o)).mean()
        nets = {"actor": actor}
    losses.append(loss_pi.detach())
    grads.update(_grads(loss_pi, nets))
    _adam(nets, grads, {"actor": 1e-4, "log_std": 1e-3})
    with torch.no_grad():
        for online, target in ((actor, actor_t), (critic, critic_t)):
            for p, p_t in zip(online.parameters(), target.parameters()):
                p_t.mul_(0.995).add_(0.005 * p)
    after = {**_named("actor", actor), **_named("critic", critic), **_named("critic_target", critic_t)}
    after.update(_named("log_std", log_std_net) if algo == "sac" else _named("actor_target", actor_t))
    return {"losses": losses, "grads": grads, "after": after}


def _copy(net):
    import copy

    return copy.deepcopy(net).requires_grad_(False)


def _named(key, net):
    return {f"{key}.{n}": p.detach().clone() for n, p in net.named_parameters()}


def _grads(loss, nets):
    params = {f"{k}.{n}": p for k, net in nets.items() for n, p in net.named_parameters()}
    values = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params, values))


def _adam(nets, grads, lr):
    """One first Adam step (torch's defaults), each network at its learning rate."""
    for key, net in nets.items():
        rate = lr[key] if isinstance(lr, dict) else lr
        opt = torch.optim.Adam(net.parameters(), lr=rate)
        for n, p in net.named_parameters():
            p.grad = grads[f"{key}.{n}"].clone()
        opt.step()


# -- the published update, run ---------------------------------------------------------------------------------
def _popsan_state(state: dict, prefix: str) -> dict:
    """Our PopSpikingActor's weights under the published PopSAN's names."""
    mine = {n[len(prefix) + 1:]: v for n, v in state.items() if n.startswith(prefix + ".")}
    layers = sorted({int(n.split(".")[2]) for n in mine if n.startswith("snn.linears.")})
    out = {"encoder.mean": mine["encoder.mean"], "encoder.std": mine["encoder.std"],
           "decoder.decoder.weight": mine["decoder.weight"].unsqueeze(1), "decoder.decoder.bias": mine["decoder.bias"]}
    for i in layers:
        name = "snn.out_pop_layer" if i == layers[-1] else f"snn.hidden_layers.{i}"
        out[f"{name}.weight"], out[f"{name}.bias"] = mine[f"snn.linears.{i}.weight"], mine[f"snn.linears.{i}.bias"]
    return out


def _ours_from_popsan(popsan_state: dict, prefix: str) -> dict:
    inverse = {v: k for k, v in _name_map(popsan_state).items()}
    return {f"{prefix}.{inverse[n]}": (v.squeeze(1) if n == "decoder.decoder.weight" else v)
            for n, v in popsan_state.items() if n in inverse}


def _name_map(popsan_state: dict) -> dict:
    hidden = sorted({int(n.split(".")[2]) for n in popsan_state if n.startswith("snn.hidden_layers.")})
    mapping = {"encoder.mean": "encoder.mean", "encoder.std": "encoder.std", "decoder.weight": "decoder.decoder.weight",
               "decoder.bias": "decoder.decoder.bias"}
    for i in hidden:
        mapping.update({f"snn.linears.{i}.{w}": f"snn.hidden_layers.{i}.{w}" for w in ("weight", "bias")})
    mapping.update({f"snn.linears.{len(hidden)}.{w}": f"snn.out_pop_layer.{w}" for w in ("weight", "bias")})
    return mapping


class StandInEnv:
    """gym's old API over spaces of our sizes; the one step taken before the update is never learned from."""

    def __init__(self):
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACT,), np.float32)

    def reset(self):
        return np.zeros(OBS, np.float32)

    def step(self, action):
        return np.zeros(OBS, np.float32), 0.0, False, {}


def published(algo: str, state: dict, monkeypatch, tmp_path: Path) -> dict:
    monkeypatch.syspath_prepend(REPO)
    monkeypatch.setitem(sys.modules, "gym", types.SimpleNamespace(make=lambda *a, **k: StandInEnv()))
    writer = type("NoWriter", (), {"__init__": lambda self, *a, **k: None, "add_scalar": lambda self, *a, **k: None})
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=writer))
    monkeypatch.chdir(tmp_path)  # the loop saves its parameters under ./params
    if algo == "sac":
        from popsan_drl.popsan_sac import sac_cuda_norm as module
        from popsan_drl.popsan_sac.replay_buffer_norm import ReplayBuffer
        train = module.spike_sac
    else:
        from popsan_drl.popsan_ddpg import ddpg_cuda_norm as module
        from popsan_drl.popsan_td3.replay_buffer_norm import ReplayBuffer
        train = module.spike_ddpg
    b = replay_batch()
    monkeypatch.setattr(ReplayBuffer, "sample_batch", lambda self, device, batch_size: {
        "obs": b.obs, "act": b.act, "rew": b.rew, "obs2": b.next_obs, "done": b.terminated})
    draws = noise()
    monkeypatch.setattr(torch.distributions.normal, "_standard_normal", lambda *a, **k: draws.pop(0))
    built = []

    def actor_critic(observation_space, action_space, **kwargs):
        ac = module.SpikeActorDeepCritic(observation_space, action_space, **kwargs)
        ac.popsan.load_state_dict({**ac.popsan.state_dict(), **_popsan_state(state, "actor")})
        critics = [ac.q1, ac.q2] if algo == "sac" else [ac.q]
        for i, net in enumerate(critics, 1):
            net.q.load_state_dict({n[len(f"critic.q{i}."):]: v for n, v in state.items()
                                   if n.startswith(f"critic.q{i}.")})
        if algo == "sac":
            ac.popsan.log_std_network.load_state_dict({n[8:]: v for n, v in state.items() if n.startswith("log_std.")})
        ours_name = {v: k for k, v in _name_map(ac.popsan.state_dict()).items()}
        names = {id(p): f"actor.{ours_name[n]}" if n in ours_name else f"log_std.{n[len('log_std_network.'):]}"
                 for n, p in ac.popsan.named_parameters()}
        names.update({id(p): f"critic.q{i}.{n[2:]}" for i, net in enumerate(critics, 1)
                      for n, p in net.named_parameters()})
        built.append((ac, names))
        return ac

    kwargs = dict(hidden_sizes=list(HIDDEN), encoder_pop_dim=POP, decoder_pop_dim=POP, mean_range=(-3, 3),
                  std=math.sqrt(0.15), spike_ts=5, device=torch.device("cpu"))
    if algo == "ddpg":
        kwargs["use_poisson"] = False
    # One env step, then (update_after=0, update_every=1) one update; an epoch of one step ends with one
    # one-step test episode. The learning rates are the published __main__'s.
    extra = {"alpha": 0.2} if algo == "sac" else {"act_noise": 0.1}
    names: dict[int, str] = {}
    record = StepRecorder(monkeypatch, names)
    original = module.deepcopy
    targets = []

    def deepcopy(ac):  # the loop's target networks: ac_targ = deepcopy(ac)
        names.update(built[-1][1])
        targets.append(original(ac))
        return targets[-1]

    monkeypatch.setattr(module, "deepcopy", deepcopy)
    train(lambda: StandInEnv(), actor_critic=actor_critic, ac_kwargs=kwargs, seed=0, steps_per_epoch=1, epochs=1,
          gamma=0.99, polyak=0.995, popsan_lr=1e-4, q_lr=1e-3, batch_size=BATCH, start_steps=0, update_after=0,
          update_every=1, num_test_episodes=1, max_ep_len=1, save_freq=1, use_cuda=False, **extra)
    ac, target = built[0][0], targets[0]
    record.losses = record.losses[:2]  # the update's two backward passes
    after = {**_ours_from_popsan(ac.popsan.state_dict(), "actor")}
    critics = [(ac.q1, target.q1), (ac.q2, target.q2)] if algo == "sac" else [(ac.q, target.q)]
    for i, (net, net_t) in enumerate(critics, 1):
        after.update({f"critic.q{i}.{n[2:]}": v for n, v in net.state_dict().items()})
        after.update({f"critic_target.q{i}.{n[2:]}": v for n, v in net_t.state_dict().items()})
    if algo == "sac":
        after.update({f"log_std.{n}": v for n, v in ac.popsan.log_std_network.state_dict().items()})
    else:
        after.update(_ours_from_popsan(target.popsan.state_dict(), "actor_target"))
    grads = {n: gs[-1].squeeze(1) if n == "actor.decoder.weight" else gs[-1]  # Conv1d's
             for n, gs in record.grads.items()}
    return {"losses": record.losses, "grads": grads, "after": after}


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("algo", ["sac", "ddpg"])
def test_an_update_computes_what_the_published_one_computes(algo, reference, monkeypatch, tmp_path):
    mine = run_ours(algo, monkeypatch)
    theirs = restated(algo, mine["before"]) if reference == "restated" else \
        published(algo, mine["before"], monkeypatch, tmp_path)
    assert len(theirs["losses"]) == len(mine["losses"]) == 2  # a critic and an actor step
    for a, b in zip(mine["losses"], theirs["losses"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert set(theirs["grads"]) == set(mine["grads"]) and mine["grads"]
    for name in mine["grads"]:
        torch.testing.assert_close(mine["grads"][name], theirs["grads"][name], rtol=1e-4, atol=1e-6, msg=name)
    assert set(theirs["after"]) == set(mine["after"])
    for name in mine["after"]:
        torch.testing.assert_close(mine["after"][name], theirs["after"][name], rtol=1e-5, atol=1e-6, msg=name)
    moved = [n for n in mine["after"] if not torch.equal(mine["after"][n], mine["before"][n])]
    assert any(n.startswith("actor.") for n in moved) and any(n.startswith("critic_target.") for n in moved)
