"""DSRL side by side with its published code (mahmoudakl/dsrl at db77744: `src/model.py`,
`src/td3_agent.py` and the `<Task>-v3/training_td3-SNN.ipynb` notebooks).

Two references, as in test_published_learners.py:

- `published`: the published `TD3ActorDSNN` and `TD3CriticNetwork` themselves, and the published
  `Agent`'s observation scaling methods. They need a checkout of the published repository (not part of
  SpikeRL, not installed by it): `SPIKERL_DSRL_REPO=/path/to/dsrl make test` runs them; without one
  they are skipped.
- `restated`: the published computation written out below with the line numbers it comes from; it runs
  everywhere, CI included.

The same weights (the published code's own seeded draw, at the sizes of HalfCheetah, Hopper and Ant)
must give the same actions, membrane traces and weight gradients, for every neuron backend and
compiled. `test_each_published_difference_is_needed` puts back, one at a time, each way the actor once
differed from the published one and requires the comparison to fail.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from reference import import_published
from spikerl.rl.collector import Collector
from spikerl.rl.learners import TD3
from spikerl.rl.networks import QEnsemble
from spikerl.rl.normalizer import ObsNormalizer
from spikerl.rl.replay import Batch, ReplayBuffer
from spikerl.rl.sections import EnvConfig
from spikerl.snn.actors import DSRLSpikingActor
from spikerl.snn.encoders import TwoNeuronEncoder
from spikerl.snn.through_time import lif_forward
from spikerl.telemetry.metrics import RunningMeans

REPO = os.environ.get("SPIKERL_DSRL_REPO")
REFERENCES = ["restated", pytest.param("published", marks=pytest.mark.skipif(
    not REPO, reason="set SPIKERL_DSRL_REPO to a checkout of mahmoudakl/dsrl"))]
# (obs_dim, act_dim, threshold) of the v4 tasks, thresholds from the published notebooks
TASKS = {"halfcheetah": (17, 6, 0.8), "hopper": (11, 3, 2.0), "ant": (27, 8, 2.5)}
HIDDEN, SIM_TIME, BATCH = (400, 300), 5, 64


def published_module(name: str):
    return import_published(Path(REPO) / "src", name)


# ---- the published actor, restated ------------------------------------------------------------------

class _FastSigmoidSpike(torch.autograd.Function):
    """src/model.py 14-51 (`SurrGradSpike`): step forward, grad / (100 |x| + 1)^2 backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (100.0 * x.abs() + 1.0) ** 2


def restated_actor_forward(weights: list[torch.Tensor], inputs: torch.Tensor, threshold: float,
                           alpha: float = 0.5, beta: float = 0.5):
    """src/model.py 264-338 (`TD3ActorDSNN.forward`, random_params=False, reset_potential=0). `weights`
    are the published [fan_in, fan_out] matrices, `inputs` the interleaved two-neuron input. Returns
    tanh of the readout's last membrane and the membranes [step][layer] of steps 1..4."""
    last = len(weights) - 1
    syn = [torch.zeros(inputs.shape[0], w.shape[1]) for w in weights]
    mem = [torch.zeros(inputs.shape[0], w.shape[1]) for w in weights]
    traces = []
    for _t in range(1, SIM_TIME):  # 284-288: step 0 only records the zero state
        spikes, step = None, []
        for l, w in enumerate(weights):
            h = (inputs if l == 0 else spikes) @ w
            # 296-307: the first layer and the readout have no synaptic current; the others decay it by alpha
            new_syn = h if l in (0, last) else alpha * syn[l] + h
            # 309-315: the readout sums without a leak; the others decay by beta
            new_mem = mem[l] + new_syn if l == last else beta * mem[l] + new_syn
            if l < last:  # 318-330: spike above the threshold, reset to 0 by masked assignment
                mthr = new_mem - threshold
                spikes = _FastSigmoidSpike.apply(mthr)
                new_mem = torch.where(mthr > 0, torch.zeros_like(new_mem), new_mem)
            syn[l], mem[l] = new_syn, new_mem
            step.append(new_mem)
        traces.append(step)
    return torch.tanh(mem[last]), traces


def published_weights(obs_dim: int, act_dim: int, threshold: float, reference: str, seed: int = 0):
    """The published actor's initial weights (its own seeded draw: src/model.py 203-229) and its forward."""
    arch = [2 * obs_dim, *HIDDEN, act_dim]
    if reference == "published":
        actor = published_module("model").TD3ActorDSNN(arch, seed, 0.5, 0.5, 1, 1, threshold, SIM_TIME, 1e-3,
                                                      name="actor", device="cpu")
        return actor.weights, lambda x: (lambda out: (out[0], [s[:] for s in out[1][1:]]))(actor.forward(x))
    torch.manual_seed(seed)  # 209-211, then 226-229: N(0, 1/sqrt(fan_in)) per [fan_in, fan_out] matrix
    weights = [torch.nn.init.normal_(torch.empty(a, b, requires_grad=True), 0.0, 1.0 / np.sqrt(a))
               for a, b in zip(arch, arch[1:])]
    return weights, lambda x: restated_actor_forward(weights, x, threshold)


def interleave(obs: torch.Tensor) -> torch.Tensor:
    """src/td3_agent.py 362-371 (`transform_state`): (pos_0, neg_0, pos_1, neg_1, ...)."""
    return torch.stack([obs.clamp(min=0), (-obs).clamp(min=0)], -1).reshape(obs.shape[0], -1)


def to_ours(weight: torch.Tensor, first: bool) -> torch.Tensor:
    """A published [fan_in, fan_out] matrix as nn.Linear's [fan_out, fan_in]; the first layer's
    interleaved input columns as ours, all positive parts then all negative parts."""
    weight = weight.detach()
    if first:
        weight = torch.cat([weight[0::2], weight[1::2]])
    return weight.T.contiguous()


def our_actor(obs_dim, act_dim, threshold, weights, **kwargs) -> DSRLSpikingActor:
    actor = DSRLSpikingActor(obs_dim, act_dim, TwoNeuronEncoder, hidden_sizes=HIDDEN,
                             neuron={"threshold": threshold, **kwargs.pop("neuron", {})}, **kwargs)
    with torch.no_grad():
        for i, linear in enumerate([*actor.snn.linears, actor.readout]):
            linear.weight.copy_(to_ours(weights[i], first=i == 0))
    return actor


def observations(obs_dim: int, n: int = BATCH) -> torch.Tensor:
    """Max-abs scaled observations: within [-1, 1], as the published scaling gives them."""
    g = torch.Generator().manual_seed(obs_dim)
    return (torch.rand(n, obs_dim, generator=g) * 2 - 1) * torch.rand(1, obs_dim, generator=g)


def our_traces(actor: DSRLSpikingActor, obs: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's post-reset membranes [T, B, N], computed from the actor's own layer specs."""
    x, traces = actor.encoder(obs, actor.timesteps), []
    layers = [*zip(actor.snn.linears, actor.snn.specs), (actor.readout, actor.readout_spec)]
    for linear, spec in layers:
        z, pre, _ = lif_forward(linear(x).detach(), spec.alpha, spec.beta, spec.threshold, float(spec.spiking), 1.0)
        traces.append(pre - float(spec.spiking) * z * pre)
        x = z
    return traces


def gradients(actor_or_weights, action: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    (action * grad).sum().backward()
    if isinstance(actor_or_weights, DSRLSpikingActor):
        return [lin.weight.grad for lin in [*actor_or_weights.snn.linears, actor_or_weights.readout]]
    return [to_ours(w.grad, first=i == 0) for i, w in enumerate(actor_or_weights)]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp(min=1e-12)).item()


def compare(actor: DSRLSpikingActor, obs_dim, act_dim, weights, published_forward) -> dict:
    obs = observations(obs_dim)
    theirs, their_traces = published_forward(interleave(obs))
    ours = actor(obs)
    grad = torch.randn(obs.shape[0], act_dim, generator=torch.Generator().manual_seed(1))
    their_grads = gradients(weights, theirs, grad)
    our_grads = gradients(actor, ours, grad)
    mine = our_traces(actor, obs)
    same_steps = len(their_traces) == mine[0].shape[0]
    return {
        "actions": (ours - theirs).abs().max().item(),
        "traces": max((mine[l][t] - their_traces[t][l]).abs().max().item()
                      for t in range(len(their_traces)) for l in range(len(mine))) if same_steps else math.inf,
        "gradients": max(relative_error(o, t) for o, t in zip(our_grads, their_grads)),
    }


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("backend", ["bptt", "fused", "snntorch", "bptt-compiled"])
def test_the_actor_computes_the_published_actions_membranes_and_gradients(reference, task, backend):
    obs_dim, act_dim, threshold = TASKS[task]
    weights, published_forward = published_weights(obs_dim, act_dim, threshold, reference)
    name, _, compiled = backend.partition("-")
    actor = our_actor(obs_dim, act_dim, threshold, weights, neuron_backend=name, compile=bool(compiled))
    diff = compare(actor, obs_dim, act_dim, weights, published_forward)
    # float32 matmuls summed in another order: actions and membranes to 1e-5; the fast sigmoid's slope
    # (100) magnifies that rounding in the first layer's gradient to about 1e-5 relative
    assert diff["actions"] < 1e-5 and diff["traces"] < 1e-4, diff
    assert diff["gradients"] < 1e-3, diff


# each way the actor once differed from the published one, put back alone
REVERSIONS = {
    "first layer with a synaptic current": {"first_layer": {"current_decay": 0.5}},
    "readout with a current and a leak": {"readout": {"current_decay": 0.5, "voltage_decay": 0.5}},
    "readout with a leak": {"readout": {"current_decay": 0.0, "voltage_decay": 0.5}},
    "five updates (step 0 updating too)": {"timesteps": 5},
    "gradient through the reset": {"neuron": {"reset_gradient": True}},
}


@pytest.mark.parametrize("reversion", sorted(REVERSIONS))
def test_each_published_difference_is_needed(reversion):
    obs_dim, act_dim, threshold = TASKS["halfcheetah"]
    weights, published_forward = published_weights(obs_dim, act_dim, threshold, "restated")
    actor = our_actor(obs_dim, act_dim, threshold, weights, **REVERSIONS[reversion])
    diff = compare(actor, obs_dim, act_dim, weights, published_forward)
    assert diff["actions"] > 1e-3 or diff["gradients"] > 1e-2, diff


# ---- the critic -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("reference", REFERENCES)
def test_the_critic_sees_the_two_neuron_coded_state(reference):
    """src/model.py 346-374 (`TD3CriticNetwork`): a 400x300 ReLU MLP over (two-neuron coded state, action)."""
    obs_dim, act_dim, _ = TASKS["hopper"]
    torch.manual_seed(0)
    if reference == "published":
        theirs = published_module("model").TD3CriticNetwork(1e-3, (2 * obs_dim,), *HIDDEN, n_actions=act_dim,
                                                            name="critic").cpu()
        layers = [theirs.fc1, theirs.fc2, theirs.q1]
    else:
        layers = [torch.nn.Linear(2 * obs_dim + act_dim, HIDDEN[0]), torch.nn.Linear(*HIDDEN),
                  torch.nn.Linear(HIDDEN[1], 1)]

        def theirs(state, action):
            x = torch.relu(layers[0](torch.cat([state, action], dim=1)))
            return layers[2](torch.relu(layers[1](x)))
    critic = QEnsemble(obs_dim, act_dim, HIDDEN, n=1, split_sign=True)
    with torch.no_grad():
        first = layers[0].weight
        critic.q1[0].weight.copy_(torch.cat([first[:, 0:2 * obs_dim:2], first[:, 1:2 * obs_dim:2],
                                             first[:, 2 * obs_dim:]], dim=1))
        critic.q1[0].bias.copy_(layers[0].bias)
        for ours, published in zip((critic.q1[2], critic.q1[4]), layers[1:]):
            ours.weight.copy_(published.weight)
            ours.bias.copy_(published.bias)
    obs, act = observations(obs_dim), torch.rand(BATCH, act_dim) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(critic(obs, act)[0], theirs(interleave(obs), act).squeeze(-1))


# ---- observation scaling and the trainer's schedule ----------------------------------------------------

STEPS, LIMIT, SEED = 300, 10, 5  # short episodes: many last observations


def published_scaling(reference: str):
    """(update, scale) of the published agent: `update_max_obs` (src/td3_agent.py 373-374) from the
    observation space's bound with +inf read as 1 (84-88), and `normalize_state` (355-360)."""
    high = gym.make("HalfCheetah-v4").observation_space.high.astype(np.float64)
    if reference == "published":
        from types import SimpleNamespace

        agent_cls = published_module("td3_agent").Agent
        agent = SimpleNamespace(max_obs=np.where(high == np.inf, 1.0, high), two_neuron=False)
        return (lambda o: agent_cls.update_max_obs(agent, o)), (lambda o: agent_cls.normalize_state(agent, o))
    state = {"max": np.where(high == np.inf, 1.0, high)}

    def update(o):
        state["max"] = np.maximum(state["max"], np.abs(o))

    return update, lambda o: torch.tensor(o / state["max"], dtype=torch.float)


@pytest.mark.parametrize("reference", REFERENCES)
def test_observation_scaling_follows_the_published_running_max_along_a_rollout(reference):
    """Our collector's policy sees each observation scaled by a max |o| that starts at 1 and has grown
    with every observation up to and including it, the last one of each episode too (the published
    `train_agent`, src/td3_agent.py 384-394). Replayed through a plain env kept the published way."""
    seen = []
    normalizer = ObsNormalizer(17, "maxabs")
    draws = torch.Generator().manual_seed(SEED)

    def policy(raw):  # float32 actions (no noise is added), which the replay stores exactly
        seen.append(normalizer(raw)[0].clone())
        return torch.rand(1, 6, generator=draws) * 2 - 1

    replay = ReplayBuffer(17, 6, STEPS)
    collector = Collector(EnvConfig("halfcheetah", "HalfCheetah-v4", 1, LIMIT), policy, replay, normalizer,
                          act_noise=0.0, seed=SEED)
    for step in range(STEPS):
        collector.step(explore_randomly=False, env_step=step, window=RunningMeans())
    collector.close()
    update, scale = published_scaling(reference)
    env = gym.make("HalfCheetah-v4", max_episode_steps=LIMIT)
    o, _ = env.reset(seed=SEED)
    update(o)
    expected = []
    for a in replay.act[:STEPS].numpy().astype(np.float64):
        expected.append(scale(o))
        o, _, terminated, truncated, _ = env.step(a)
        update(o)  # the published loop counts every next observation, an episode's last one included
        if terminated or truncated:
            o, _ = env.reset()  # our episodes continue the env's random stream (see docs: not the same seed)
            update(o)
    torch.testing.assert_close(torch.stack(seen), torch.stack(expected).float(), rtol=1e-6, atol=1e-7)
    assert torch.stack(seen).abs().max() <= 1.0 and float(normalizer.max_abs.min()) >= 1.0


def test_warm_up_actions_and_exploration_noise_follow_the_published_rule():
    """src/td3_agent.py 142-166: before `warmup` steps the action is N(0, 0.1) per dimension, then the
    policy's; either way one N(0, noise) draw is added to every dimension, and the sum is clipped."""
    act_dim, std, noise = 6, 0.1, 0.1
    replay = ReplayBuffer(17, act_dim, 40)
    collector = Collector(EnvConfig("halfcheetah", "HalfCheetah-v4", 1), lambda raw: torch.full((1, act_dim), 0.3),
                          replay, ObsNormalizer(17, "maxabs"), act_noise=noise, seed=SEED, shared_noise=True,
                          start_actions="normal", start_action_std=std)
    for step in range(40):
        collector.step(explore_randomly=step < 20, env_step=step, window=RunningMeans())
    collector.close()
    rng = np.random.default_rng(SEED)
    expected = []
    for step in range(40):
        mean = std * rng.standard_normal((1, act_dim)) if step < 20 else np.full((1, act_dim), 0.3)
        expected.append(np.clip(mean + noise * rng.standard_normal((1, 1)), -1.0, 1.0))
    np.testing.assert_allclose(replay.act[:40].numpy(), np.concatenate(expected), rtol=1e-6, atol=1e-7)
    policy_acts = replay.act[20:40].numpy()
    assert np.allclose(policy_acts, policy_acts[:, :1])  # one noise draw shared by every dimension


def test_target_smoothing_noise_is_one_draw_for_the_whole_batch():
    """src/td3_agent.py 204-206: clip(N(0, 0.2), -0.5, 0.5), one number added to every target action."""
    torch.manual_seed(0)
    obs_dim, act_dim = 3, 2
    learner = TD3(DSRLSpikingActor(obs_dim, act_dim, TwoNeuronEncoder, hidden_sizes=(8, 8)),
                  QEnsemble(obs_dim, act_dim, (8,), split_sign=True), obs_dim, act_dim, gamma=0.99, polyak=0.995,
                  actor_lr=1e-3, critic_lr=1e-3, policy_delay=2, act_noise=0.1, target_noise=0.2, noise_clip=0.5,
                  shared_noise=True)
    batch = Batch(obs=torch.randn(16, obs_dim), act=torch.rand(16, act_dim), rew=torch.randn(16),
                  next_obs=torch.randn(16, obs_dim), terminated=torch.zeros(16))
    noise = learner.critic_inputs(batch)["noise"]
    assert noise.shape == (16, act_dim) and torch.all(noise == noise[0, 0]) and noise[0, 0] != 0


def test_the_preset_updates_on_the_published_schedule(tmp_path):
    """src/td3_agent.py 168-170 and 232-255: one update per env step once 1,000 steps were taken (the
    1,000th included), the actor and the targets (tau 0.005) at every second update."""
    from conftest import TINY
    from spikerl.config import compose, validate
    from spikerl.job import train_run

    schedule = ("train.update_after", "train.gradient_steps", "train.start_steps")  # the preset's own
    small = [o for o in TINY if not o.startswith(schedule)]
    rc = validate(compose([*small, "experiment=dsrl", "env=inverted_pendulum", "train.total_steps=1030",
                           "train.eval_every=1030", "train.checkpoint_every=0", "actor.hidden_sizes=[16,16]",
                           "critic.hidden_sizes=[16,16]"]))
    assert (rc.train.update_after, rc.train.update_every, rc.train.gradient_steps) == (999, 1, 1)
    assert rc.algo["polyak"] == 0.995 and rc.algo["policy_delay"] == 2
    summary = train_run(rc, tmp_path / "run", "dsrl")
    assert summary["updates"] == 1030 - 999  # env steps 1,000 ... 1,030
