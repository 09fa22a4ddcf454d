"""Entry point: `python -m spikerl.run [overrides]` (Hydra). Composes and checks the config, builds the
actor, critic and learner, trains, and writes the run folder:

    .hydra/            Hydra's record of the composed config and overrides
    config.yaml        the resolved config
    metrics.jsonl      one JSON object per logged step
    checkpoints/last.pt
    summary.json       flat summary read by tools and users
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .checkpoint import CheckpointError
from .config import CONF_DIR, ConfigError, RunConfig, compose, expand_overrides, validate
from .distributed import DistInfo


def build_components(rc: RunConfig, obs_dim: int, act_dim: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Instantiate the actor and critic specs for these dimensions."""
    from hydra.utils import instantiate

    parts = {}
    for name, spec in (("actor", rc.actor), ("critic", rc.critic)):
        try:
            parts[name] = instantiate(spec, obs_dim=obs_dim, act_dim=act_dim)
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise ConfigError(f"cannot build {name} ({spec.get('_target_')}): "
                              f"{str(cause).strip().splitlines()[0]}") from None
    return parts["actor"], parts["critic"]


def env_dims(env_id: str) -> tuple[int, int]:
    """Observation and action sizes of a gymnasium task; unknown ids are a ConfigError."""
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


def check(rc: RunConfig) -> None:
    """Everything a run needs that can be checked without training: task, actor and critic."""
    obs_dim, act_dim = env_dims(rc.env.id)
    build_components(rc, obs_dim, act_dim)
    if rc.precision.mode == "fp16" and not torch.cuda.is_available():
        raise ConfigError("precision=fp16 needs a CUDA GPU; use precision=bf16 or fp32 on CPU")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_run(rc: RunConfig, run_dir: Path, actor_name: str, info: DistInfo | None = None) -> dict | None:
    """Train one rank (the only one, by default). Rank 0 writes `summary.json` and returns the summary;
    other ranks return None."""
    from functools import partial

    from .normalizer import ObsNormalizer
    from .precision import Precision
    from .td3 import TD3
    from .trainer import Trainer, TrainSettings

    info = info or DistInfo()
    seed_everything(rc.seed + info.rank)  # DDP then broadcasts rank 0's initial weights
    obs_dim, act_dim = env_dims(rc.env.id)
    actor, critic = build_components(rc, obs_dim, act_dim)
    a, t = rc.algo, rc.train
    learner = TD3(
        actor, critic, actor_lr=a.actor_lr, critic_lr=a.critic_lr, gamma=a.gamma, polyak=a.polyak,
        policy_delay=a.policy_delay, target_noise=a.target_noise, noise_clip=a.noise_clip,
        precision=Precision(rc.precision.mode),
        wrap=partial(distributed.wrap_ddp, device=torch.device("cpu")) if info.enabled else None,
    )
    settings = TrainSettings(
        env_id=rc.env.id, total_steps=t.total_steps, start_steps=t.start_steps, update_after=t.update_after,
        update_every=a.update_every, gradient_steps=a.gradient_steps, batch_size=a.batch_size,
        replay_size=a.replay_size, act_noise=a.act_noise, eval_every=t.eval_every,
        eval_episodes=t.eval_episodes, checkpoint_every=t.checkpoint_every, log_every=t.log_every,
        seed=rc.seed, num_envs=rc.env.num_envs, max_episode_steps=rc.env.max_episode_steps,
        progress=t.progress,
    )
    meta = {
        "method": rc.method, "actor_name": actor_name, "env_id": rc.env.id, "obs_dim": obs_dim,
        "act_dim": act_dim, "actor_spec": rc.actor, "precision": rc.precision.mode, "seed": rc.seed,
        "max_episode_steps": rc.env.max_episode_steps,
    }
    normalizer = ObsNormalizer(obs_dim, a.obs_norm, a.obs_clip)
    result = Trainer(learner, normalizer, settings, run_dir, meta, dist=info).train()
    if not info.is_main:
        return None
    summary = {
        "method": rc.method, "actor": actor_name, **result, "world_size": info.world_size,
        "backend": info.backend, "precision": rc.precision.mode, "run_dir": str(run_dir),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(summary: dict) -> str:
    rows = [
        ("method / actor", f"{summary['method']} / {summary['actor']}"),
        ("task", f"{summary['env_id']} (seed {summary['seed']})"),
        ("env steps", f"{summary['total_env_steps']:,} in {summary['wall_seconds']:.0f} s "
                      f"({summary['env_steps_per_second']:.0f} steps/s)"),
        ("updates", f"{summary['updates']:,} ({summary['updates_per_second']:.0f} updates/s)"),
        ("final eval return", f"{summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f} "
                              f"over {summary['eval_episodes']} episodes"),
        ("best eval return", f"{summary['best_eval_return']:.1f}"),
        ("precision / ranks", f"{summary['precision']} / {summary['world_size']} ({summary['backend']})"),
        ("run folder", summary["run_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(["", "SpikeRL run summary", *(f"  {k:<{width}}  {v}" for k, v in rows)])


def _rank_main(local_rank: int, rc: RunConfig, run_dir: Path, actor_name: str, backend: str, port: int) -> None:
    """One spawned rank of a job launched from this command."""
    nprocs = rc.dist.world_size // rc.dist.nnodes
    info = DistInfo(rc.dist.node_rank * nprocs + local_rank, rc.dist.world_size, local_rank, nprocs)
    run_rank(rc, run_dir, actor_name, info, backend, rc.dist.master_addr, port)


def run_rank(rc: RunConfig, run_dir: Path, actor_name: str, info: DistInfo, backend: str, addr: str,
             port: int) -> dict | None:
    """Join the group, train, leave cleanly. A failing rank leaves without the final barrier, so the
    others fail in their next collective (within dist.timeout_s) instead of waiting forever."""
    import torch.distributed as dist

    torch.set_num_threads(distributed.threads_per_rank(info.local_world_size))
    info = distributed.init(info, backend, addr, port, rc.dist.timeout_s)
    try:
        summary = train_run(rc, run_dir, actor_name, info)
    except BaseException:
        dist.destroy_process_group()
        raise
    distributed.shutdown()
    return summary


def launch(rc: RunConfig, run_dir: Path, actor_name: str) -> dict | None:
    """Run the job: in this process, as this process's rank of a torchrun/SLURM job, or by spawning
    `dist.world_size / dist.nnodes` ranks here. Returns the summary on the process that has it."""
    import torch.multiprocessing as mp

    backend = distributed.resolve_backend(rc.dist.backend)
    external = distributed.external_launch()
    if external is not None:
        return run_rank(rc, run_dir, actor_name, external, backend, rc.dist.master_addr,
                        int(os.environ.get("MASTER_PORT", rc.dist.master_port or 29500)))
    if rc.dist.world_size == 1:
        return train_run(rc, run_dir, actor_name)
    port = rc.dist.master_port or distributed.free_port()
    mp.start_processes(_rank_main, args=(rc, run_dir, actor_name, backend, port),
                       nprocs=rc.dist.world_size // rc.dist.nnodes, join=True, start_method="spawn")
    summary_file = run_dir / "summary.json"
    return json.loads(summary_file.read_text()) if rc.dist.node_rank == 0 and summary_file.exists() else None


def _job(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from torch.multiprocessing import ProcessRaisedException

    from .trainer import EnvFault, TrainingDiverged

    try:
        rc = validate(cfg)
        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        summary = launch(rc, run_dir, hc.runtime.choices.get("actor", "custom"))
    except (ConfigError, CheckpointError) as exc:
        print(f"spikerl: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (EnvFault, TrainingDiverged) as exc:
        print(f"spikerl: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except ProcessRaisedException as exc:  # a spawned rank failed: its traceback, then one line
        print(str(exc).rstrip(), file=sys.stderr)
        print(f"spikerl: error: a rank failed: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
        sys.exit(1)
    if summary is not None:
        print(format_summary(summary))


def preflight(args: list[str]) -> None:
    """Compose and check every job the command line asks for before Hydra makes a run folder."""
    if any(a in ("-h", "--help", "--hydra-help", "--info", "-c", "--cfg", "--resolve") or a.startswith("--info")
           for a in args):
        return
    overrides = [a for a in args if not a.startswith("-")]
    for job in expand_overrides(overrides):
        check(validate(compose(job)))


def main() -> None:
    import hydra

    try:
        preflight(sys.argv[1:])
    except (ConfigError, CheckpointError) as exc:
        print(f"spikerl: error: {exc}", file=sys.stderr)
        sys.exit(2)
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_job)()


if __name__ == "__main__":
    main()
