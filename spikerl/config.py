"""Config schemas and validation: the only library module that touches Hydra/OmegaConf.

Sections with fixed keys (train, algo, env, precision, dist) are checked against dataclass schemas
(unknown keys, wrong types); the instantiated parts (actor, encoder, critic) are checked by building
them. Every problem becomes a `ConfigError` whose message is one line naming the key and, where there
is a choice, the valid options. `preflight` runs all of it on the command line's overrides before
Hydra creates a run folder.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
TOP_LEVEL_KEYS = {
    "method", "seed", "device", "resume", "train", "env", "algo", "actor", "encoder", "critic", "precision", "dist",
    "energy", "logger", "compile",
}


class ConfigError(Exception):
    """A user's configuration mistake; the message is one line."""


@dataclass
class TrainConfig:
    total_steps: int
    start_steps: int
    update_after: int
    eval_every: int
    eval_episodes: int
    checkpoint_every: int
    log_every: int
    progress: bool = True
    save_replay: bool = False  # put the replay buffer in checkpoints/last.pt (exact resume)
    keep_best: bool = True  # also keep checkpoints/best.pt, the actor with the best evaluation


@dataclass
class AlgoConfig:
    name: str
    gamma: float
    polyak: float
    policy_delay: int
    act_noise: float
    target_noise: float
    noise_clip: float
    actor_lr: float
    critic_lr: float
    batch_size: int
    replay_size: int
    update_every: int
    gradient_steps: int
    obs_norm: str
    obs_clip: float


@dataclass
class EnvConfig:
    name: str
    id: str
    pop_spikes: str
    dsrl_threshold: float
    dsrl_batch_size: int
    num_envs: int = 1
    max_episode_steps: Optional[int] = None  # noqa: UP045 (OmegaConf needs typing.Optional)


@dataclass
class PrecisionConfig:
    mode: str = "fp32"


@dataclass
class DistConfig:
    world_size: int = 1  # processes in the job, over all nodes
    backend: str = "auto"  # auto | gloo | nccl | mpi
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0  # 0: a free port (single node only)
    timeout_s: float = 300.0  # a collective waiting longer than this fails the job


@dataclass
class EnergyConfig:
    kind: str = "codecarbon"  # codecarbon | none
    country: str = "USA"
    measure_power_secs: float = 15.0


@dataclass
class LoggerConfig:
    kind: str = "wandb"  # wandb | jsonl | none
    mode: str = "offline"  # W&B: offline | online | disabled
    project: str = "spikerl"
    entity: Optional[str] = None  # noqa: UP045 (OmegaConf needs typing.Optional)


SCHEMAS = {
    "train": TrainConfig,
    "algo": AlgoConfig,
    "env": EnvConfig,
    "precision": PrecisionConfig,
    "dist": DistConfig,
    "energy": EnergyConfig,
    "logger": LoggerConfig,
}


@dataclass
class RunConfig:
    """The validated, typed view of a composed config that the entry point builds a run from."""

    method: str
    seed: int
    device: str  # auto | cpu | cuda
    compile: bool  # torch.compile the spiking actors' neuron kernels (the actor specs read it)
    resume: str | None  # None | "auto" | a checkpoint file or run folder
    train: TrainConfig
    algo: AlgoConfig
    env: EnvConfig
    precision: PrecisionConfig
    dist: DistConfig
    energy: EnergyConfig
    logger: LoggerConfig
    actor: dict  # Hydra instantiate specs, resolved to plain containers
    encoder: dict
    critic: dict


def _typed(section: str, node) -> object:
    schema = SCHEMAS[section]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = f"{section}.{exc.full_key}" if getattr(exc, "full_key", None) else section
        detail = str(getattr(exc, "msg", exc)).splitlines()[0]
        if "not in" in detail or "Key '" in detail:
            valid = ", ".join(f.name for f in fields(schema))
            raise ConfigError(f"unknown key {key!r} (valid keys of {section}: {valid})") from None
        raise ConfigError(f"{key}: {detail}") from None


def _check_values(rc: RunConfig) -> None:
    t, a, e = rc.train, rc.algo, rc.env
    positive = {
        "train.total_steps": t.total_steps, "train.eval_episodes": t.eval_episodes,
        "algo.batch_size": a.batch_size, "algo.replay_size": a.replay_size,
        "algo.update_every": a.update_every, "algo.policy_delay": a.policy_delay,
        "env.num_envs": e.num_envs, "dist.world_size": rc.dist.world_size,
    }
    non_negative = {
        "train.start_steps": t.start_steps, "train.update_after": t.update_after,
        "train.eval_every": t.eval_every, "train.checkpoint_every": t.checkpoint_every,
        "train.log_every": t.log_every, "algo.gradient_steps": a.gradient_steps,
        "algo.act_noise": a.act_noise, "algo.target_noise": a.target_noise, "algo.noise_clip": a.noise_clip,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key} must not be negative, got {value}")
    for key, value in {"algo.actor_lr": a.actor_lr, "algo.critic_lr": a.critic_lr}.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if not 0.0 <= a.gamma <= 1.0:
        raise ConfigError(f"algo.gamma must be in [0, 1], got {a.gamma}")
    if not 0.0 <= a.polyak < 1.0:
        raise ConfigError(f"algo.polyak must be in [0, 1), got {a.polyak}")
    if a.batch_size > a.replay_size:
        raise ConfigError(f"algo.batch_size ({a.batch_size}) is larger than algo.replay_size ({a.replay_size})")
    if a.obs_norm not in ("zscore", "maxabs", "none"):
        raise ConfigError(f"algo.obs_norm must be one of zscore, maxabs, none; got {a.obs_norm!r}")
    if e.max_episode_steps is not None and e.max_episode_steps <= 0:
        raise ConfigError(f"env.max_episode_steps must be positive or null, got {e.max_episode_steps}")
    if rc.precision.mode not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision.mode must be one of fp32, bf16, fp16; got {rc.precision.mode!r}")
    if rc.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be one of auto, cpu, cuda; got {rc.device!r}")
    from .runtime.device import device_type

    if rc.device == "cuda" and device_type(rc.device) != "cuda":
        raise ConfigError("device=cuda needs a CUDA GPU; use device=auto or cpu")
    if rc.precision.mode == "fp16" and device_type(rc.device) != "cuda":
        raise ConfigError("precision=fp16 needs a CUDA GPU; use precision=bf16 or fp32 on CPU")
    if rc.energy.kind not in ("codecarbon", "none"):
        raise ConfigError(f"energy.kind must be codecarbon or none; got {rc.energy.kind!r}")
    if len(rc.energy.country) != 3 or not rc.energy.country.isalpha() or rc.energy.measure_power_secs <= 0:
        raise ConfigError("energy.country must be a 3-letter ISO code (e.g. USA), energy.measure_power_secs positive")
    if rc.logger.kind not in ("wandb", "jsonl", "none") or rc.logger.mode not in ("offline", "online", "disabled"):
        raise ConfigError("logger.kind must be wandb, jsonl or none and logger.mode offline, online or disabled")
    d = rc.dist
    if d.nnodes <= 0 or d.world_size % d.nnodes:
        raise ConfigError(f"dist.world_size ({d.world_size}) must be a positive multiple of dist.nnodes ({d.nnodes})")
    if not 0 <= d.node_rank < d.nnodes:
        raise ConfigError(f"dist.node_rank must be in [0, {d.nnodes}), got {d.node_rank}")
    if d.nnodes > 1 and d.master_port == 0:
        raise ConfigError("a multi-node job needs dist.master_addr and a fixed dist.master_port")
    if not 0 <= d.master_port < 65536 or d.timeout_s <= 0:
        raise ConfigError("dist.master_port must be in [0, 65535] and dist.timeout_s positive")
    from .runtime.distributed import resolve_backend

    try:
        resolve_backend(d.backend, device_type(rc.device))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def validate(cfg: DictConfig) -> RunConfig:
    """Check a composed config; return its typed view or raise ConfigError."""
    unknown = set(cfg.keys()) - TOP_LEVEL_KEYS - {"hydra"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)} (valid: {sorted(TOP_LEVEL_KEYS)})")
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve config: {str(exc).splitlines()[0]}") from None
    for key in ("method", "seed"):
        if key not in resolved:
            raise ConfigError(f"missing top-level key {key!r}")
    if not isinstance(resolved["seed"], int) or isinstance(resolved["seed"], bool):
        raise ConfigError(f"seed must be an integer, got {resolved['seed']!r}")
    if not isinstance(resolved.get("compile", False), bool):
        raise ConfigError(f"compile must be true or false, got {resolved['compile']!r}")
    sections = {name: _typed(name, resolved.get(name, {})) for name in SCHEMAS}
    rc = RunConfig(
        method=str(resolved["method"]), seed=resolved["seed"], device=str(resolved.get("device", "auto")),
        compile=resolved.get("compile", False),
        resume=None if resolved.get("resume") is None else str(resolved["resume"]),
        **sections,
        actor=resolved["actor"], encoder=resolved.get("encoder", {}), critic=resolved["critic"],
    )
    _check_values(rc)
    return rc


def _short(exc: BaseException) -> str:
    """The first informative line of a Hydra/OmegaConf error, plus the available options if listed."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    if "Available options" in text:
        idx = next(i for i, line in enumerate(lines) if line.startswith("Available options"))
        options = []
        for line in lines[idx + 1:]:
            if line.startswith("Config search path") or ":" in line or "=" in line:
                break
            options.append(line)
        first = f"{first} (choose one of: {', '.join(options)})"
    return first


def expand_overrides(args: list[str], limit: int = 64) -> list[list[str]]:
    """The override lists of the jobs a (multi)run would launch, sweeps expanded (first `limit`).
    Hydra's own settings (`hydra.*`, `hydra/...`) are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    mine = [a for a in args if not a.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(mine)
    except Exception as exc:
        raise ConfigError(f"cannot parse overrides: {_short(exc)}") from None
    choices = []
    for ov, line in zip(parsed, mine):
        if ov.is_sweep_override():
            key = line.split("=", 1)[0]
            choices.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            choices.append([line])
    return [list(combo) for combo in itertools.islice(itertools.product(*choices), limit)]


def compose(overrides: list[str]) -> DictConfig:
    """Compose the config as Hydra would for these overrides (without creating a run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return hydra_compose("config", overrides=overrides)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(_override_problem(exc) or _short(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def _override_problem(exc: Exception) -> str | None:
    """Hydra's 'Could not override' error for a key that does not exist, said as an unknown key."""
    match = re.search(r"Could not override '([^']+)'", str(exc))
    if not match or "not in struct" not in f"{exc} {exc.__cause__}":
        return None
    key = match.group(1)
    section = key.split(".", 1)[0]
    if section in SCHEMAS and "." in key:
        valid = ", ".join(f.name for f in fields(SCHEMAS[section]))
        return f"unknown key {key!r} (valid keys of {section}: {valid})"
    return f"unknown key {key!r} (`python -m spikerl.run --cfg job` lists every key)"
