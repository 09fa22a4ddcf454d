"""Config schemas and validation: compose a config with Hydra and check it into a typed RunConfig.

Sections with fixed keys (train, replay, normalizer, env, precision, dist, energy, logger) are checked
against dataclass schemas kept in torch-free modules of the packages that own them (`sections.py`:
unknown keys, wrong types, and the allowed values each schema declares), first and before torch is
imported; the instantiated parts (algo, actor, encoder, critic) are checked
by building them, so their choices too are the owning module's (the algorithm's keys are its class's
keyword arguments, checked here before anything is built). Every problem becomes a `ConfigError` whose
message is one line naming the key and, where there is a choice, the valid options. `preflight`
(spikerl/run.py) runs all of it on the command line's overrides before Hydra creates a run folder.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import BAD_INPUT, SpikeRLError
from .rl.sections import EnvConfig, NormalizerConfig, ReplayConfig, TrainConfig
from .runtime.sections import DistConfig, PrecisionConfig
from .telemetry.energy import EnergyConfig
from .telemetry.sections import LoggerConfig

if TYPE_CHECKING:
    from .rl.learners import Learner

# What needs torch (the learners, devices, compiler modes, neuron backends) is imported by the check that
# needs it, after the torch-free ones (`check_sections`): composing a config, and the one-line answer to
# most mistakes, come without torch's second of importing (spikerl.run answers those before importing it).

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
TOP_LEVEL_KEYS = {
    "method", "seed", "device", "resume", "train", "replay", "normalizer", "env", "algo", "actor", "encoder", "critic",
    "precision", "dist", "energy", "logger", "compile", "compile_mode", "compile_cache", "neuron_backend",
}
# how an actor computes, not what: top-level settings passed to the actor's class as it is built, never
# part of its spec (so they may change on resume and a checkpoint's spec names the model alone)
EXECUTION_KEYS = ("neuron_backend", "compile")


class ConfigError(SpikeRLError):
    """A user's configuration mistake; the message is one line. Bad input: exit code 2."""

    exit_code = BAD_INPUT


# Resolvers that the launcher configs (conf/hydra/launcher/, conf/config.yaml's hydra.sweeper) use to
# derive a job's resources from its `dist`. Registered on import: before Hydra composes, and in every
# job process (which imports this module with the task function).
def ranks_per_node(world_size: int, nnodes: int) -> int:
    return max(1, int(world_size) // max(1, int(nnodes)))


def memory_gb(world_size: int, nnodes: int, per_rank: int) -> int:
    """Memory a SLURM node is asked for: `per_rank` GB for each of its ranks."""
    return ranks_per_node(world_size, nnodes) * int(per_rank)


def jobs_at_once(world_size: int, nnodes: int) -> int:
    """How many jobs a launcher on this machine runs at once: its cores // each job's ranks (at least 1)."""
    from .runtime.distributed import available_cores

    return max(1, available_cores() // ranks_per_node(world_size, nnodes))


def gpus_per_node(device: str, world_size: int, nnodes: int, machine: str) -> int | None:
    """GPUs to ask a launcher for: one per rank of a node when the networks go on CUDA GPUs, else none
    (None). On a cluster's nodes (`machine=cluster`) that is device=cuda; on this machine (`here`) also
    device=auto when it has a GPU (submitit's local executor hides the GPUs it was not asked for)."""
    from .runtime.device import device_type

    cuda = device == "cuda" if machine == "cluster" else device_type(device) == "cuda"
    return ranks_per_node(world_size, nnodes) if cuda else None


def local_batch(launcher_target: str, world_size: int, nnodes: int) -> int | None:
    """The sweeper's batch size: submitit's local executor starts every job it is given at once, so
    the sweep hands it `jobs_at_once` jobs at a time; other launchers get the whole sweep (None)."""
    if str(launcher_target).endswith("hydra_submitit_launcher.submitit_launcher.LocalLauncher"):
        return jobs_at_once(world_size, nnodes)
    return None


def learner_class(spec: dict) -> type[Learner]:
    """The learner class an `algo` spec names; ConfigError if it names none."""
    from hydra.utils import get_class

    from .rl.learners import Learner

    target = spec.get("_target_") if isinstance(spec, dict) else None
    try:
        cls = get_class(str(target))
    except Exception:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, Learner) and hasattr(cls, "name")):
        raise ConfigError(f"algo._target_: {target!r} is not a SpikeRL learner (conf/algo/ lists them)")
    return cls


# What makes a run's composition: the parts, the learner and the trainer's learning settings. A command
# line that changes any of them runs a variant of its preset, never the preset itself (`variant`).
PART_GROUPS = ("actor", "encoder", "critic", "precision", "published_as")
PART_SECTIONS = ("actor", "encoder", "critic", "algo", "normalizer", "replay", "precision")
TRAINER_KEYS = ("start_steps", "start_actions", "start_action_std", "update_after", "batch_size", "update_every",
                "gradient_steps")
LABEL_SAFE = re.compile(r"[A-Za-z0-9_.=+-]+")


def variant(overrides) -> list[str]:
    """The overrides that change what a preset composes (a part, a learner or trainer value), sorted;
    `algo=` is left out (the label names the learner) and so are the run's own settings (seed, steps,
    evaluation, logging, devices)."""
    changed = []
    for line in overrides or ():
        key = str(line).lstrip("+~").split("=", 1)[0]
        section, _, rest = key.partition(".")
        if key in PART_GROUPS or (rest and section in PART_SECTIONS) or (section == "train" and rest in TRAINER_KEYS):
            changed.append(str(line).lstrip("+"))
    return sorted(changed)


def label(method: str, algo_target: str, overrides=None) -> str:
    """A run's name in folders, summaries and comparisons: the method preset's name, with the algorithm
    appended where it is not TD3, the presets' own (popsan, popsan-sac, popsan-ddpg, td3-sac...); a
    variant of it (`variant`) adds what changed (`ilcsan+encoder=two_neuron`; a `~` and a short hash of
    it where that is long or not safe in a folder name), unless the command line names the run itself
    (`method=...`)."""
    name = learner_class({"_target_": algo_target}).name
    base = str(method) if name == "td3" else f"{method}-{name}"
    changed = variant(overrides)
    named = any(str(o).lstrip("+~").split("=", 1)[0] == "method" for o in overrides or ())
    if not changed or named:
        return base
    suffix = "+".join(changed)
    if len(suffix) <= 48 and LABEL_SAFE.fullmatch(suffix):
        return f"{base}+{suffix}"
    return f"{base}~{hashlib.sha1(suffix.encode()).hexdigest()[:8]}"


for _name, _resolver in (("ranks_per_node", ranks_per_node), ("memory_gb", memory_gb), ("jobs_at_once", jobs_at_once),
                         ("gpus_per_node", gpus_per_node), ("local_batch", local_batch), ("label", label)):
    OmegaConf.register_new_resolver(f"spikerl.{_name}", _resolver, replace=True)
# conf/hydra/launcher/joblib.yaml takes the plugin's own name, so Hydra merges it onto the plugin's schema
# (what it should do) and warns that this matching by name is deprecated: not the user's concern.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/joblib' is validated against ConfigStore schema")


# The sections with fixed keys and the dataclass each is checked against.
SCHEMAS: dict[str, type] = {
    "train": TrainConfig, "replay": ReplayConfig, "normalizer": NormalizerConfig, "env": EnvConfig,
    "precision": PrecisionConfig, "dist": DistConfig, "energy": EnergyConfig, "logger": LoggerConfig}


@dataclass
class RunConfig:
    """The validated, typed view of a composed config that the entry point builds a run from."""

    method: str  # the label: the preset's method, and the algorithm where it is not TD3 (`label`)
    algo_name: str  # the learner's name: td3 | ddpg | sac
    seed: int
    device: str  # auto | cpu | cuda
    compile: bool | str  # torch.compile the update, acting and neuron kernels; "auto": where the planned updates
    # repay it (spikerl/runtime/compile_plan.py), decided as the run starts
    compile_mode: str  # torch.compile's mode: default | reduce-overhead (CUDA graphs) | max-autotune-no-cudagraphs
    neuron_backend: str  # who steps LIF neurons through time (spikerl/snn/through_time.py): bptt | fused | snntorch
    resume: str | None  # None | "auto" | a checkpoint file or run folder
    train: TrainConfig
    replay: ReplayConfig
    normalizer: NormalizerConfig
    env: EnvConfig
    precision: PrecisionConfig
    dist: DistConfig
    energy: EnergyConfig
    logger: LoggerConfig
    algo: dict  # Hydra instantiate specs, resolved to plain containers
    actor: dict
    encoder: dict
    critic: dict
    variant: list[str] = field(default_factory=list)  # the overrides that make it a variant of its preset
    sweep: str | None = None  # the multirun this job belongs to (`launchers.sweep_id`; set by the entry point)
    compile_cache: str | None = None  # where torch.compile keeps compiled graphs between runs (None: torch's default)


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


def _check_declared(section: str, values) -> None:
    """The rules a section's schema declares beside its fields (in the module that owns it): CHOICES
    (allowed values), POSITIVE and NON_NEGATIVE (numeric keys)."""
    schema = type(values)
    for key, allowed in getattr(schema, "CHOICES", {}).items():
        if getattr(values, key) not in allowed:
            raise ConfigError(f"{section}.{key} must be one of {', '.join(allowed)}; got {getattr(values, key)!r}")
    for key in getattr(schema, "POSITIVE", ()):
        if not getattr(values, key) > 0:
            raise ConfigError(f"{section}.{key} must be positive, got {getattr(values, key)}")
    for key in getattr(schema, "NON_NEGATIVE", ()):
        if getattr(values, key) < 0:
            raise ConfigError(f"{section}.{key} must not be negative, got {getattr(values, key)}")


def _check_values(sections: dict, actor: dict, rendezvous: bool = True) -> None:
    """Each section's declared rules, then the rules that tie keys or sections together (none needs torch).
    `rendezvous`: a multi-node job must name its rendezvous (not where the scheduler gives it, as SLURM does)."""
    for section, values in sections.items():
        _check_declared(section, values)
    train, replay, env, dist = sections["train"], sections["replay"], sections["env"], sections["dist"]
    if dist.world_size > 1 and (actor.get("normalization") or None) is not None:
        raise ConfigError("actor.normalization (CaRe-BN) keeps its statistics per process and nothing averages them "
                          "across ranks yet; run it with dist.world_size=1")
    if train.batch_size > replay.size:
        raise ConfigError(f"train.batch_size ({train.batch_size}) is larger than replay.size ({replay.size})")
    if env.max_episode_steps is not None and env.max_episode_steps <= 0:
        raise ConfigError(f"env.max_episode_steps must be positive or null, got {env.max_episode_steps}")
    country = sections["energy"].country
    if len(country) != 3 or not country.isalpha():
        raise ConfigError(f"energy.country must be a 3-letter ISO code (e.g. USA), got {country!r}")
    _check_dist(dist, rendezvous)


def _check_devices(rc: RunConfig) -> None:
    """The device, precision and backend a run asks for, against this machine's hardware."""
    from .runtime.compiler import CUDA_GRAPH_MODES
    from .runtime.device import device_type

    if rc.device == "cuda" and device_type(rc.device) != "cuda":
        raise ConfigError("device=cuda needs a CUDA GPU; use device=auto or cpu")
    if rc.compile and rc.compile_mode in CUDA_GRAPH_MODES and device_type(rc.device) != "cuda":
        raise ConfigError(f"compile_mode={rc.compile_mode} records CUDA graphs and needs a CUDA GPU; "
                          "use compile_mode=default on CPU")
    if rc.precision.mode == "fp16" and device_type(rc.device) != "cuda":
        raise ConfigError("precision=fp16 needs a CUDA GPU; use precision=auto, bf16 or fp32 on CPU")
    if rc.precision.mode == "bf16" and device_type(rc.device) == "cuda":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise ConfigError("precision=bf16: this CUDA GPU cannot compute bf16; use precision=auto or fp32")
    from .runtime.distributed import resolve_backend

    try:
        resolve_backend(rc.dist.backend, device_type(rc.device))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_dist(d, rendezvous: bool = True) -> None:
    if d.world_size % d.nnodes:
        raise ConfigError(f"dist.world_size ({d.world_size}) must be a positive multiple of dist.nnodes ({d.nnodes})")
    if not 0 <= d.node_rank < d.nnodes:
        raise ConfigError(f"dist.node_rank must be in [0, {d.nnodes}), got {d.node_rank}")
    if rendezvous and d.nnodes > 1 and d.master_port == 0:
        raise ConfigError("a multi-node job needs dist.master_addr and a fixed dist.master_port")
    if not 0 <= d.master_port < 65536:
        raise ConfigError(f"dist.master_port must be in [0, 65535], got {d.master_port}")


def check_sections(cfg: DictConfig, rendezvous: bool = True) -> tuple[dict, dict]:
    """The checks that need no torch (the top-level keys, and the sections with fixed keys: their keys,
    types, declared values and the rules that tie them together): the config resolved to plain
    containers and each section's typed values, or ConfigError. `validate` starts with it; spikerl.run
    runs it on every job of a command line before importing torch, so that these mistakes are answered
    in well under a second."""
    unknown = set(cfg.keys()) - TOP_LEVEL_KEYS - {"hydra"}
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}{did_you_mean(first, config_names())} "
                          f"(valid: {sorted(TOP_LEVEL_KEYS)})")
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve config: {str(exc).splitlines()[0]}") from None
    for key in ("method", "seed"):
        if key not in resolved:
            raise ConfigError(f"missing top-level key {key!r}")
    if not isinstance(resolved["seed"], int) or isinstance(resolved["seed"], bool):
        raise ConfigError(f"seed must be an integer, got {resolved['seed']!r}")
    if not isinstance(resolved.get("compile", False), bool) and resolved.get("compile") != "auto":
        raise ConfigError(f"compile must be true, false or auto, got {resolved['compile']!r}")
    for key in EXECUTION_KEYS:
        if key in (resolved.get("actor") or {}):
            raise ConfigError(f"actor.{key}: how the actor computes is the top-level `{key}` (set {key}=...), "
                              f"not part of its spec")
    sections = {name: _typed(name, resolved.get(name, {})) for name in SCHEMAS}
    _check_values(sections, resolved.get("actor") or {}, rendezvous)
    return resolved, sections


def validate(cfg: DictConfig, devices: bool = True, rendezvous: bool = True, overrides=None) -> RunConfig:
    """Check a composed config; return its typed view or raise ConfigError. `devices=False` leaves the
    hardware checks to the machine that runs the job (a SLURM node), `rendezvous=False` the multi-node
    rendezvous to the scheduler that starts the ranks. `overrides`: the command line's (the job's), which
    name a variant of a preset (`label`)."""
    resolved, sections = check_sections(cfg, rendezvous)
    compile_mode = resolved.get("compile_mode", "default")
    from .runtime.compiler import MODES as COMPILE_MODES
    from .snn.through_time import NEURON_BACKENDS

    if compile_mode not in COMPILE_MODES:
        raise ConfigError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}; got {compile_mode!r}")
    backend = resolved.get("neuron_backend", "bptt")
    if backend not in NEURON_BACKENDS:
        raise ConfigError(f"neuron_backend must be one of {', '.join(NEURON_BACKENDS)}; got {backend!r}")
    algo = resolved.get("algo") or {}
    learner = _check_algo(algo, resolved.get("critic") or {})
    rc = RunConfig(
        method=label(resolved["method"], algo["_target_"], overrides), variant=variant(overrides),
        algo_name=learner.name, seed=resolved["seed"],
        device=str(resolved.get("device", "auto")),
        compile=resolved.get("compile", False), compile_mode=compile_mode, neuron_backend=backend,
        compile_cache=None if resolved.get("compile_cache") is None else str(resolved["compile_cache"]),
        resume=None if resolved.get("resume") is None else str(resolved["resume"]),
        **sections,
        algo=algo, actor=resolved["actor"], encoder=resolved.get("encoder", {}), critic=resolved["critic"],
    )
    from .runtime.device import DEVICES

    if rc.device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}; got {rc.device!r}")
    if devices:
        _check_devices(rc)
    proxy_set = next((o for o in rc.variant if o.lstrip("~").startswith("algo.proxy.")), None)
    if proxy_set and algo.get("target") != "proxy":
        raise ConfigError(f"{proxy_set.split('=', 1)[0]}: the proxy's settings apply with algo.target=proxy "
                          f"(this run's target: {algo.get('target')})")
    if "encoder" not in rc.actor and any(o.split("=", 1)[0].split(".")[0].lstrip("~") == "encoder" for o in rc.variant):
        raise ConfigError(f"encoder: the actor ({str(rc.actor.get('_target_')).rsplit('.', 1)[-1]}) takes no encoder "
                          f"(it sees the normalised observation): leave encoder settings out")
    return rc


TARGET_KEYS = ("target", "proxy")  # the target actor's choice and its settings (spikerl/rl/targets.py)


def _check_algo(spec: dict, critic: dict) -> type[Learner]:
    """The algorithm exists, every key of its section is one of its hyperparameters and none is missing
    (their values are checked when it is built); the critic leaves its size to it."""
    cls = learner_class(spec)
    hyper = cls.hyperparameters()
    unknown = sorted(set(spec) - {"_target_"} - set(hyper))
    if unknown:
        raise _unknown_algo_key(unknown[0], cls.name, hyper)
    missing = [key for key, required in hyper.items() if required and key not in spec]
    if missing:
        raise ConfigError(f"algo.{missing[0]} is missing (algo={cls.name} needs {', '.join(missing)})")
    if "n" in critic:
        raise ConfigError(f"critic.n: the algorithm sets how many Q-networks the critic has ({cls.name}: {cls.num_q})")
    return cls


def _unknown_algo_key(key: str, name: str, hyper) -> ConfigError:
    """The message for `algo.<key>` that learner `name`, whose keys are `hyper`, does not take. A learner
    without a `target` argument has no target actor to choose (SAC)."""
    if "target" not in hyper and key.split(".")[0] in TARGET_KEYS:
        return ConfigError(f"algo.{key.split('.')[0]}: {name} keeps no target actor (its TD target samples the "
                           f"policy), so there is none to choose; algo.target applies to td3 and ddpg")
    return ConfigError(f"unknown key 'algo.{key}' for algo={name}{did_you_mean(key, hyper, 'algo.')} "
                       f"(valid keys: {', '.join(hyper)})")


@functools.cache  # a report reads it for every run folder
def _learner_signature(target: str) -> tuple | None:
    """The keyword-only arguments of a SpikeRL learner class's own `__init__` as (name, default node or
    None) pairs, read from its source without importing it and torch; None where the source does not say
    (a class of another package, an inherited `__init__`)."""
    import ast

    module, _, name = str(target).rpartition(".")
    if not module.startswith("spikerl."):
        return None
    try:
        tree = ast.parse(Path(__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py").read_text())
    except (OSError, SyntaxError):
        return None
    cls = next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name), None)
    init = next((node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "__init__"), None) \
        if cls is not None else None
    if init is None:
        return None
    return tuple(zip((arg.arg for arg in init.args.kwonlyargs), init.args.kw_defaults))


def learner_keywords(target: str) -> dict[str, bool] | None:
    """`Learner.hyperparameters` of a SpikeRL learner class (name -> required), read from its source so
    that a mistyped `algo.` key is answered before torch is imported; None where the source does not say.
    A test holds it equal to `hyperparameters` for every conf/algo."""
    signature = _learner_signature(target)
    return None if signature is None else {name: default is None for name, default in signature}


def learner_defaults(target: str) -> dict:
    """The literal defaults of a SpikeRL learner class's keyword arguments (name -> value; a default that
    is not a literal is left out), from its source; {} where the source does not say."""
    import ast

    defaults = {}
    for name, node in _learner_signature(target) or ():
        if node is None:  # required
            continue
        try:
            defaults[name] = ast.literal_eval(node)
        except ValueError:  # not a literal
            pass
    return defaults


def did_you_mean(word: str, candidates, prefix: str = "") -> str:
    """' (did you mean <prefix>X?)' for the candidate closest to a mistyped `word`, else ''."""
    import difflib

    close = difflib.get_close_matches(str(word), sorted(set(map(str, candidates))), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _short(exc: BaseException) -> str:
    """The first informative line of a Hydra/OmegaConf error, plus the available options if listed (and
    the nearest to what was asked), and Hydra's own numbered hints (such as adding --multirun)."""
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
        asked = re.search(r"Could not find '[^']*/([^'/]+)'", first)
        first = f"{first} (choose one of: {', '.join(options)}){did_you_mean(asked.group(1), options) if asked else ''}"
    hints = [re.sub(r"^\d+\.\s*", "", line) for line in lines[1:] if re.match(r"^\d+\.\s", line)]
    if hints:
        first = f"{first}: {'; '.join(hint[0].lower() + hint[1:] for hint in hints)}"
    return first


def parse_overrides(args: list[str]) -> list:
    """Hydra's parse of command-line overrides; ConfigError (one line) where one does not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(args)
    except Exception as exc:
        raise ConfigError(f"cannot parse overrides: {_short(exc)}") from None


def _sweep_values(override, line: str) -> list[str]:
    """`key=value` for each value of a sweep override, or the line itself."""
    if not override.is_sweep_override():
        return [line]
    key = line.split("=", 1)[0]
    return [f"{key}={v}" for v in override.sweep_string_iterator()]


def sweeper_params(args: list[str]) -> list[str]:
    """The sweeps a config (a benchmark preset) asks Hydra's sweeper for, as overrides, less the keys
    the command line sets itself (those win). Composed with each command-line sweep's first value."""
    first = [_sweep_values(ov, line)[0] for ov, line in zip(parse_overrides(args), args)]
    params = compose(first, with_hydra=True).hydra.sweeper.get("params") or {}
    given = {a.lstrip("+~").split("=", 1)[0] for a in args}
    return [f"{key}={value}" for key, value in params.items() if key not in given]


def expand_overrides(args: list[str]) -> list[list[str]]:
    """The override lists of every job a multirun would launch: the command line's sweeps and the
    config's own (`hydra.sweeper.params`) expanded. Hydra's own settings (`hydra.*`, `hydra/...`) are
    left to Hydra."""
    mine = [a for a in args if not a.lstrip("+~").startswith("hydra")]
    mine = [*sweeper_params(mine), *mine]
    choices = [_sweep_values(ov, line) for ov, line in zip(parse_overrides(mine), mine)]
    return [list(combo) for combo in itertools.product(*choices)]


def compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """Compose the config as Hydra would for these overrides (without creating a run); `with_hydra`
    keeps Hydra's own section (the sweeper's parameters, for one)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return hydra_compose("config", overrides=overrides, return_hydra_config=with_hydra)
    except ConfigError:
        raise
    except Exception as exc:
        key = _unknown_override(exc)
        rest = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
        if key and key.startswith("algo."):  # the chosen algorithm's own keys say what is valid
            composed = compose(rest, with_hydra=True)
            target, leaf = str(composed.algo.get("_target_")), key[len("algo."):]
            hyper = learner_keywords(target)
            if hyper is None:  # read from the class itself (imports torch)
                _check_algo({**OmegaConf.to_container(composed.algo), leaf: None}, {})
            elif leaf.split(".")[0] not in hyper:
                raise _unknown_algo_key(leaf, composed.hydra.runtime.choices.get("algo"), hyper) from None
            if "." not in leaf:  # a keyword of the class that its config leaves at the default
                raise ConfigError(f"{key}: an argument of {target.rsplit('.', 1)[-1]} that its config "
                                  f"(conf/algo/) leaves at its default; add it with +{key}=...") from None
        raise ConfigError(_unknown_key(key, rest) if key else _short(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def _unknown_override(exc: Exception) -> str | None:
    """The key of Hydra's 'Could not override' error for a key that does not exist, else None."""
    match = re.search(r"Could not override '([^']+)'", str(exc))
    return match.group(1) if match and "not in struct" in f"{exc} {exc.__cause__}" else None


def config_names() -> set[str]:
    """What a command line may name at the top: the config's keys and its groups (conf/'s folders)."""
    return TOP_LEVEL_KEYS | {p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name != "hydra"}


def _unknown_key(key: str, rest: list[str] | None = None) -> str:
    """The message for an override of a key that does not exist, with the nearest existing one."""
    if key in {f"actor.{k}" for k in EXECUTION_KEYS}:
        return f"{key} is now the top-level `{key[len('actor.'):]}` (how the actor computes, not part of its spec)"
    listed = "(`python -m spikerl.run --cfg job` lists every key)"
    section, _, leaf = key.partition(".")
    if section in SCHEMAS and leaf:
        names = [f.name for f in fields(SCHEMAS[section])]
        return (f"unknown key {key!r}{did_you_mean(leaf, names, f'{section}.')} "
                f"(valid keys of {section}: {', '.join(names)})")
    if not leaf:
        return f"unknown key {key!r}{did_you_mean(key, config_names())} {listed}"
    try:  # the first part of the key that does not exist, against the keys beside it in what the rest composes
        node, parts, depth = compose(rest or []), key.split("."), 0
        while depth < len(parts) - 1 and isinstance(node, DictConfig) and parts[depth] in node:
            node, depth = node[parts[depth]], depth + 1
        prefix = ".".join(parts[:depth] + [""])
        near = did_you_mean(parts[depth], node.keys(), prefix) if isinstance(node, DictConfig) else ""
    except ConfigError:
        near = ""
    return f"unknown key {key!r}{near} {listed}"
