"""Quantisation-aware fine-tuning (QAT) of a trained spiking actor for a target's integer rules:
`python -m spikerl.export RUN --quantize int8 --target T --qat-updates N`.

The run's learner is rebuilt from its checkpoint (`spikerl.job.checkpoint_learner`: actor, critic,
targets, optimizers; the algorithm's settings and batch size from the run's config.yaml) and takes N
of its own updates (`UpdateSchedule`) on the checkpoint's replay, or on one refilled by acting with the
trained actor plus the run's exploration noise. The observation normaliser stays at the checkpoint's
statistics: the exported host normalises with them.

During the updates the actor's chip weights and biases are fake-quantised (`FakeQuantizer`): the
forward uses the weights the export's integers stand for, computed by the export's own code
(`build_graph`, then `quantize.quantize`) from the current float weights, so scales, exponents and
units follow the weights as they move; the backward passes the gradient straight through to the
float weights (the straight-through estimator). A Polyak target actor computes with its own weights
fake-quantised the same way, so the critic's TD target follows the policy as deployed.

Under `float` that forward is the deployed actor's computation (int8 weights, float32 neurons). Under
`loihi` it is not all of it: the neurons run in float on real-valued input, so the integer neurons'
arithmetic (decays rounded toward zero, u wrapped and v clipped to 24 bits), the floor after a
negative weight exponent and the rounding of real input to 8-bit graded spikes are not modelled.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import FAILED
from ..runtime import checkpoint
from ..runtime.checkpoint import CheckpointError
from .nir_graph import ExportError, build_graph, graph_input_range, refuse_unexportable
from .quantize import QuantizeError, quantize
from .simulate import predecessors

if TYPE_CHECKING:
    from ..rl.learners import Learner
    from ..rl.normalizer import ObsNormalizer

CHECKPOINT = "qat.pt"  # the fine-tuned learner, written beside the bundle
DEFAULT_COLLECT = 10_000  # env steps refilling a replay where the checkpoint holds none: 10 HalfCheetah episodes
DEFAULT_LR_FACTOR = 0.1   # default --qat-lr: the run's actor learning rate times this

NOT_MODELLED = {
    "float": "nothing: int8 weights and float32 neurons are what the forward computes",
    "loihi": "the integer neurons (decays rounded toward zero, u wrapped and v clipped to 24 bits), the floor "
             "after a negative weight exponent, and the rounding of real-valued input to 8-bit graded spikes: the "
             "forward runs float neurons on real input with the weights the integers stand for",
}


class FakeQuantizer:
    """An actor's chip weights and biases (its `chip_layers`) as the export quantises them for `target`.

    `attach` puts a parametrization on each of those parameters; `detach` takes them off again, leaving
    the float weights. Each chip weight must be a parameter of the actor itself: a layer computed from
    several (ILC-SAN's connections, a membrane decoder's grouped weights) is refused (ExportError)."""

    def __init__(self, actor: nn.Module, target: str, input_range: float | None, scheme: str = "int8"):
        self.actor, self.target, self.input_range, self.scheme = actor, target, input_range, scheme
        self.raw = False  # while the export's code reads the weights: the parametrizations pass them as they are
        graph, neurons = build_graph(actor)
        preds = predecessors(graph)
        owners = {id(p): (module, name) for module in actor.modules()
                  for name, p in module.named_parameters(recurse=False)}
        self.slots: list[tuple[nn.Module, str, str, str]] = []  # (module, parameter name, synapse node, weight | bias)
        for layer, neuron in zip(actor.chip_layers(), neurons):
            synapse = preds[neuron][0]
            tensors = [("weight", layer.weight), ("bias", layer.bias)]
            if layer.recurrent is not None or any(t is not None and id(t) not in owners for _, t in tensors):
                raise ExportError(f"quantisation-aware fine-tuning takes chip weights that are the actor's own "
                                  f"parameters; {type(actor).__name__}'s {synapse!r} is computed from several "
                                  f"(or has a recurrent edge)")
            self.slots += [(*owners[id(t)], synapse, part) for part, t in tensors if t is not None]
        self.originals: list[torch.Tensor] = []
        self._seen: list[torch.Tensor] | None = None
        self._values: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(synapse for _, _, synapse, _ in self.slots))

    def attach(self) -> None:
        self.raw = True  # registering runs each parametrization once, before every original is known
        try:
            for module, name, synapse, part in self.slots:
                parametrize.register_parametrization(module, name, _Dequantized(self, synapse, part))
                self.originals.append(getattr(module.parametrizations, name).original)
        finally:
            self.raw = False

    def detach(self) -> None:
        for module, name, _, _ in self.slots:
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        self.originals, self._seen = [], None

    def dequantized(self) -> dict[tuple[str, str], torch.Tensor]:
        """{(synapse node, weight | bias): the float32 values the export's integers stand for}, recomputed
        whenever the float weights differ from those last quantised (an optimizer step, a soft update)."""
        if self._seen is None or not all(torch.equal(a, b) for a, b in zip(self._seen, self.originals)):
            self.raw = True
            try:
                quant = quantize(build_graph(self.actor)[0], self.target, self.scheme, self.input_range)
            except QuantizeError as exc:
                raise ExportError(f"cannot quantise for {self.target} while fine-tuning: {exc}",
                                  exit_code=FAILED) from None
            finally:
                self.raw = False
            self._values = {(synapse, part): torch.from_numpy(np.asarray(getattr(quant.graph.nodes[synapse], part),
                                                                         np.float32))
                            for _, _, synapse, part in self.slots}
            self._seen = [p.detach().clone() for p in self.originals]
        return self._values


class _Dequantized(nn.Module):
    """A parametrization: forward gives the dequantised tensor, backward the float tensor's gradient."""

    def __init__(self, quantizer: FakeQuantizer, synapse: str, part: str):
        super().__init__()
        self.quantizer, self.key = quantizer, (synapse, part)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.quantizer.raw:
            return w
        # q + (w - w) is q exactly, and its gradient with respect to w is the identity
        return self.quantizer.dequantized()[self.key].to(w) + (w - w.detach())


@dataclass
class Prepared:
    """A checkpoint's learner rebuilt for fine-tuning, before any update: what `prepare` checked."""

    learner: Learner
    normalizer: ObsNormalizer
    batch_size: int
    quantizers: list[FakeQuantizer]  # the actor's, and its Polyak target's where it has one (none: float fine-tuning)
    target: str


@dataclass
class FineTuned:
    actor: nn.Module  # float weights, eval mode: what the export then quantises
    state: dict       # a checkpoint of the fine-tuned learner (`spikerl.export` and `spikerl.evaluate` read it)
    record: dict      # what bundle.json records under quantization.qat


def run_settings(path: str | Path) -> tuple[dict, int]:
    """The run's `algo` spec and `train.batch_size`, from its config.yaml (CheckpointError without one)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config = checkpoint.run_folder(path) / "config.yaml"
    try:
        resolved = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    except FileNotFoundError:
        raise CheckpointError(f"no {config}: quantisation-aware fine-tuning takes the learner's settings from the "
                              f"run's config.yaml (a checkpoint file inside its run folder's checkpoints/)") from None
    except (OSError, ValueError, OmegaConfBaseException) as exc:
        raise CheckpointError(f"cannot read {config}: {type(exc).__name__}") from None
    algo, batch = resolved.get("algo"), (resolved.get("train") or {}).get("batch_size")
    if not isinstance(algo, dict) or not isinstance(batch, int):
        raise CheckpointError(f"{config} has no algo section or train.batch_size")
    return algo, batch


def refill(state: dict, learner, normalizer, steps: int, seed: int):
    """A replay of `steps` env steps acted by the trained actor plus the run's exploration noise (the
    learner's explore action and act_noise, as the run's collector after its random start), the
    normaliser frozen; returns (replay, mean return of the episodes that ended)."""
    from ..rl.collector import Collector
    from ..rl.evaluation import greedy_policy
    from ..rl.replay import ReplayBuffer
    from ..rl.sections import EnvConfig
    from ..telemetry.metrics import RunningMeans

    meta = state["meta"]
    replay = ReplayBuffer(meta["obs_dim"], meta["act_dim"], steps)
    env = EnvConfig(name=meta["env_id"], id=meta["env_id"], num_envs=1, max_episode_steps=meta.get("max_episode_steps"))
    # the collector fits its normaliser to what it sees: a copy takes that, the policy keeps the frozen one
    collector = Collector(env, greedy_policy(learner, normalizer, explore=True), replay, copy.deepcopy(normalizer),
                          act_noise=learner.act_noise, seed=seed, shared_noise=learner.shared_noise)
    window = RunningMeans()
    try:
        for step in range(steps):
            collector.step(False, step, window)
    finally:
        collector.close()
    return replay, window.pop().get("train/episode_return")


def prepare(state: dict, path: str | Path, actor: nn.Module, target: str, scheme: str = "int8") -> Prepared:
    """Everything fine-tuning needs, checked before any of it runs: `actor` (the checkpoint's, as the
    export rebuilt it) exportable, the checkpoint's whole learner, the run's config.yaml beside it, chip
    weights a parametrization can hold. Raises CheckpointError / ConfigError / ExportError (one line)."""
    from ..job import checkpoint_learner

    refuse_unexportable(actor)  # an ANN, or an actor NIR cannot express, as the plain export says it
    if "critic" not in (state.get("learner") or {}):
        raise CheckpointError("the checkpoint holds the actor alone: quantisation-aware fine-tuning needs the run's "
                              "learner (critic, targets, optimizers), which a training run's checkpoints keep")
    algo, batch_size = run_settings(path)
    learner, normalizer = checkpoint_learner(state, algo)
    input_range = graph_input_range(learner.actor.encoder, normalizer, target)
    quantizers = [FakeQuantizer(learner.actor, target, input_range, scheme)]
    if type(learner.actor_target) is type(learner.actor):  # a Polyak copy; Proxy Target's MLP has no chip form
        quantizers.append(FakeQuantizer(learner.actor_target, target, input_range, scheme))
    return Prepared(learner, normalizer, batch_size, quantizers, target)


def fine_tune(prepared: Prepared, state: dict, updates: int, lr: float | None = None,
              collect: int | None = None) -> FineTuned:
    """`updates` learner updates of the prepared learner with its actor fake-quantised. `lr`: the actor's
    learning rate (default: the run's times DEFAULT_LR_FACTOR); every optimizer's rates are scaled by
    the same factor, keeping the run's proportions. `collect`: refill the replay by that many env steps
    even where the checkpoint holds one (default: the checkpoint's replay, else DEFAULT_COLLECT steps)."""
    from ..rl.replay import ReplayBuffer
    from ..rl.seeding import QAT_SEED_OFFSET
    from ..rl.updates import UpdateSchedule
    from ..telemetry.metrics import RunningMeans

    meta = state["meta"]
    learner, normalizer, quantizers = prepared.learner, prepared.normalizer, prepared.quantizers
    run_lr = learner.actor_opt.param_groups[0]["lr"]
    lr = run_lr * DEFAULT_LR_FACTOR if lr is None else lr
    for opt in learner.optimizers().values():
        for group in opt.param_groups:
            group["lr"] *= lr / run_lr
    seed = meta["seed"] + QAT_SEED_OFFSET
    record = {"updates": updates, "lr": lr, "run_actor_lr": run_lr,
              "learning_rates": {name: [g["lr"] for g in opt.param_groups]
                                 for name, opt in learner.optimizers().items()},
              "batch_size": prepared.batch_size, "seed": seed, "target": prepared.target,
              "fake_quantized": quantizers[0].nodes if quantizers else [],
              "target_actor_fake_quantized": len(quantizers) > 1,
              "normalizer": "frozen at the checkpoint's statistics", "precision": "fp32, eager",
              "threads": torch.get_num_threads(), "not_modelled": NOT_MODELLED[prepared.target]}
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        start = time.perf_counter()
        if collect is None and "replay" in state:
            replay = ReplayBuffer(meta["obs_dim"], meta["act_dim"], state["replay"]["capacity"])
            replay.load_state_dict(state["replay"])
            record["replay"] = {"source": "checkpoint", "transitions": len(replay)}
        else:
            steps = collect or DEFAULT_COLLECT
            replay, returns = refill(state, learner, normalizer, steps, seed)
            record["replay"] = {"source": "collected", "transitions": len(replay), "env_steps": steps,
                                "exploration": {"act_noise": learner.act_noise, "shared_noise": learner.shared_noise},
                                "episode_return_mean": returns}
        record["replay"]["seconds"] = time.perf_counter() - start
        schedule = UpdateSchedule(learner, replay, normalizer, prepared.batch_size, 1, updates, update_after=0,
                                  seed=seed)
        window = RunningMeans()
        for quantizer in quantizers:
            quantizer.attach()
        try:
            start = time.perf_counter()
            schedule.run_round(0, window)
            record["seconds"] = time.perf_counter() - start
        finally:
            for quantizer in quantizers:
                quantizer.detach()
    record["losses"] = window.pop()
    record["skipped_updates"] = learner.skipped
    tuned = {"meta": {**meta, "qat": {k: record[k] for k in ("updates", "lr", "target", "seed")}},
             "counters": state.get("counters", {}), "learner": learner.state_dict(), "normalizer": state["normalizer"]}
    return FineTuned(learner.actor.eval(), tuned, record)
