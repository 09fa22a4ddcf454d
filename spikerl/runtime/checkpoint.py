"""Checkpoints: written atomically, read without running code from the file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line for the user."""


def save_atomic(state: dict, path: str | Path) -> Path:
    """Write to a temporary file in the same folder, fsync it, then rename over `path`: a crash at
    any moment leaves either the old checkpoint or the new one, never a torn file."""
    path = Path(path)
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
                              "(the previous checkpoint is intact)") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load(path: str | Path) -> dict:
    """Load a checkpoint with `weights_only=True` (tensors and plain containers only)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, in one line
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}") from exc
    if not isinstance(state, dict) or "meta" not in state:
        raise CheckpointError(f"{path} is not a SpikeRL checkpoint")
    return state


# What must match for a checkpoint to continue a run (the rest of the config may change on resume).
COMPATIBLE_KEYS = ("env_id", "obs_dim", "act_dim", "actor_spec", "critic_spec", "world_size")


EXECUTION_KEYS = ("neuron_backend", "compile")  # how an actor is computed, not what: free to change on resume


def _comparable(key: str, value):
    if key.endswith("_spec") and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in EXECUTION_KEYS}
    return value


def check_compatible(meta: dict, expected: dict, path: str | Path) -> None:
    """Refuse, in one line, a checkpoint made for another task, architecture or number of ranks."""
    for key in COMPATIBLE_KEYS:
        if key in expected and _comparable(key, meta.get(key)) != _comparable(key, expected[key]):
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
