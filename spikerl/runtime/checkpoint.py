"""Checkpoints: written atomically, read without running code from the file.

Every checkpoint records `meta["format"]`. Format 1 (no key) predates the package reorganisation: its
actor/critic specs name classes by their old paths, which `load` rewrites to the current ones. Format 2
predates the choice of algorithm: every such run was TD3 with a twin critic (TwinQ, now a QEnsemble
of two, with the same weights under the same names). Format 3's DSRL actor ran one neuron (its
`neuron`) in every layer, the readout included, and passed the gradient through the reset; format 4's
follows the published code layer by layer, so a format-3 DSRL actor spec is given that neuron for each
part explicitly and computes what it was trained with. Format 5's actor specs held the execution
settings `neuron_backend` and `compile` (how the actor computes, now top-level config keys passed as
it is built); they are dropped from the spec. A format newer than FORMAT_VERSION is refused:
this code cannot know what changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import torch

from ..errors import BAD_INPUT, FAILED, SpikeRLError

FORMAT_VERSION = 6  # stamped into meta["format"] by save_atomic; bump it with a migration in `_migrate`

# Format 1 -> 2: Hydra `_target_` prefixes of classes that moved when the package was reorganised.
_MOVED_TARGETS_V1 = {
    "spikerl.actors.MLPActor": "spikerl.rl.networks.MLPActor",
    "spikerl.actors.": "spikerl.snn.actors.",
    "spikerl.critics.TwinQ": "spikerl.rl.networks.TwinQ",
    "spikerl.encoders.": "spikerl.snn.encoders.",
}


class CheckpointError(SpikeRLError):
    """A checkpoint that cannot be used (bad input: exit code 2), or one that cannot be written (1); the
    message is one line for the user."""

    exit_code = BAD_INPUT


# Format 2 -> 3: the twin critic became an ensemble whose size the algorithm sets.
_MOVED_TARGETS_V2 = {"spikerl.rl.networks.TwinQ": "spikerl.rl.networks.QEnsemble"}


def _retarget(spec, moved: dict[str, str]):
    """A spec with every `_target_` (nested ones included) moved by `moved` (old -> new: an exact class,
    or a whole module where the old path ends with a dot)."""
    if isinstance(spec, dict):
        spec = {k: _retarget(v, moved) for k, v in spec.items()}
        target = spec.get("_target_")
        if isinstance(target, str):
            for old, new in moved.items():  # exact class first, then whole modules
                if target == old or (old.endswith(".") and target.startswith(old)):
                    spec["_target_"] = new + target[len(old):]
                    break
        return spec
    if isinstance(spec, list):
        return [_retarget(v, moved) for v in spec]
    return spec


def _retarget_specs(meta: dict, moved: dict[str, str]) -> dict:
    return {**meta, **{k: _retarget(meta[k], moved) for k in ("actor_spec", "critic_spec") if k in meta}}


def _migrate(state: dict, path: Path) -> dict:
    """Bring a checkpoint of an older format up to FORMAT_VERSION; refuse a newer one."""
    meta = state["meta"]
    version = meta.get("format", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {version}; this SpikeRL reads formats up to "
                              f"{FORMAT_VERSION}: upgrade SpikeRL")
    if version == 1:
        meta = _retarget_specs(meta, _MOVED_TARGETS_V1)
        state = _regroup_v1(state)
    if version <= 2:
        meta = {**_retarget_specs(meta, _MOVED_TARGETS_V2), "algo": "td3"}
    if version <= 3 and isinstance(meta.get("actor_spec"), dict):
        meta = {**meta, "actor_spec": _uniform_dsrl_v3(meta["actor_spec"])}
    if version <= 4 and isinstance(meta.get("actor_spec"), dict):
        meta = {**meta, "actor_spec": _composed_popsan_v4(meta["actor_spec"])}
    if version <= 5 and isinstance(meta.get("actor_spec"), dict):
        meta = {**meta, "actor_spec": {k: v for k, v in meta["actor_spec"].items() if k not in _EXECUTION_V5}}
    return {**state, "meta": {**meta, "format": FORMAT_VERSION}}


_DSRL_ACTOR = "spikerl.snn.actors.DSRLSpikingActor"
_DSRL_V3_NEURON = {"current_decay": 0.5, "voltage_decay": 0.5, "threshold": 1.0}  # format 3's default


def _uniform_dsrl_v3(spec: dict) -> dict:
    """A format-3 DSRL actor spec with its one neuron spelled out for the first layer and the readout,
    and the gradient through the reset (what format 3 computed); other actors unchanged."""
    if spec.get("_target_") != _DSRL_ACTOR:
        return spec
    neuron = {**_DSRL_V3_NEURON, **(spec.get("neuron") or {}), "reset_gradient": True}
    decays = {k: neuron[k] for k in ("current_decay", "voltage_decay")}
    return {"timesteps": 5, **spec, "neuron": neuron, "first_layer": decays, "readout": decays}


_POPSAN_ACTOR = "spikerl.snn.actors.PopSpikingActor"
_EXECUTION_V5 = ("neuron_backend", "compile")  # format 5's actor specs held them


def _composed_popsan_v4(spec: dict) -> dict:
    """A format-4 PopSAN actor spec with the parts format 5 names spelled out as they were: no
    connections in the output populations, PopSAN's rate decoder; other actors unchanged."""
    if spec.get("_target_") != _POPSAN_ACTOR:
        return spec
    decoder = {"_target_": "spikerl.snn.decoders.PopulationDecoder", "_partial_": True}
    return {"connections": "none", "decoder": decoder, **spec}


def _regroup_v1(state: dict) -> dict:
    """Format 1 kept the training loop's state in one flat layout; format 2 keeps each part's under
    its name (collector, updates, evaluator) and counts the wall time of a run's segments, which
    format 1 did not record (taken as 0)."""
    if "counters" not in state:  # a bare meta + weights file: nothing to regroup
        return state
    state = dict(state)
    counters, rng = state.pop("counters"), state.pop("rng")
    state["collector"] = {"envs": state.pop("envs"), "obs": state.pop("obs"),
                          "episode_returns": state.pop("episode_returns"), "rng": rng["numpy"],
                          "episodes": counters["episodes"]}
    state["updates"] = {"sampler": rng["sampler"], "seconds": 0.0}
    state["evaluator"] = {"history": state.pop("eval_history"), "seconds": 0.0}
    state["counters"] = {"env_steps": counters["env_steps"], "local_steps": counters["local_steps"],
                         "rank": counters["rank"], "world_size": counters["world_size"], "wall_seconds": 0.0,
                         "segments": 1}
    state["rng"] = {"python": rng["python"], "torch": rng["torch"]}
    return state


def save_atomic(state: dict, path: str | Path) -> Path:
    """Write to a temporary file in the same folder, fsync it, then rename over `path`: a crash at
    any moment leaves either the old checkpoint or the new one, never a torn file."""
    path = Path(path)
    if isinstance(state.get("meta"), dict):
        state = {**state, "meta": {**state["meta"], "format": FORMAT_VERSION}}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, folder unwritable: say so; the previous file is untouched
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc} "
                              "(the previous checkpoint is intact)", exit_code=FAILED) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


@contextlib.contextmanager
def staging_folder(out: Path):
    """The temporary folder beside `out` that a result is written into before `replace_folder` moves it
    into place; removed on leaving, whether it was moved, abandoned or half-written."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(tmp: Path, out: Path) -> None:
    """Move a finished folder `tmp` into place as `out`; an existing `out` is swapped out first and
    removed only once the new one is in place (put back if the move fails)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def run_folder(path: str | Path) -> Path:
    """The run folder a checkpoint belongs to (where its config.yaml lies): `path` itself where it is a
    folder, else the folder above the checkpoint's (a run keeps them in <run folder>/checkpoints/)."""
    path = Path(path)
    return path if path.is_dir() else path.parent.parent


def load(path: str | Path) -> dict:
    """Load a checkpoint with `weights_only=True` (tensors and plain containers only), migrated to
    FORMAT_VERSION."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, in one line
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("meta"), dict):
        raise CheckpointError(f"{path} is not a SpikeRL checkpoint")
    return _migrate(state, path)


# What must match for a checkpoint to continue a run (the rest of the config may change on resume).
# obs_norm: the saved normaliser statistics belong to the checkpoint's kind of normalisation; algo: the
# saved networks and optimizers belong to the checkpoint's algorithm.
COMPATIBLE_KEYS = ("env_id", "obs_dim", "act_dim", "algo", "actor_spec", "critic_spec", "world_size", "obs_norm")


def compatible_view(meta: dict) -> dict:
    """The part of a run's meta that a checkpoint must match to continue it (COMPATIBLE_KEYS)."""
    return {key: meta[key] for key in COMPATIBLE_KEYS if key in meta}


def check_compatible(meta: dict, expected: dict, path: str | Path) -> None:
    """Refuse, in one line, a checkpoint made for another task, algorithm, architecture, observation
    normalisation or number of ranks. A key is compared only when both sides record it: checkpoints
    written before a key was recorded (obs_norm) still resume."""
    saved, wanted = compatible_view(meta), compatible_view(expected)
    for key in COMPATIBLE_KEYS:
        if key in saved and key in wanted and saved[key] != wanted[key]:
            if key.endswith("_spec"):
                what = f"its {key[:-5]} differs from this config's"
            else:
                what = f"it has {key}={meta.get(key)!r}, this run {expected[key]!r}"
            raise CheckpointError(f"checkpoint {path} does not fit this run: {what}")


def resume_path(resume: str | None, run_dir: Path, rank: int = 0) -> Path | None:
    """The checkpoint a run continues from: None for a fresh start; `auto` is this run folder's last
    checkpoint when there is one; anything else is a checkpoint file or a run folder."""
    if resume is None:
        return None
    name = "last.pt" if rank == 0 else f"last.rank{rank}.pt"
    if resume == "auto":
        path = run_dir / "checkpoints" / name
        return path if path.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / name
    elif rank:
        path = path.with_name(path.name.replace(".pt", f".rank{rank}.pt"))
    if not path.is_file():
        raise CheckpointError(f"resume: no checkpoint at {path}")
    return path
