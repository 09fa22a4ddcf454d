"""The learner shell every off-policy algorithm shares; an algorithm supplies pure loss functions and
says what they take.

What lives here, once for every algorithm: averaging gradients across ranks, compiling the two objectives
and acting (with the way back to eager), mixed precision and the skip counters, fused Adam, soft
target updates, the state a checkpoint saves, and the `precision=auto` probe. Actions are in [-1, 1]
throughout; noise scales are fractions of that range.

An update is the target's own learning where it has any (spikerl/rl/targets.py: Proxy Target's
regression), a critic step, then (every `policy_delay` iterations) an actor step with the critic frozen
and the soft target updates: TD3, DDPG and SAC all follow that shape.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from ...errors import BAD_INPUT, SpikeRLError
from ...runtime.compiler import CUDA_GRAPH_MODES, CompiledOrEager
from ...runtime.distributed import GradientMean
from ...runtime.precision import Precision, Probe
from ..replay import Batch


class HyperparameterError(SpikeRLError, ValueError):
    """A hyperparameter out of its range: `key` names it (the entry point says `algo.<key>`). Bad input:
    exit code 2."""

    exit_code = BAD_INPUT

    def __init__(self, key: str, message: str):
        super().__init__(f"{key} {message}")
        self.key = key


def check_range(key: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    if not (low <= value < high if high_open else low <= value <= high):
        raise HyperparameterError(key, f"must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {value}")


def check_positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise HyperparameterError(key, f"must be positive, got {value}")


def check_non_negative(**values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise HyperparameterError(key, f"must not be negative, got {value}")


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: a deep copy with gradients off."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@contextlib.contextmanager
def frozen(module: nn.Module):
    """`module`'s parameters need no gradient inside the block (and are left requiring one after)."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


def adam(groups: list[tuple[nn.Module, float]]) -> torch.optim.Adam:
    """One Adam over (module, learning rate) groups (Adam's state is per parameter, so one optimizer with
    groups computes what one optimizer per group would), with its fused kernel where this torch and
    device have it (CPU and CUDA since torch 2.4): one call updates every parameter, instead of a loop
    of per-tensor operations that cost a TD3 update about 0.9 ms on a CPU (experiments/profile_update.py).
    Elsewhere, the default implementation."""
    param_groups = [{"params": list(module.parameters()), "lr": lr} for module, lr in groups]
    try:
        return torch.optim.Adam(param_groups, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(param_groups)


def policy_action(actor: nn.Module, obs: torch.Tensor, precision: Precision) -> torch.Tensor:
    """The actor's deterministic action, fp32 (one compiled graph for every batch size)."""
    with precision.autocast():
        return actor(obs).float()


def q_ensemble_loss(critic: nn.Module, batch: Batch, target: torch.Tensor, precision: Precision):
    """Sum over the critic's Q-networks of the mean squared TD error; returns (loss, {mean Q1})."""
    with precision.autocast():
        q = critic(batch.obs, batch.act)
    q = q.float()
    loss = ((q - target) ** 2).mean(-1).sum()
    return loss, {"train/q_mean": q[0].detach().mean()}


class Learner:
    """The shell: owns the networks, their targets and optimizers, and runs an update. A subclass sets
    `name`, `num_q` (Q-networks its critic has), `critic_loss` and `actor_loss` (pure functions that
    return (loss, metrics); each is one compiled graph), and says what they take by name
    (`critic_inputs`, `actor_inputs`: keyword arguments, so that a loss's inputs cannot shift).
    `act_noise` is the Gaussian noise the collector adds to `explore`'s actions (0 where the policy
    samples its own); `shared_noise`, whether one draw serves all of an action's dimensions."""

    name: ClassVar[str]
    num_q: ClassVar[int]
    critic_loss: ClassVar[Callable]
    actor_loss: ClassVar[Callable]
    uses_actor_target: ClassVar[bool] = True
    act_noise: float = 0.0
    shared_noise: bool = False

    def __init__(self, actor: nn.Module, critic: nn.Module, obs_dim: int, act_dim: int, *, gamma: float,
                 polyak: float, actor_lr: float, critic_lr: float, policy_delay: int = 1,
                 policy: nn.Module | None = None, policy_extras: dict[str, tuple[nn.Module, float]] | None = None,
                 precision: Precision | None = None, sync: GradientMean | None = None, compile: bool = False,
                 compile_mode: str = "default", target: str = "polyak", target_settings: Mapping | None = None):
        """Every learner takes the task's `obs_dim` and `act_dim` (SAC builds its log-std network from
        them). `policy` is the module the actor step runs (the actor itself unless the algorithm puts
        more around it, as SAC does its log-std network); `policy_extras` are its other trained
        networks, by the name a checkpoint keeps them under, each with its learning rate. `target` is
        where the critic's target action comes from (spikerl/rl/targets.py), for an algorithm that
        keeps a target actor, with `target_settings` (each kind's, under its key)."""
        check_range("gamma", gamma, 0.0, 1.0)
        check_range("polyak", polyak, 0.0, 1.0, high_open=True)
        check_positive(actor_lr=actor_lr, critic_lr=critic_lr, policy_delay=policy_delay)
        if getattr(critic, "n", self.num_q) != self.num_q:
            raise HyperparameterError("critic", f"has {critic.n} Q-networks; {self.name} uses {self.num_q}")
        self.gamma, self.polyak, self.policy_delay = gamma, polyak, policy_delay
        policy_extras = policy_extras or {}
        self.actor, self.critic, self.policy = actor, critic, policy or actor
        self.extra_networks = {name: module for name, (module, _) in policy_extras.items()}
        self.sync = sync  # a distributed job's: every optimizer step averages its gradients over the ranks
        if sync is not None:  # every rank starts from rank 0's weights, so the targets below do too
            for module in (actor, critic, *self.extra_networks.values()):
                sync.broadcast(module)
        self.critic_target = frozen_copy(critic)
        self.actor_opt = adam([(actor, actor_lr), *policy_extras.values()])
        self.critic_opt = adam([(critic, critic_lr)])
        self.precision = precision or Precision("fp32")
        self.compile, self.compile_mode = compile, compile_mode
        self.critic_objective = self.compiled_objective(type(self).critic_loss)
        self.actor_objective = self.compiled_objective(type(self).actor_loss)
        # Acting: one graph over the whole actor (about 20 small operations at batch 1, whose dispatch
        # costs far more than their arithmetic), its batch dimension symbolic so that one env (batch 1)
        # and an evaluation's vector of envs share it. Never CUDA graphs: acting shapes vary.
        self.policy_action = self.compiled_acting(policy_action)
        self.cuda_graphs = compile and compile_mode in CUDA_GRAPH_MODES
        from ..targets import make_target  # it builds on this module's helpers

        self.target = make_target(self, target, target_settings or {}, actor, obs_dim, act_dim) \
            if self.uses_actor_target else None
        self.actor_target = self.target.network if self.target is not None else None  # the TD target's actor
        self.updates = 0
        device = next(critic.parameters()).device
        # Iterations with a skipped optimizer step (non-finite gradients), all and the latest run of them:
        # counted on the device, so an update never waits for it; read when metrics are logged.
        self.skip_counts = torch.zeros(2, device=device)

    @classmethod
    def hyperparameters(cls) -> dict[str, bool]:
        """The algorithm's hyperparameters, its config keys: the keyword-only arguments of its own
        `__init__` (name -> whether it is required); the rest are the shell's, which the job sets."""
        import inspect

        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default is inspect.Parameter.empty for p in params if p.kind is p.KEYWORD_ONLY}

    def compiled_objective(self, fn: Callable) -> Callable:
        """A step's forward `fn` as one graph (with `compile`; the neuron kernels traced into it), and so its
        backward; the gradients are averaged after it, outside the graphs."""
        return CompiledOrEager(fn, fullgraph=True, mode=self.compile_mode) if self.compile else fn

    def compiled_acting(self, fn: Callable) -> Callable:
        """`fn(policy, obs, precision, ...)` compiled (with `compile`), obs's batch dimension symbolic."""
        return CompiledOrEager(fn, unbacked=(1, 0)) if self.compile else fn

    # -- what an algorithm supplies -------------------------------------------------------------
    def critic_inputs(self, batch: Batch) -> dict:
        raise NotImplementedError

    def actor_inputs(self, batch: Batch) -> dict:
        raise NotImplementedError

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """The action to explore with, before the collector's `act_noise`: the deterministic one here."""
        return self.act(obs)

    # -- the shell ------------------------------------------------------------------------------
    @property
    def batches_per_update(self) -> int:
        """Replay batches an update takes: one, unless its target learns from more (Proxy Target)."""
        return self.target.batches_per_update if self.target is not None else 1

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

    def update(self, batch: Batch, lead: Sequence[Batch] = ()) -> dict[str, torch.Tensor]:
        """One iteration: the target's own learning (a proxy's regression, on `lead` then `batch`: the
        replay batches sampled before this one, `batches_per_update - 1` of them), a critic step, and
        every `policy_delay` iterations an actor step and soft target updates. Nothing here waits for
        the device: the metrics are 0-dim tensors on it."""
        if len(lead) + 1 != self.batches_per_update:
            raise ValueError(f"an update takes {self.batches_per_update} replay batches, got {len(lead) + 1}")
        metrics, skipped = self.target.fit([*lead, batch]) if self.target is not None else ({}, None)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the critic's step: earlier graph outputs are free
        loss_q, info = self.critic_objective(**self.critic_inputs(batch))
        step = self.precision.step(loss_q, self.critic_opt, self.sync)
        skipped = step if skipped is None else torch.maximum(skipped, step)
        # copies: a CUDA graph's outputs are overwritten by its next replay
        metrics.update({"loss/critic": loss_q.detach().clone(), **{k: v.clone() for k, v in info.items()}})
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            with frozen(self.critic):
                loss_pi, info = self.actor_objective(**self.actor_inputs(batch))
            skipped = torch.maximum(skipped, self.precision.step(loss_pi, self.actor_opt, self.sync))
            self.soft_update()
            metrics.update({"loss/actor": loss_pi.detach().clone(), **{k: v.clone() for k, v in info.items()}})
        self.precision.end_iteration()
        total, run = self.skip_counts  # the run of skipped iterations restarts at 0 after a good one
        total.add_(skipped)
        run.mul_(skipped).add_(skipped)
        return metrics

    def targets(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) pairs that Polyak averaging moves: the critic's, and the target's own."""
        return [*(self.target.soft_pairs() if self.target is not None else []), (self.critic, self.critic_target)]

    @torch.no_grad()
    def soft_update(self) -> None:
        """target <- polyak * target + (1 - polyak) * online, for every network with a target."""
        for online, target in self.targets():
            torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - self.polyak)

    def networks(self) -> dict[str, nn.Module]:
        """Every network a checkpoint keeps, by the name it is saved under."""
        nets = {"actor": self.actor, "critic": self.critic, **self.extra_networks, "critic_target": self.critic_target}
        return {**nets, **self.target.networks()} if self.target is not None else nets

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer a checkpoint keeps, by the name it is saved under."""
        own = {"actor_opt": self.actor_opt, "critic_opt": self.critic_opt}
        return {**own, **self.target.optimizers()} if self.target is not None else own

    def state_dict(self) -> dict:
        return {
            **{name: net.state_dict() for name, net in self.networks().items()},
            **{name: opt.state_dict() for name, opt in self.optimizers().items()},
            "precision": self.precision.state_dict(),
            "updates": self.updates,
            "skip_counts": self.skip_counts.cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name, net in self.networks().items():
            net.load_state_dict(state[name])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state[name])
        self.precision.load_state_dict(state["precision"])
        self.updates = int(state["updates"])
        if "skip_counts" in state:
            self.skip_counts.copy_(state["skip_counts"])


def update_probe(build: Callable[[Precision], Learner], obs_dim: int, act_dim: int, batch_size: int,
                 samples: int = 6, modes: tuple[str, str] = ("fp32", "bf16")) -> Probe:
    """A probe of this run's own work in bf16 against fp32, for `precision=auto`: two learners that
    `build` makes (copies of the run's networks, the run's algorithm) take updates on a random batch,
    each followed by a batch-1 action as the collector takes one per update (a lone matmul flatters
    bf16; a run also pays for casts, element-wise work and acting). Each sample times fp32, bf16, bf16,
    fp32 (the order cancels a drift); the ratio is the median over `samples`. The global random state
    is left as it was."""

    def ratio() -> float:
        import statistics
        import time

        with torch.random.fork_rng():
            torch.manual_seed(0)
            batch = Batch(obs=torch.randn(batch_size, obs_dim), act=torch.rand(batch_size, act_dim) * 2 - 1,
                          rew=torch.randn(batch_size), next_obs=torch.randn(batch_size, obs_dim),
                          terminated=torch.zeros(batch_size))
            one = torch.randn(1, obs_dim)
            fp32, bf16 = (build(Precision(mode)) for mode in modes)

            def seconds(learner: Learner) -> float:
                start = time.perf_counter()
                for _ in range(2):  # a critic-only and an actor update where the actor waits a step
                    learner.update(batch, [batch] * (learner.batches_per_update - 1))
                    learner.explore(one)
                return time.perf_counter() - start

            for learner in (fp32, bf16, fp32, bf16):
                seconds(learner)  # warm-up: compiling (where the run compiles) and oneDNN's kernel choice

            def sample() -> float:
                fp32_seconds = seconds(fp32)
                bf16_seconds = seconds(bf16) + seconds(bf16)
                return (fp32_seconds + seconds(fp32)) / bf16_seconds

            return statistics.median(sample() for _ in range(samples))

    return Probe(ratio, f"an update and an action at batch {batch_size}")
