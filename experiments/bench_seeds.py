"""Many seeds in one process: S independent PopSAN TD3 learners as one batched computation against S
separate learners (issue 38, item 1), one thread.

    taskset -c 0 python experiments/bench_seeds.py --threads 1 [--seeds 1 2 4 8] [--rounds 5] [--updates 10]
        [--calls 100] [--compiled] [--out experiments/results/bench_seeds.json]

`separate`: S TD3 learners of the project (conf/algo/td3.yaml, conf/actor/popsan.yaml, two 256x256
Q-networks; benchlib.build_learner), each from its own seed, updated in turn, each on its own batch of
100. `batched`: the same S learners stacked, every parameter with a leading seed axis (actor, critic,
both targets, Adam's state), one update for all of them: the layers are batched matrix products
(torch.baddbmm), the LIF layers the project's own `bptt` autograd node over [T, S, B, N], the
optimizer step the project's (Precision.step, fused Adam). torch.func's vmap cannot do this: the
project's autograd Functions (encoder, surrogate, LIF) have no `setup_context`, which vmap needs.

Before any timing, for every S, the batched learner must give each seed's actions, critic and actor
losses and gradients, and after four updates (two actor steps and soft target updates) every
parameter of the actor, critic and both targets, equal to those of the separate learners on the same
weights, batches and target noise (float tolerance); eagerly and, with --compiled, compiled; or the
script stops with exit code 1.

Timed in interleaved windows (benchlib.interleave, median over --rounds): (a) one TD3 update of all S
seeds (the mean over a critic-only and an actor update, policy_delay 2), (b) acting, S observations at
once at batch 1 each (`act`), each eager and compiled (whole objectives through torch.compile; the
first calls' extra seconds reported apart as compile time); a HalfCheetah-v4 env step as a run steps
it (spikerl.rl.envs.make_vec_env, one env) and a replay sample of 100 (with the observation
normaliser). (c) The whole loop per seed and env step on PopSAN's schedule (50 updates every 50 env
steps: one update per env step): env step + replay sample + acting/S + update/S, and its ratio between
separate and batched, the seeds per core-hour that batching gains. (d) Memory: each seed's state
(parameters, targets, Adam's moments), the tensors one update saves for backward, and the peak
resident memory of a process (separate: one process per seed; batched: one process for S seeds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable

import benchlib
import numpy as np
import torch
from torch.testing import assert_close

from spikerl.job import build_components
from spikerl.rl.envs import make_vec_env
from spikerl.rl.learners import td3
from spikerl.rl.learners.base import frozen
from spikerl.rl.normalizer import ObsNormalizer
from spikerl.rl.replay import Batch, ReplayBuffer
from spikerl.runtime.compiler import compile_seconds
from spikerl.runtime.precision import Precision
from spikerl.snn.encoders import _ThresholdStraightThrough
from spikerl.snn.through_time import run_through_time_bptt

FULL = {"compiled": True, "seeds": [1, 2, 4, 8], "rounds": 5, "updates": 10, "calls": 100, "env_steps": 500,
        "precisions": ["fp32"]}
QUICK = {"compiled": False, "seeds": [1, 2], "rounds": 1, "updates": 2, "calls": 3, "env_steps": 20}
BATCH, WARMUP, BATCHES_PER_SEED, CHECK_UPDATES = 100, 2, 4, 4
Q_LAYERS = (0, 2, 4)  # the Linear layers of each Q-network's nn.Sequential
ENV_ID = "HalfCheetah-v4"
RULE_SEEDS, RULE_GAIN = 4, 1.6  # issue 38: build batched seeds if S = 4 gives 1.6x the seeds per core-hour


# -- the batched restatement --------------------------------------------------------------------------------
def stacked_actor(actors) -> dict[str, torch.Tensor]:
    """The actors' parameters by name, each with a leading seed axis."""
    named = [dict(a.named_parameters()) for a in actors]
    return {name: torch.stack([n[name].detach() for n in named]) for name in named[0]}


def stacked_critic(critics) -> dict[str, torch.Tensor]:
    """The critics' Q-networks' layers as [S, n_q, ...]: a seed's two Q-networks side by side."""
    out = {}
    for layer, kind in itertools.product(Q_LAYERS, ("weight", "bias")):
        out[f"{layer}.{kind}"] = torch.stack([torch.stack([getattr(c, name)[layer].get_parameter(kind).detach()
                                                           for name in ("q1", "q2")]) for c in critics])
    return out


def batched_actor(p: dict, specs, obs: torch.Tensor, timesteps: int, threshold: float, act_dim: int,
                  pop_dim: int, compiled_kernels: bool = False) -> torch.Tensor:
    """PopSAN's actor (spikerl.snn.actors.PopSpikingActor with the regular population encoder and the
    rate decoder) for every seed: obs [S, B, D] -> actions [S, B, act_dim]. Layers run seed-major,
    [S, T * B, n], as one batched product each; the neurons time-major, [T, S, B, N], through the
    project's bptt node (it steps dim 0 and is element-wise in the rest)."""
    s, b, _ = obs.shape
    act = torch.exp(-0.5 * (obs.unsqueeze(-1) - p["encoder.mean"]) ** 2 / p["encoder.std"] ** 2).reshape(s, b, -1)
    volt, spikes = torch.zeros_like(act), []
    for _ in range(timesteps):  # PopulationEncoder.forward, spikes="regular"
        volt = volt + act
        spike = _ThresholdStraightThrough.apply(volt, threshold)
        volt = volt - spike * threshold
        spikes.append(spike)
    x = torch.stack(spikes, 1).reshape(s, timesteps * b, -1)
    for i, spec in enumerate(specs):
        weight, bias = p[f"snn.linears.{i}.weight"], p[f"snn.linears.{i}.bias"]
        current = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        z = run_through_time_bptt(spec, current.view(s, timesteps, b, -1).transpose(0, 1), compiled_kernels)[0]
        if i < len(specs) - 1:  # the next layer's product wants seed-major rows again
            x = z.transpose(0, 1).reshape(s, timesteps * b, -1)
    rates = z.mean(0).unflatten(-1, (act_dim, pop_dim))  # PopulationDecoder: rate, then a weight per neuron
    return torch.tanh((rates * p["decoder.weight"].unsqueeze(1)).sum(-1) + p["decoder.bias"].unsqueeze(1))


def batched_q(c: dict, obs: torch.Tensor, act: torch.Tensor, n: int = 2) -> torch.Tensor:
    """The first `n` Q-networks of every seed (QEnsemble): [S, B, D], [S, B, A] -> Q-values [S, n, B]."""
    s, b, _ = obs.shape
    x = torch.cat([obs, act], -1)
    h = x.unsqueeze(1).expand(s, n, b, x.shape[-1]).reshape(s * n, b, -1)
    for i, layer in enumerate(Q_LAYERS):
        w, bias = c[f"{layer}.weight"][:, :n], c[f"{layer}.bias"][:, :n]
        h = torch.baddbmm(bias.reshape(s * n, 1, -1), h, w.reshape(s * n, *w.shape[2:]).transpose(1, 2))
        if i < len(Q_LAYERS) - 1:
            h = torch.relu(h)
    return h.view(s, n, b)


def batched_critic_loss(critic, actor_target, critic_target, batch: Batch, noise, gamma: float, noise_clip: float,
                        actor_fn: Callable):
    """TD3's critic step forward (td3.critic_loss) for every seed: the sum of the seeds' losses (a seed's
    parameters get its own loss's gradient only), and each seed's loss [S]."""
    with torch.no_grad():
        next_act = (actor_fn(actor_target, batch.next_obs) + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)
        next_q = batched_q(critic_target, batch.next_obs, next_act).min(1).values
        target = batch.rew + gamma * (1.0 - batch.terminated) * next_q
    q = batched_q(critic, batch.obs, batch.act)
    per_seed = ((q - target.unsqueeze(1)) ** 2).mean(-1).sum(-1)
    return per_seed.sum(), per_seed, q[:, 0].detach().mean(-1)


def batched_actor_loss(actor, critic, obs, actor_fn: Callable):
    """-Q1(s, pi(s)) for every seed (td3.actor_loss), summed; the critic is passed detached."""
    per_seed = -batched_q(critic, obs, actor_fn(actor, obs), n=1)[:, 0].mean(-1)
    return per_seed.sum(), per_seed


class BatchedTD3:
    """S TD3 learners of the project as one: each seed its parameters, targets, Adam state and batch.
    Built from the learners themselves (their current weights), so that each seed starts where its
    separate learner does. The objectives compile whole with `compile`, as a run's do."""

    def __init__(self, learners, compile: bool = False):
        first = learners[0]
        actor = first.actor
        self.seeds = len(learners)
        self.gamma, self.polyak, self.policy_delay = first.gamma, first.polyak, first.policy_delay
        self.target_noise, self.noise_clip = first.target_noise, first.noise_clip
        self.actor = {k: v.clone().requires_grad_() for k, v in stacked_actor([ln.actor for ln in learners]).items()}
        self.actor_target = stacked_actor([ln.actor_target for ln in learners])
        self.critic = {k: v.clone().requires_grad_() for k, v in stacked_critic([ln.critic for ln in learners]).items()}
        self.critic_target = stacked_critic([ln.critic_target for ln in learners])
        lr = {"actor": first.actor_opt.param_groups[0]["lr"], "critic": first.critic_opt.param_groups[0]["lr"]}
        # benchlib's learners use fused Adam (spikerl.rl.learners.base.adam): so does the batched one
        self.actor_opt = torch.optim.Adam([{"params": list(self.actor.values()), "lr": lr["actor"]}], fused=True)
        self.critic_opt = torch.optim.Adam([{"params": list(self.critic.values()), "lr": lr["critic"]}], fused=True)
        self.precision = Precision("fp32")
        settings = {"timesteps": actor.timesteps, "threshold": actor.encoder.threshold,
                    "act_dim": actor.decoder.act_dim, "pop_dim": actor.decoder.pop_dim}
        specs = actor.snn.specs
        self.actor_fn = lambda p, obs: batched_actor(p, specs, obs, **settings)
        wrap = (lambda fn: torch.compile(fn, fullgraph=True, dynamic=False)) if compile else (lambda fn: fn)
        self.critic_objective = wrap(self._critic_loss)
        self.actor_objective = wrap(self._actor_loss)
        self.policy_action = wrap(self.actor_fn)
        self.updates = 0
        self.skip_counts = torch.zeros(2)

    def _critic_loss(self, critic, actor_target, critic_target, batch, noise):
        return batched_critic_loss(critic, actor_target, critic_target, batch, noise, self.gamma, self.noise_clip,
                                   self.actor_fn)

    def _actor_loss(self, actor, critic, obs):
        return batched_actor_loss(actor, critic, obs, self.actor_fn)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy_action(self.actor, obs)

    def update(self, batch: Batch, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One iteration for every seed, as Learner.update does it for one: a critic step, and every
        `policy_delay` iterations an actor step and the soft target updates. `noise`: the target
        smoothing draw [S, B, A] before its scale (default: drawn here)."""
        if noise is None:
            noise = torch.randn_like(batch.act)
        loss_q, per_seed, q_mean = self.critic_objective(self.critic, self.actor_target, self.critic_target, batch,
                                                         noise * self.target_noise)
        skipped = self.precision.step(loss_q, self.critic_opt)
        metrics = {"loss/critic": per_seed.detach().clone(), "train/q_mean": q_mean.clone()}
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            loss_pi, per_seed = self.actor_objective(self.actor, {k: v.detach() for k, v in self.critic.items()},
                                                     batch.obs)
            skipped = torch.maximum(skipped, self.precision.step(loss_pi, self.actor_opt))
            with torch.no_grad():
                for online, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                    torch._foreach_lerp_(list(target.values()), list(online.values()), 1.0 - self.polyak)
            metrics["loss/actor"] = per_seed.detach().clone()
        # one skip flag for all seeds here, as one learner has; a build needs one per seed (a cheap [S] reduction)
        total, run = self.skip_counts
        total.add_(skipped)
        run.mul_(skipped).add_(skipped)
        return metrics


# -- the seeds, their batches, and the equivalence check -------------------------------------------------------
def separate_learners(count: int, compiled: bool) -> list:
    """`count` project learners, seed k's networks drawn with torch.manual_seed(k), as a run builds them."""
    rc, learners = benchlib.paper_config(compiled=compiled), []
    for seed in range(count):
        torch.manual_seed(seed)
        actor, critic = build_components(rc, benchlib.OBS_DIM, benchlib.ACT_DIM)
        learners.append(benchlib.build_learner(benchlib.paper_config(), actor, critic, "fp32", compile=compiled))
    return learners


def stack_batches(batches: list[Batch]) -> Batch:
    return Batch(*(torch.stack([getattr(b, f) for b in batches]) for f in ("obs", "act", "rew", "next_obs",
                                                                           "terminated")))


def seed_batches(seeds: int, gen: torch.Generator) -> list[list[Batch]]:
    """BATCHES_PER_SEED random replay batches of BATCH per seed, [seed][i]."""
    return [[benchlib.random_batch(BATCH, gen) for _ in range(BATCHES_PER_SEED)] for _ in range(seeds)]


def close(problems: list[str], what: str, got: torch.Tensor, want: torch.Tensor, rtol=1e-4, atol_scale=1e-5) -> None:
    """Record a mismatch: got (the batched seed's) against want (its separate learner's), tolerance
    relative to the largest magnitude of `want`."""
    try:
        assert_close(got, want, rtol=rtol, atol=atol_scale * max(want.abs().max().item(), 1e-3))
    except AssertionError as exc:
        problems.append(f"{what}: {str(exc).splitlines()[-3:]}")


def actor_params(learner) -> dict[str, torch.Tensor]:
    return dict(learner.actor.named_parameters())


def critic_params(critic) -> dict[str, torch.Tensor]:
    """A critic's parameters under the batched learner's names, [n_q, ...]."""
    return {f"{layer}.{kind}": torch.stack([getattr(critic, q)[layer].get_parameter(kind) for q in ("q1", "q2")])
            for layer, kind in itertools.product(Q_LAYERS, ("weight", "bias"))}


def mismatches(learners: list, batched: BatchedTD3, batches: list[list[Batch]], seed: int = 0) -> list[str]:
    """Where the batched learner differs from the separate `learners` (the same weights at the start):
    actions at batch 1 and 100, the critic and actor losses and every gradient on seed k's batch, and
    every parameter after CHECK_UPDATES updates with the same target noise. Steps both."""
    problems, s = [], len(learners)
    stacked = stack_batches([b[0] for b in batches])
    one = stacked.obs[:, :1]
    for obs, label in ((one, "actions at batch 1"), (stacked.obs, f"actions at batch {BATCH}")):
        got = batched.act(obs)
        for k, learner in enumerate(learners):
            close(problems, f"seed {k} {label}", got[k], learner.act(obs[k]))
    # one critic and one actor step's losses and gradients, with the same noise
    noise = torch.randn(stacked.act.shape, generator=torch.Generator().manual_seed(seed)) * batched.target_noise
    loss, per_seed, _ = batched.critic_objective(batched.critic, batched.actor_target, batched.critic_target, stacked,
                                                 noise)
    grads = torch.autograd.grad(loss, list(batched.critic.values()))
    pi_loss, pi_seed = batched.actor_objective(batched.actor, {k: v.detach() for k, v in batched.critic.items()},
                                               stacked.obs)
    pi_grads = torch.autograd.grad(pi_loss, list(batched.actor.values()))
    for k, learner in enumerate(learners):
        inputs = {**learner.critic_inputs(batches[k][0]), "noise": noise[k]}
        want, _ = td3.critic_loss(**inputs)
        close(problems, f"seed {k} critic loss", per_seed[k].detach(), want.detach())
        mine = critic_params(learner.critic)
        own = [p for q in ("q1", "q2") for p in getattr(learner.critic, q).parameters()]
        want_grads = dict(zip(_q_names(), torch.autograd.grad(want, own)))
        for (name, _), got in zip(mine.items(), grads):
            close(problems, f"seed {k} critic gradient {name}", got[k],
                  torch.stack([want_grads[f"{q}.{name}"] for q in ("q1", "q2")]))
        with frozen(learner.critic):
            want_pi, _ = td3.actor_loss(learner.actor, learner.critic, batches[k][0].obs, learner.precision)
        close(problems, f"seed {k} actor loss", pi_seed[k].detach(), want_pi.detach())
        want_pi_grads = torch.autograd.grad(want_pi, list(actor_params(learner).values()))
        for (name, _), got, want_g in zip(actor_params(learner).items(), pi_grads, want_pi_grads):
            if want_g.abs().max() == 0 and name.startswith("snn"):
                problems.append(f"seed {k} actor gradient {name} is zero: the check would prove nothing")
            close(problems, f"seed {k} actor gradient {name}", got[k], want_g)
    # whole updates: Adam, the delayed actor step and the soft target updates, each seed on its own batches.
    # Compared as each parameter's move over the updates: Adam scales a near-zero gradient's rounding up to
    # a sizeable step, so the moves agree to a share of the largest move, not to float rounding.
    before = [{prefix: {n: v.detach().clone() for n, v in params.items()} for prefix, params in named(ln).items()}
              for ln in learners]
    for u in range(CHECK_UPDATES):
        draws = []
        for k, learner in enumerate(learners):
            torch.manual_seed(10_000 * seed + 100 * u + k)  # the learner draws its noise with torch.randn_like
            draws.append(torch.randn(BATCH, benchlib.ACT_DIM))
            torch.manual_seed(10_000 * seed + 100 * u + k)
            learner.update(batches[k][u % BATCHES_PER_SEED])
        batched.update(stack_batches([b[u % BATCHES_PER_SEED] for b in batches]), torch.stack(draws))
    mine = {"actor": batched.actor, "actor target": batched.actor_target, "critic": batched.critic,
            "critic target": batched.critic_target}
    for k, learner in enumerate(learners):
        for prefix, params in named(learner).items():
            for name, value in params.items():
                start = before[k][prefix][name]
                moved = value.detach() - start
                if name.startswith(("snn", "0.", "2.")) and moved.abs().max() == 0:
                    problems.append(f"seed {k} {prefix} {name} did not move: the check would prove nothing")
                close(problems, f"seed {k} {prefix} {name}: its move over {CHECK_UPDATES} updates",
                      mine[prefix][name][k].detach() - start, moved, rtol=1e-3, atol_scale=1e-2)
    if s > 1 and not problems:  # the seeds must differ, or a mixed-up seed axis would pass unseen
        if torch.equal(batched.actor["snn.linears.0.weight"][0], batched.actor["snn.linears.0.weight"][1]):
            problems.append("seeds 0 and 1 have the same weights: the check would not see the seed axis mixed up")
    return problems


def named(learner) -> dict[str, dict[str, torch.Tensor]]:
    """A learner's actor, critic and targets' parameters under the batched learner's names."""
    return {"actor": actor_params(learner), "actor target": dict(learner.actor_target.named_parameters()),
            "critic": critic_params(learner.critic), "critic target": critic_params(learner.critic_target)}


def _q_names() -> list[str]:
    return [f"{q}.{layer}.{kind}" for q in ("q1", "q2") for layer in Q_LAYERS for kind in ("weight", "bias")]


def check_equivalence(learners: list, batched: BatchedTD3, batches: list[list[Batch]], label: str) -> None:
    """Stop the benchmark (exit 1) unless the batched learner computes what the separate ones do."""
    problems = mismatches(learners, batched, batches)
    if problems:
        print(f"equivalence check FAILED: batched and separate learners differ ({label})\n  "
              + "\n  ".join(problems[:20]), file=sys.stderr)
        raise SystemExit(1)
    print(f"equivalence check passed ({label}): actions, losses, gradients and {CHECK_UPDATES} updates of every seed "
          f"equal to its separate learner's", file=sys.stderr)


# -- timing windows -------------------------------------------------------------------------------------------
def update_window(step: Callable[[int], object], updates: int) -> Callable[[], float]:
    counter = itertools.count()
    return lambda: benchlib.seconds_per_call(lambda: step(next(counter)), updates, WARMUP)


def separate_step(learners, batches):
    return lambda i: [ln.update(batches[k][i % BATCHES_PER_SEED]) for k, ln in enumerate(learners)]


def batched_step(batched: BatchedTD3, stacked: list[Batch]):
    return lambda i: batched.update(stacked[i % BATCHES_PER_SEED])


def env_window(steps: int) -> Callable[[], float]:
    """Seconds per HalfCheetah-v4 step as a run steps it (one env of spikerl's vector env)."""
    env = make_vec_env(ENV_ID, 1)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 1, benchlib.ACT_DIM)).astype(np.float32)
    feed = itertools.cycle(actions)
    return lambda: benchlib.seconds_per_call(lambda: env.step(next(feed)), steps, 5)


def sample_window(calls: int) -> Callable[[], float]:
    """Seconds per replay batch of BATCH (sampling and normalising, as UpdateSchedule samples one)."""
    rng, replay = np.random.default_rng(0), ReplayBuffer(benchlib.OBS_DIM, benchlib.ACT_DIM, 100_000)
    n = 20_000
    replay.add(rng.normal(size=(n, benchlib.OBS_DIM)), rng.uniform(-1, 1, (n, benchlib.ACT_DIM)), rng.normal(size=n),
               rng.normal(size=(n, benchlib.OBS_DIM)), np.zeros(n))
    normalizer = ObsNormalizer(benchlib.OBS_DIM)
    normalizer.update(rng.normal(size=(n, benchlib.OBS_DIM)))
    normalizer.sync()
    gen = torch.Generator().manual_seed(0)
    return lambda: benchlib.seconds_per_call(lambda: replay.sample(BATCH, normalizer, gen), calls, 5)


def compiling(fn: Callable, *args) -> float:
    """Seconds torch.compile spends compiling while `fn(*args)` runs (torch's own timers)."""
    before = compile_seconds()
    fn(*args)
    return compile_seconds() - before


def first_steps(learners, step: Callable[[int], object], obs: torch.Tensor) -> None:
    """A critic-only and an actor update, and an action of each learner (what compiles their graphs)."""
    step(0), step(1)
    for k, learner in enumerate(learners):
        learner.act(obs[k])


# -- memory -----------------------------------------------------------------------------------------------
def state_bytes(batched: BatchedTD3) -> int:
    """Parameters, both targets and Adam's moments of all seeds, in bytes."""
    tensors = [*batched.actor.values(), *batched.actor_target.values(), *batched.critic.values(),
               *batched.critic_target.values()]
    for opt in (batched.actor_opt, batched.critic_opt):
        tensors += [t for state in opt.state.values() for t in state.values() if t.dim() > 0]
    return sum(t.numel() * t.element_size() for t in tensors)


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct tensors autograd saves for backward while `fn` builds its loss: an
    update's activation memory, held until its backward."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def activation_bytes(batched: BatchedTD3, stacked: Batch) -> int:
    """The larger of a critic step's and an actor step's saved tensors (one is freed before the next)."""
    noise = torch.zeros_like(stacked.act)
    critic = saved_bytes(lambda: batched.critic_objective(batched.critic, batched.actor_target, batched.critic_target,
                                                          stacked, noise))
    actor = saved_bytes(lambda: batched.actor_objective(batched.actor, {k: v.detach() for k, v in
                                                                        batched.critic.items()}, stacked.obs))
    return max(critic, actor)


def rss_probe(variant: str, seeds: int) -> int:
    """Peak resident bytes of a process that builds `seeds` learners (separate) or one batched learner
    and takes four updates and actions: run in a fresh interpreter by `measure_rss`."""
    gen = torch.Generator().manual_seed(0)
    learners = separate_learners(seeds, False)
    batches = seed_batches(seeds, gen)
    if variant == "batched":
        batched = BatchedTD3(learners)
        del learners
        stacked = [stack_batches([b[i] for b in batches]) for i in range(BATCHES_PER_SEED)]
        for i in range(4):
            batched.update(stacked[i])
            batched.act(stacked[i].obs[:, :1])
    else:
        for i in range(4):
            separate_step(learners, batches)(i)
            for k, ln in enumerate(learners):
                ln.act(batches[k][i].obs[:1])
    return peak_rss()


def peak_rss() -> int:
    """This process's peak resident bytes: Linux's VmHWM, which starts afresh at exec (ru_maxrss keeps
    the forking parent's peak, here the benchmark's own); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_rss(variant: str, seeds: int, threads: int) -> int:
    cmd = [sys.executable, __file__, "--rss-probe", variant, str(seeds), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["rss_bytes"])


# -- report -----------------------------------------------------------------------------------------------
def comparisons(medians: dict, seeds: list[int], modes: list[str]) -> list[dict]:
    """Per seed count and mode: per-seed update and action times, their speedups (separate / batched),
    and the whole loop per seed and env step with the seeds per core-hour it gives and their ratio."""
    env, sample = medians[("env",)], medians[("sample",)]
    rows = []
    for s, mode in itertools.product(seeds, modes):
        row = {"seeds": s, "mode": mode}
        for variant in ("separate", "batched"):
            upd, act = medians[("update", s, mode, variant)] / s, medians[("act", s, mode, variant)] / s
            loop = env + sample + act + upd
            row.update({f"{variant}_update_seconds_per_seed": upd, f"{variant}_act_seconds_per_seed": act,
                        f"{variant}_loop_seconds_per_seed_step": loop,
                        f"{variant}_seed_steps_per_core_hour": 3600.0 / loop})
        row["update_speedup"] = row["separate_update_seconds_per_seed"] / row["batched_update_seconds_per_seed"]
        row["act_speedup"] = row["separate_act_seconds_per_seed"] / row["batched_act_seconds_per_seed"]
        row["seeds_per_core_hour_gain"] = (row["batched_seed_steps_per_core_hour"]
                                           / row["separate_seed_steps_per_core_hour"])
        rows.append(row)
    if len(modes) > 1:  # each side at its faster mode: the comparison the decision rests on
        for s in seeds:
            mine = [r for r in rows if r["seeds"] == s]
            best = {v: min(r[f"{v}_loop_seconds_per_seed_step"] for r in mine) for v in ("separate", "batched")}
            rows.append({"seeds": s, "mode": "best", **{f"{v}_loop_seconds_per_seed_step": t for v, t in best.items()},
                         **{f"{v}_seed_steps_per_core_hour": 3600.0 / t for v, t in best.items()},
                         "seeds_per_core_hour_gain": best["separate"] / best["batched"]})
    # against one seed per process (S = 1 separate), the alternative of one run per core, per mode
    for row in rows:
        one = next(r for r in rows if r["seeds"] == 1 and r["mode"] == row["mode"]) if 1 in seeds else None
        row["gain_vs_one_seed_per_process"] = (row["batched_seed_steps_per_core_hour"]
                                               / one["separate_seed_steps_per_core_hour"]) if one else None
    return rows


def print_tables(compared: list[dict], memory: list[dict], medians: dict) -> None:
    f = benchlib.fmt
    rows = [[c["seeds"], c["mode"], f(c["separate_update_seconds_per_seed"] * 1e3),
             f(c["batched_update_seconds_per_seed"] * 1e3), f(c["update_speedup"], ".2f", "x"),
             f(c["separate_act_seconds_per_seed"] * 1e3), f(c["batched_act_seconds_per_seed"] * 1e3),
             f(c["act_speedup"], ".2f", "x"), f(c["seeds_per_core_hour_gain"], ".2f", "x")]
            for c in compared if c["mode"] != "best"]
    print(benchlib.markdown(["S", "mode", "separate ms/update/seed", "batched ms/update/seed", "update speedup",
                             "separate ms/action/seed", "batched ms/action/seed", "acting speedup",
                             "seeds per core-hour gain"], rows))
    print(f"\nenv step {medians[('env',)] * 1e6:.0f} us, replay sample {medians[('sample',)] * 1e6:.0f} us")
    for c in compared:
        if c["seeds"] == RULE_SEEDS:
            verdict = "build" if c["seeds_per_core_hour_gain"] >= RULE_GAIN else "do not build"
            print(f"S = {RULE_SEEDS}, {c['mode']}: {c['seeds_per_core_hour_gain']:.2f}x the seeds per core-hour "
                  f"(rule: at least {RULE_GAIN}x on an AVX2 core; this is {torch.backends.cpu.get_cpu_capability()}): "
                  f"{verdict}")
    if memory:
        print(benchlib.markdown(["S", "state MB (all seeds)", "activations MB separate", "activations MB batched",
                                 "RSS MB separate (S processes)", "RSS MB batched"],
                                [[m["seeds"], f(m["state_bytes"] / 2**20), f(m["activation_bytes_separate"] / 2**20),
                                  f(m["activation_bytes_batched"] / 2**20),
                                  f(m["rss_bytes_separate"] / 2**20 if m["rss_bytes_separate"] else None),
                                  f(m["rss_bytes_batched"] / 2**20 if m["rss_bytes_batched"] else None)]
                                 for m in memory]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, help="seed counts S (default 1 2 4 8)")
    parser.add_argument("--updates", type=int, help="timed updates per window, rounded up to even (default 10)")
    parser.add_argument("--calls", type=int, help="timed acting calls per window (default 100)")
    parser.add_argument("--env-steps", type=int, help="timed env steps and replay samples per window (default 500)")
    parser.add_argument("--rss-probe", nargs=2, metavar=("VARIANT", "S"), help=argparse.SUPPRESS)
    benchlib.add_common_options(parser, "experiments/results/bench_seeds.json", precisions=("fp32",))
    args = parser.parse_args(argv)
    if args.rss_probe:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps({"rss_bytes": rss_probe(args.rss_probe[0], int(args.rss_probe[1]))}))
        return 0
    benchlib.resolve_defaults(args, FULL, QUICK)
    updates = args.updates + args.updates % 2  # the same mix of critic-only and actor updates in every window
    modes = ["eager", "compiled"] if args.compiled else ["eager"]
    top, gen = max(args.seeds), torch.Generator().manual_seed(1)
    batches = seed_batches(top, gen)
    learners = {mode: separate_learners(top, mode == "compiled") for mode in modes}

    windows, compile_rows, memory = {}, [], []
    for s in args.seeds:
        stacked = [stack_batches([b[i] for b in batches[:s]]) for i in range(BATCHES_PER_SEED)]
        obs = stacked[0].obs[:, :1]
        for mode in modes:
            # the check steps its own copies: fresh separate learners and the batched learner over them
            check = separate_learners(s, False)
            batched = BatchedTD3(check, compile=mode == "compiled")
            # compiled: the check compiles this S's graphs (update steps and acting); dynamo keeps them
            batched_compile = compiling(check_equivalence, check, batched, batches[:s], f"S={s}, {mode}")
            batched = BatchedTD3(learners[mode][:s], compile=mode == "compiled")
            sep, bat = separate_step(learners[mode][:s], batches), batched_step(batched, stacked)
            if mode == "compiled":  # separate learners share one set of graphs: compiled at the first S only
                separate_compile = compiling(first_steps, learners[mode][:s], sep, obs)
                compile_rows.append({"seeds": s, "batched_compile_seconds": batched_compile,
                                     "separate_compile_seconds": separate_compile})
            windows[("update", s, mode, "separate")] = update_window(sep, updates)
            windows[("update", s, mode, "batched")] = update_window(bat, updates)
            separate_act = [(ln, obs[k]) for k, ln in enumerate(learners[mode][:s])]
            windows[("act", s, mode, "separate")] = lambda pairs=separate_act: benchlib.seconds_per_call(
                lambda: [ln.act(o) for ln, o in pairs], args.calls, 5)
            windows[("act", s, mode, "batched")] = lambda b=batched, o=obs: benchlib.seconds_per_call(
                lambda: b.act(o), args.calls, 5)
        eager = BatchedTD3(learners["eager"][:s])
        eager.update(stacked[0]), eager.update(stacked[1])  # Adam's state exists after an actor step
        one = BatchedTD3(learners["eager"][:1])
        memory.append({"seeds": s, "state_bytes": state_bytes(eager),
                       "activation_bytes_separate": activation_bytes(one, stack_batches([batches[0][0]])),
                       "activation_bytes_batched": activation_bytes(eager, stacked[0])})
    windows[("env",)] = env_window(args.env_steps)
    windows[("sample",)] = sample_window(args.env_steps)
    samples = benchlib.interleave(windows, args.rounds)
    medians = {key: statistics.median(values) for key, values in samples.items()}

    if not args.quick:  # fresh processes: S separate runs cost S of the one-seed process
        rss_one = measure_rss("separate", 1, args.threads or 1)
        for m in memory:
            m["rss_bytes_separate"] = m["seeds"] * rss_one
            m["rss_bytes_batched"] = measure_rss("batched", m["seeds"], args.threads or 1)
    else:
        for m in memory:
            m["rss_bytes_separate"] = m["rss_bytes_batched"] = None
    compared = comparisons(medians, args.seeds, modes)
    print_tables(compared, memory, medians)
    results = [{"kind": key[0], "seeds": key[1] if len(key) > 1 else None, "mode": key[2] if len(key) > 2 else None,
                "variant": key[3] if len(key) > 3 else None, "median_seconds": medians[key], "samples_seconds": values}
               for key, values in samples.items()]
    results += [{"kind": "memory", **m} for m in memory] + [{"kind": "compile", **c} for c in compile_rows]
    settings = {"seeds": args.seeds, "batch": BATCH, "precision": "fp32", "modes": modes, "rounds": args.rounds,
                "updates_per_window": updates, "calls_per_window": args.calls, "env_steps_per_window": args.env_steps,
                "warmup_per_window": WARMUP, "env": ENV_ID, "schedule": "one update per env step (50 every 50)",
                **benchlib.PAPER_SIZES}
    benchlib.write_report(args.out, "bench_seeds.py", argv, settings, results, compared)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
