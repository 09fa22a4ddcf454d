"""TD3 (Fujimoto et al., 2018) for any actor with the common interface.

The losses are pure functions of their networks and a batch, so they can be tested in isolation;
`TD3` owns the networks, their targets and optimizers, and the update schedule (policy delay,
soft target updates). Actions are in [-1, 1] throughout; noise scales are fractions of that range.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..runtime.compiler import CUDA_GRAPH_MODES, CompiledOrEager
from ..runtime.precision import Precision, Probe
from .normalizer import KINDS as OBS_NORMS
from .replay import Batch


@dataclass
class AlgoConfig:
    """The `algo` config section: TD3's hyperparameters, the update schedule and the observation
    normalisation (noise scales are fractions of the action half-range)."""

    name: str
    gamma: float
    polyak: float  # target <- polyak * target + (1 - polyak) * online
    policy_delay: int
    act_noise: float
    target_noise: float
    noise_clip: float
    actor_lr: float
    critic_lr: float
    batch_size: int
    replay_size: int
    update_every: int  # every update_every env steps of a rank ...
    gradient_steps: int  # ... this many updates
    obs_norm: str
    obs_clip: float

    CHOICES = {"obs_norm": OBS_NORMS}
    POSITIVE = ("batch_size", "replay_size", "update_every", "policy_delay", "actor_lr", "critic_lr")
    NON_NEGATIVE = ("gradient_steps", "act_noise", "target_noise", "noise_clip")


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: a deep copy with gradients off."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def td_target(
    batch: Batch,
    noise: torch.Tensor,
    actor_target: nn.Module,
    critic_target: nn.Module,
    gamma: float,
    noise_clip: float,
    precision: Precision,
) -> torch.Tensor:
    """r + gamma * (1 - terminated) * min(Q1', Q2')(s', clip(pi'(s') + clip(noise), -1, 1)), with
    `noise` drawn by the caller (N(0, target_noise^2) per action): drawn outside, so a compiled update
    consumes the same random numbers as an eager one.

    Only `terminated` stops the bootstrap: a time-limit truncation keeps it. The target is fp32 even
    when the networks run under autocast."""
    with precision.autocast():
        next_act = actor_target(batch.next_obs).float()
    next_act = (next_act + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)
    with precision.autocast():
        q1, q2 = critic_target(batch.next_obs, next_act)
    next_q = torch.min(q1.float(), q2.float())
    return batch.rew + gamma * (1.0 - batch.terminated) * next_q


def critic_loss(critic: nn.Module, batch: Batch, target: torch.Tensor, precision: Precision):
    """Mean squared TD error of both critics; returns (loss, mean Q1)."""
    with precision.autocast():
        q1, q2 = critic(batch.obs, batch.act)
    q1, q2 = q1.float(), q2.float()
    loss = ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
    return loss, q1.detach().mean()


def critic_objective(critic: nn.Module, actor_target: nn.Module, critic_target: nn.Module, batch: Batch,
                     noise: torch.Tensor, gamma: float, noise_clip: float, precision: Precision):
    """The critic step's forward: the TD target and the critics' loss (one compiled graph)."""
    target = td_target(batch, noise, actor_target, critic_target, gamma, noise_clip, precision)
    return critic_loss(critic, batch, target, precision)


def actor_objective(actor: nn.Module, critic: nn.Module, obs: torch.Tensor, precision: Precision) -> torch.Tensor:
    """-Q1(s, pi(s)), the actor step's forward (one compiled graph). Called with the critic frozen."""
    with precision.autocast():
        q = critic.q1_value(obs, actor(obs))
    return -q.float().mean()


def policy_action(actor: nn.Module, obs: torch.Tensor, precision: Precision) -> torch.Tensor:
    """The actor's deterministic action, fp32 (one compiled graph for every batch size)."""
    with precision.autocast():
        return actor(obs).float()


@contextlib.contextmanager
def frozen(module: nn.Module):
    """`module`'s parameters need no gradient inside the block (and are left requiring one after)."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


def actor_loss(actor: nn.Module, critic: nn.Module, obs: torch.Tensor, precision: Precision) -> torch.Tensor:
    """-Q1(s, pi(s)). The critic's parameters are frozen while it is evaluated, so this loss leaves
    no gradient on the critic; gradients flow through the critic's input into the actor only."""
    with frozen(critic):
        return actor_objective(actor, critic, obs, precision)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel where this torch and device have it (CPU and CUDA since torch 2.4): one
    call updates every parameter, instead of a loop of per-tensor operations that cost a TD3 update
    about 0.9 ms on a CPU (experiments/profile_update.py). Elsewhere, the default implementation."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


class TD3:
    def __init__(
        self,
        actor: nn.Module,
        critic: nn.Module,
        *,
        actor_lr: float,
        critic_lr: float,
        gamma: float,
        polyak: float,
        policy_delay: int,
        target_noise: float,
        noise_clip: float,
        precision: Precision | None = None,
        wrap=None,
        compile: bool = False,
        compile_mode: str = "default",
    ):
        # `wrap` (DDP in a distributed job) is applied first: it broadcasts rank 0's weights, so the
        # targets copied below start equal on every rank. Losses that must sync gradients run through
        # the wrapped modules; acting, targets and checkpoints use the plain ones.
        self.actor_train, self.critic_train = (wrap(actor), wrap(critic)) if wrap else (actor, critic)
        self.actor, self.critic = actor, critic
        self.actor_target = frozen_copy(actor)
        self.critic_target = frozen_copy(critic)
        self.actor_opt = adam(actor.parameters(), actor_lr)
        self.critic_opt = adam(critic.parameters(), critic_lr)
        self.gamma, self.polyak, self.policy_delay = gamma, polyak, policy_delay
        self.target_noise, self.noise_clip = target_noise, noise_clip
        self.precision = precision or Precision("fp32")
        # `compile`: each step's forward is one graph (the neuron kernels traced into it) and so is its
        # backward. Under DDP, whose forward dynamo cannot trace, the graphs break around its calls.
        objectives = (critic_objective, actor_objective)
        if compile:
            objectives = tuple(CompiledOrEager(fn, fullgraph=wrap is None, mode=compile_mode) for fn in objectives)
        self.critic_objective, self.actor_objective = objectives
        # Acting: one graph over the whole actor (about 20 small operations at batch 1, whose dispatch
        # costs far more than their arithmetic), its batch dimension symbolic so that one env (batch 1)
        # and an evaluation's vector of envs share it. Never CUDA graphs: acting shapes vary.
        self.policy_action = CompiledOrEager(policy_action, unbacked=(1, 0)) if compile else policy_action
        self.cuda_graphs = compile and compile_mode in CUDA_GRAPH_MODES
        self.updates = 0
        device = next(critic.parameters()).device
        # Iterations with a skipped optimizer step (non-finite gradients), all and the latest run of them:
        # counted on the device, so an update never waits for it; read when metrics are logged.
        self.skip_counts = torch.zeros(2, device=device)

    @property
    def skipped(self) -> int:
        return int(self.skip_counts[0].item())

    @property
    def consecutive_skips(self) -> int:
        return int(self.skip_counts[1].item())

    @torch.no_grad()  # not inference_mode: its tensors would need compiled kernels of their own
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action for normalised observations (no exploration noise)."""
        return self.policy_action(self.actor, obs, self.precision)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One TD3 iteration: a critic step, and every `policy_delay` iterations an actor step and
        soft target updates. Nothing here waits for the device: the metrics are 0-dim tensors on it."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: the last one's graph outputs are free
        noise = torch.randn_like(batch.act) * self.target_noise
        loss_q, q_mean = self.critic_objective(self.critic_train, self.actor_target, self.critic_target, batch,
                                               noise, self.gamma, self.noise_clip, self.precision)
        skipped = self.precision.step(loss_q, self.critic_opt)
        # copies: a CUDA graph's outputs are overwritten by its next replay
        metrics = {"loss/critic": loss_q.detach().clone(), "train/q_mean": q_mean.clone()}
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            # the critic is called unwrapped: DDP would expect gradients for its frozen parameters
            with frozen(self.critic):
                loss_pi = self.actor_objective(self.actor_train, self.critic, batch.obs, self.precision)
            skipped = torch.maximum(skipped, self.precision.step(loss_pi, self.actor_opt))
            self.soft_update()
            metrics["loss/actor"] = loss_pi.detach().clone()
        self.precision.end_iteration()
        total, run = self.skip_counts  # the run of skipped iterations restarts at 0 after a good one
        total.add_(skipped)
        run.mul_(skipped).add_(skipped)
        return metrics

    @torch.no_grad()
    def soft_update(self) -> None:
        """target <- polyak * target + (1 - polyak) * online, for actor and critic."""
        for online, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - self.polyak)

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "precision": self.precision.state_dict(),
            "updates": self.updates,
            "skip_counts": self.skip_counts.cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.precision.load_state_dict(state["precision"])
        self.updates = int(state["updates"])
        if "skip_counts" in state:
            self.skip_counts.copy_(state["skip_counts"])


def update_probe(actor: nn.Module, critic: nn.Module, obs_dim: int, act_dim: int, batch_size: int,
                 samples: int = 6, modes: tuple[str, str] = ("fp32", "bf16"), **hyper) -> Probe:
    """A probe of this run's own work in bf16 against fp32, for `precision=auto`: copies of `actor` and
    `critic` take TD3 updates on a random batch, each followed by a batch-1 action as the collector
    takes one per update (a lone matmul flatters bf16; a run also pays for casts, element-wise work and
    acting). Each sample times fp32, bf16, bf16, fp32 (the order cancels a drift); the ratio is the
    median over `samples`. The global random state is left as it was."""

    def ratio() -> float:
        import statistics
        import time

        with torch.random.fork_rng():
            torch.manual_seed(0)
            batch = Batch(obs=torch.randn(batch_size, obs_dim), act=torch.rand(batch_size, act_dim) * 2 - 1,
                          rew=torch.randn(batch_size), next_obs=torch.randn(batch_size, obs_dim),
                          terminated=torch.zeros(batch_size))
            one = torch.randn(1, obs_dim)
            fp32, bf16 = (TD3(copy.deepcopy(actor), copy.deepcopy(critic), precision=Precision(mode), **hyper)
                          for mode in modes)

            def seconds(learner: TD3) -> float:
                start = time.perf_counter()
                for _ in range(2):  # a critic-only and an actor update
                    learner.update(batch)
                    learner.act(one)
                return time.perf_counter() - start

            for learner in (fp32, bf16, fp32, bf16):
                seconds(learner)  # warm-up: compiling (where the run compiles) and oneDNN's kernel choice

            def sample() -> float:
                fp32_seconds = seconds(fp32)
                bf16_seconds = seconds(bf16) + seconds(bf16)
                return (fp32_seconds + seconds(fp32)) / bf16_seconds

            return statistics.median(sample() for _ in range(samples))

    return Probe(ratio, f"a TD3 update and an action at batch {batch_size}")
