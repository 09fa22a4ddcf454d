"""One training job on one rank, the composition root: build every part of the training loop from a
checked config, train, and (rank 0) write `summary.json`. Library code below this never sees Hydra's
config objects: it takes plain values and the typed sections of RunConfig."""

from __future__ import annotations

import copy
import functools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, RunConfig, learner_class
from .rl.collector import Collector
from .rl.evaluation import Evaluator, greedy_policy
from .rl.learners import HyperparameterError, Learner, update_probe
from .rl.loop import TrainingLoop
from .rl.normalizer import ObsNormalizer
from .rl.protocols import MetricWriter
from .rl.replay import ReplayBuffer
from .rl.run_state import RunState
from .rl.updates import UpdateSchedule
from .runtime import checkpoint, compile_plan, distributed
from .runtime.compiler import failures, use_cache_dir
from .runtime.device import rank_device
from .runtime.distributed import DistInfo, all_reduce_
from .runtime.precision import Precision, PrecisionChoice, Probe, choose
from .runtime.signals import stop_on_signals
from .telemetry.energy import EnergyLedger, make_meter
from .telemetry.provenance import code_version, host


def _instantiate(name: str, spec: dict, **kwargs):
    """`instantiate(spec, **kwargs)`; a failure is a one-line ConfigError naming the part."""
    from hydra.utils import instantiate

    try:
        return instantiate(spec, **kwargs)
    except Exception as exc:
        cause = exc.__cause__ or exc  # Hydra wraps what the constructor raised
        if isinstance(cause, HyperparameterError):
            raise ConfigError(f"{name}.{cause}") from None
        raise ConfigError(f"cannot build {name} ({spec.get('_target_')}): "
                          f"{str(cause).strip().splitlines()[0]}") from None


def execution(rc: RunConfig, spec: dict) -> dict:
    """The run's execution settings (config.EXECUTION_KEYS: how an actor computes, not what) that the
    spec's class takes as it is built; `compile` is decided by then (compile=auto: job.plan_compile)."""
    import inspect

    from hydra.utils import get_class

    settings = {"neuron_backend": rc.neuron_backend, "compile": rc.compile is True}
    try:
        takes = inspect.signature(get_class(str(spec.get("_target_")))).parameters
    except Exception:  # a target that names no class: instantiate says so
        return {}
    return {key: value for key, value in settings.items() if key in takes}


def spiking_actor(rc: RunConfig) -> bool:
    """Whether the run's actor is spiking (its class's `spiking`; a class that says nothing counts as one)."""
    from hydra.utils import get_class

    try:
        return bool(getattr(get_class(str(rc.actor.get("_target_"))), "spiking", True))
    except Exception:  # a target that names no class: building the actor says so
        return True


def build_components(rc: RunConfig, obs_dim: int, act_dim: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Instantiate the actor and critic specs for these dimensions, the actor with the run's execution
    settings; the critic has as many Q-networks as the algorithm uses."""
    actor = _instantiate("actor", rc.actor, obs_dim=obs_dim, act_dim=act_dim, **execution(rc, rc.actor))
    critic = _instantiate("critic", rc.critic, obs_dim=obs_dim, act_dim=act_dim, n=learner_class(rc.algo).num_q)
    return actor, critic


def build_learner(rc: RunConfig, actor: torch.nn.Module, critic: torch.nn.Module, obs_dim: int, act_dim: int,
                  precision: Precision | None = None, sync: distributed.GradientMean | None = None) -> Learner:
    """The `algo` spec's learner over these networks, with the run's precision, compile settings and
    (in a distributed job) the ranks' gradient averaging."""
    return _instantiate("algo", rc.algo, actor=actor, critic=critic, obs_dim=obs_dim, act_dim=act_dim,
                        precision=precision, sync=sync, compile=rc.compile, compile_mode=rc.compile_mode)


def checkpoint_learner(state: dict, algo: dict) -> tuple[Learner, ObsNormalizer]:
    """A run's learner rebuilt from its checkpoint to train on (fp32, eager, one process), with the
    observation normaliser saved beside it: the actor as `trained_actor` rebuilds it, the critic of the
    checkpoint's spec, the `algo` spec's learner over them (a run's config.yaml holds it; the
    checkpoint names only the algorithm), and every network's and optimizer's state loaded.
    CheckpointError (one line) where the checkpoint lacks any of them; ConfigError for a bad spec."""
    from .rl.evaluation import trained_actor

    meta = state["meta"]
    actor, normalizer = trained_actor(state)
    cls = learner_class(algo)
    if meta.get("algo", cls.name) != cls.name:
        raise checkpoint.CheckpointError(f"the checkpoint was trained by {meta['algo']}, its config names {cls.name}")
    if "critic_spec" not in meta:
        raise checkpoint.CheckpointError("the checkpoint has no critic spec: not a checkpoint of a training run")
    obs_dim, act_dim = meta["obs_dim"], meta["act_dim"]
    critic = _instantiate("critic", meta["critic_spec"], obs_dim=obs_dim, act_dim=act_dim, n=cls.num_q)
    learner = _instantiate("algo", algo, actor=actor.train(), critic=critic, obs_dim=obs_dim, act_dim=act_dim,
                           precision=Precision("fp32"))
    try:
        learner.load_state_dict(state["learner"])
    except KeyError as exc:
        raise checkpoint.CheckpointError(f"the checkpoint holds no {exc.args[0]} of its learner: only a training "
                                         f"run's checkpoint (checkpoints/last.pt) keeps the whole learner") from None
    except (RuntimeError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"the checkpoint's learner does not fit its config: "
                                         f"{str(exc).strip().splitlines()[0]}") from None
    return learner, normalizer


@functools.cache
def env_dims(env_id: str) -> tuple[int, int]:
    """Observation and action sizes of a gymnasium task; unknown ids are a ConfigError. Making a task
    (MuJoCo compiles its model) is paid once per process and task: the command line's check, the
    compile plan and the loop of a run all ask."""
    import difflib

    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except gym.error.Error as exc:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"env.id: unknown gymnasium task {env_id!r}: {type(exc).__name__}{hint}") from None
    try:
        if len(env.observation_space.shape or ()) != 1 or not hasattr(env.action_space, "low"):
            raise ConfigError(f"env.id: {env_id} needs a flat Box observation and a Box action space")
        return env.observation_space.shape[0], env.action_space.shape[0]
    finally:
        env.close()


def expected_meta(rc: RunConfig, obs_dim: int, act_dim: int, world_size: int) -> dict:
    """What a checkpoint of this run records about it (and must match to be resumed)."""
    return {
        "method": rc.method, "env_id": rc.env.id, "obs_dim": obs_dim, "act_dim": act_dim,
        "actor_spec": rc.actor, "critic_spec": rc.critic, "world_size": world_size,
        "precision": rc.precision.mode, "seed": rc.seed, "max_episode_steps": rc.env.max_episode_steps,
        "obs_norm": rc.normalizer.kind, "algo": rc.algo_name, "eval_episodes": rc.train.eval_episodes,
    }


def check(rc: RunConfig, run_dir: Path | None = None) -> None:
    """Everything a run needs that can be checked without training: task, actor, critic, learner, and
    the checkpoint to resume from (with `resume=auto`, the one in `run_dir`, where that is known)."""
    obs_dim, act_dim = env_dims(rc.env.id)
    rc = compile_plan.with_compile(rc, False) if rc.compile == "auto" else rc  # decided as the run starts
    build_learner(rc, *build_components(rc, obs_dim, act_dim), obs_dim, act_dim)
    if rc.resume is None or (rc.resume == "auto" and run_dir is None):
        return
    path = checkpoint.resume_path(rc.resume, run_dir or Path("."))
    if path is not None:
        state = checkpoint.load(path)
        checkpoint.check_compatible(state["meta"], expected_meta(rc, obs_dim, act_dim, rc.dist.world_size), path)


def idle_schedule(train) -> str | None:
    """Why a run's schedule leaves it nothing to learn (its steps end before updates or before the actor
    acts), or None. A warning, not an error: a first segment of a run may stop there on purpose."""
    if train.update_after >= train.total_steps:
        return (f"train.update_after ({train.update_after:,}) is not below train.total_steps ({train.total_steps:,}): "
                f"this run takes no gradient update")
    if train.start_steps >= train.total_steps:
        return (f"train.start_steps ({train.start_steps:,}) is not below train.total_steps ({train.total_steps:,}): "
                f"every action is random, the actor never acts")
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_run(rc: RunConfig, run_dir: Path, actor_name: str, info: DistInfo | None = None) -> dict | None:
    """Train one rank (the only one, by default). Rank 0 writes `summary.json` and returns the summary;
    other ranks return None. The summary names the code (the checkout's commit, as this segment of the
    run started, and whether it had uncommitted changes) and the machine.

    One energy meter per node (local rank 0; CodeCarbon reads the whole machine) spans the rank's work,
    from before the networks are built to after the last checkpoint, so that its figures reach W&B
    before rank 0 finishes the W&B run. Rank 0 keeps each segment's figures in the run's energy ledger:
    a resumed run's energy is that of all its segments."""
    info = info or DistInfo()
    use_cache_dir(rc.compile_cache)  # before anything compiles
    code = code_version()  # before training: the checkout may change while the run goes on
    resume = checkpoint.resume_path(rc.resume, run_dir, info.rank)
    meter = make_meter(rc.energy.kind if info.local_rank == 0 else "none", run_dir / "energy", rc.energy.country,
                       rc.energy.measure_power_secs)
    writers = make_writers(rc, run_dir, actor_name) if info.is_main else None
    rc, timing_key, compile_reason = plan_compile(rc, info.world_size)
    ledger = EnergyLedger(run_dir / "energy") if info.is_main else None
    if ledger:
        ledger.settle(fresh=resume is None)
    meter.start()
    try:
        result = _train(rc, run_dir, actor_name, info, writers, resume,
                        on_checkpoint=(lambda: ledger.mark_open(meter.reading())) if ledger else None)
    finally:
        energy = meter.stop()
        if ledger and energy:
            energy = ledger.add(energy, fresh=resume is None)
        if writers:
            writers.summarize({f"energy/{k}": v for k, v in energy.items()})
            writers.close()
    if not info.is_main:
        return None
    history = result.pop("eval_history")
    write_evaluations(run_dir, history)
    plot_learning_curve(run_dir, {"env_id": rc.env.id, "method": rc.method, "eval_history": history})
    summary = {"method": rc.method, "variant": ", ".join(rc.variant), "algo": rc.algo_name, "actor": actor_name,
               "env_id": rc.env.id, "seed": rc.seed, "sweep": rc.sweep,
               **result, "compile": rc.compile, "compile_reason": compile_reason, "neuron_backend": rc.neuron_backend,
               **energy,
               "run_dir": str(run_dir),  # what produced it (flat, as every summary key):
               **{f"code_{k}": v for k, v in code.items()}, **{f"machine_{k}": v for k, v in host().items()}}
    summary["compile_payoff"] = compile_plan.payoff(compile_plan.load(rc.compile_cache).get(timing_key), summary,
                                                    spiking_actor(rc))
    write_summary(run_dir, summary)
    compile_plan.record(rc.compile_cache, timing_key, summary, rc.compile)
    return summary


def plan_compile(rc: RunConfig, world_size: int) -> tuple[RunConfig, str, str]:
    """The run's config with `compile=auto` decided for this machine (compile_plan), the key its timings
    are recorded under, and why it compiles or not."""
    obs_dim, act_dim = env_dims(rc.env.id)
    key = compile_plan.timing_key(rc, obs_dim, act_dim, world_size, torch.get_num_threads())
    if rc.compile != "auto":
        return rc, key, "as configured"
    decision = compile_plan.decide(compile_plan.planned_updates(rc.train, world_size),
                                   compile_plan.load(rc.compile_cache).get(key), spiking_actor(rc))
    return compile_plan.with_compile(rc, decision.compile), key, decision.reason


def build_loop(rc: RunConfig, run_dir: Path, actor_name: str = "custom", info: DistInfo | None = None,
               writers: MetricWriter | None = None, actor: torch.nn.Module | None = None) -> TrainingLoop:
    """This rank's training loop, built from a checked config: networks on the rank's device, the
    learner (averaging gradients over the ranks in a distributed job), replay, normaliser, collector, update schedule,
    evaluator and run state. `actor` replaces the config's actor (benchmarks time other actors in
    the same loop)."""
    info = info or DistInfo()
    if rc.compile == "auto":  # a loop built outside train_run decides here
        rc = plan_compile(rc, info.world_size)[0]
    device = rank_device(rc.device, info.local_rank)  # decided here, once
    seed_everything(rc.seed + info.rank)  # the learner then broadcasts rank 0's initial weights
    obs_dim, act_dim = env_dims(rc.env.id)
    built_actor, critic = build_components(rc, obs_dim, act_dim)
    actor = actor or built_actor
    t = rc.train

    # the probe times copies of this run's networks in its own algorithm
    probe = update_probe(lambda p: build_learner(rc, *copy.deepcopy((actor, critic)), obs_dim, act_dim, p),
                         obs_dim, act_dim, t.batch_size)
    probing = time.perf_counter()
    precision = choose_precision(rc, device, info, probe)
    probe_seconds = time.perf_counter() - probing  # precision=auto times the run's update in both precisions
    learner = build_learner(rc, actor.to(device), critic.to(device), obs_dim, act_dim,
                            Precision(precision.mode, device),
                            sync=distributed.GradientMean() if info.enabled else None)
    rank_seed = rc.seed + info.rank * rc.env.num_envs  # env copy i of this rank: rank_seed + i
    normalizer = ObsNormalizer(obs_dim, rc.normalizer.kind, rc.normalizer.clip)
    replay = ReplayBuffer(obs_dim, act_dim, rc.replay.size, device=device)
    policy = greedy_policy(learner, normalizer, device)
    collector = Collector(rc.env, greedy_policy(learner, normalizer, device, explore=True), replay, normalizer,
                          act_noise=learner.act_noise, seed=rank_seed, rank=info.rank,
                          shared_noise=learner.shared_noise, start_actions=t.start_actions,
                          start_action_std=t.start_action_std, distributed=info.enabled)
    updates = UpdateSchedule(learner, replay, normalizer, t.batch_size, t.update_every, t.gradient_steps,
                             update_after=t.update_after, seed=rank_seed)
    evaluator = Evaluator(policy, rc.env, t.eval_episodes, rc.seed, info)
    meta = {**expected_meta(rc, obs_dim, act_dim, info.world_size), "actor_name": actor_name,
            "precision": precision.mode, "precision_requested": precision.requested,
            "precision_reason": precision.reason, "probe_seconds": probe_seconds}
    parts = {"learner": learner, "normalizer": normalizer, "collector": collector, "updates": updates,
             "evaluator": evaluator, "replay": replay}
    state = RunState(t.total_steps, rc.env.num_envs, run_dir, meta, parts, info, save_replay=t.save_replay)
    # the bar names the run: its method, task and seed in a multirun (several bars in one terminal), the task alone else
    name = f"{rc.method} {rc.env.name} seed {rc.seed}" if rc.sweep else rc.env.id
    return TrainingLoop(collector, updates, evaluator, state, t, writers, name)


def choose_precision(rc: RunConfig, device: torch.device, info: DistInfo, probe: Probe) -> PrecisionChoice:
    """`precision.mode` resolved for this device (on a CPU, `auto` times the run's own update in both
    precisions); the ranks of a job agree on it (bf16 only if every rank chose it)."""
    choice = choose(rc.precision.mode, device, probe)
    if info.enabled and rc.precision.mode == "auto":
        everyone = all_reduce_(torch.tensor([float(choice.mode == "bf16")]), "min").item()
        if choice.mode == "bf16" and not everyone:
            choice = PrecisionChoice("fp32", choice.requested, f"{choice.reason}; another rank chose fp32")
    return choice


def _train(rc: RunConfig, run_dir: Path, actor_name: str, info: DistInfo, writers, resume: Path | None,
           on_checkpoint: Callable[[], None] | None = None) -> dict:
    loop = build_loop(rc, run_dir, actor_name, info, writers)
    loop.state.on_checkpoint = on_checkpoint
    resume_from(loop.state, resume)
    with stop_on_signals(loop.state):
        result = loop.run()
    meta = loop.state.meta
    return {**result, "world_size": info.world_size, "backend": info.backend, "precision": meta["precision"],
            "precision_requested": meta["precision_requested"], "precision_reason": meta["precision_reason"],
            "probe_seconds": meta["probe_seconds"], "device": rank_device(rc.device, info.local_rank).type,
            # read while the loop, and so its compiled functions, are alive
            "compile_failed": "; ".join(f"{name} ({why})" for name, why in failures().items())}


def write_summary(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def write_evaluations(run_dir: Path, history: list) -> None:
    """The evaluation history (learning curve) beside the flat summary: step, mean and std of the return,
    and when it came: wall seconds into the run, and training seconds (wall time less the evaluations
    before it)."""
    rows = ["step,return_mean,return_std,wall_seconds,train_seconds",
            *(f"{int(step)},{mean!r},{std!r},{wall!r},{train!r}" for step, mean, std, wall, train in history)]
    (run_dir / "evaluations.csv").write_text("\n".join(rows) + "\n")


def plot_learning_curve(run_dir: Path, run: dict) -> None:
    """The run's own learning curve, `learning_curve.png` (against env steps and training time); a plot
    that fails warns and leaves evaluations.csv as the record."""
    import warnings

    if not run["eval_history"]:
        return
    try:
        from .analysis.plots import learning_curves

        learning_curves([run], run_dir / "learning_curve.png")
    except Exception as exc:  # a figure never fails a run
        warnings.warn(f"no learning_curve.png: {type(exc).__name__}: {exc}", stacklevel=2)


def make_writers(rc: RunConfig, run_dir: Path, actor_name: str):
    """Rank 0's metric writers for `logger.kind`: JSON lines, plus W&B for `wandb` or TensorBoard for
    `tensorboard`; none for `none`."""
    import dataclasses

    from .telemetry.metrics import MetricsWriter, TensorBoardWriter, WandbWriter, Writers

    writers = []
    if rc.logger.kind != "none":
        writers.append(MetricsWriter(run_dir / "metrics.jsonl"))
    if rc.logger.kind == "tensorboard":
        writers.append(TensorBoardWriter(run_dir))
    if rc.logger.kind == "wandb":
        # a sweep's runs form one group (its id) and a comparison run joins them; a method on a task is the
        # job type, the same in every sweep, to compare across sweeps
        kind = f"{rc.method}-{rc.env.name}"
        writers.append(WandbWriter(
            run_dir, rc.logger.mode, rc.logger.project, rc.logger.entity,
            name=f"{rc.sweep}/{run_dir.name}" if rc.sweep else run_dir.name, group=rc.sweep or kind, job_type=kind,
            tags=[rc.method, rc.algo_name, rc.env.name, actor_name, rc.precision.mode,
                  *([f"sweep:{rc.sweep}"] if rc.sweep else [])],
            config=dataclasses.asdict(rc),
        ))
    return Writers(writers)


def resume_from(state: RunState, path: Path | None) -> None:
    if path is None:
        return
    saved = checkpoint.load(path)
    checkpoint.check_compatible(saved["meta"], state.meta, path)
    exact = state.load_state_dict(saved)
    if state.dist.is_main:
        notes = [] if "replay" in saved else ["replay buffer not saved: it refills before updates resume"]
        if not exact:
            notes.append("environments restart their episodes")
        print(f"spikerl: resumed from {path} at env step {state.env_steps:,}"
              + (f" ({'; '.join(notes)})" if notes else ""), file=sys.stderr)


def format_summary(summary: dict) -> str:
    rows = [
        ("method / algo / actor", f"{summary['method']} / {summary['algo']} / {summary['actor']}"),
        ("task", f"{summary['env_id']} (seed {summary['seed']})"),
        ("env steps", f"{summary['total_env_steps']:,} in {summary['wall_seconds']:.0f} s "
                      f"({summary['env_steps_per_second']:.0f} steps/s"
                      + (f"; {summary['segments']} segments" if summary.get("segments", 1) > 1 else "") + ")"),
        ("updates", f"{summary['updates']:,} ({summary['updates_per_second']:.0f} updates/s)"),
        *([("compiling / probe", f"{summary['compile_seconds']:.0f} s of it compiling (without: "
                                 f"{summary['steady_env_steps_per_second']:.0f} steps/s, "
                                 f"{summary['steady_updates_per_second']:.0f} updates/s); "
                                 f"{summary['probe_seconds']:.0f} s precision probe before it")]
          if "compile_seconds" in summary and "probe_seconds" in summary else []),
        *([("compile", f"{'yes' if summary['compile'] else 'no'} ({summary['compile_reason']})")]
          if "compile_reason" in summary else []),
        *([("ran eagerly", f"compiling failed: {summary['compile_failed']}")] if summary.get("compile_failed") else []),
        *([("compiling", summary["compile_payoff"])] if summary.get("compile_payoff") else []),
        ("final eval return", f"{summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f} "
                              f"over {summary['eval_episodes']} episodes"),
        ("best eval return", f"{summary['best_eval_return']:.1f}"),
        ("precision / ranks", f"{summary['precision']}"
                              + (f" ({summary['precision_requested']})"
                                 if summary.get("precision_requested", summary["precision"]) != summary["precision"]
                                 else "") + f" on {summary['device']} / "
                              + (f"{summary['world_size']} ranks ({summary['backend']})" if summary["world_size"] > 1
                                 else "1 process")),
        *([("energy", f"{summary['energy_kwh'] * 1000:.2f} Wh, {summary['power_w']:.0f} W mean, "
                        f"{summary['emissions_kg'] * 1000:.2f} g CO2eq ({summary['country']}; "
                        f"{summary['energy_source']})")] if "energy_kwh" in summary else []),
        ("run folder", summary["run_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(["", "SpikeRL run summary", *(f"  {k:<{width}}  {v}" for k, v in rows)])


