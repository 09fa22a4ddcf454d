"""Reading finished runs back: the summaries of every run folder under some roots."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def read_evaluations(run_dir: Path) -> list[tuple[int, float, float, float, float]]:
    """A run's evaluation history, [(env step, mean return, std, wall seconds, training seconds)]; the
    times are NaN for runs written before they were recorded; empty if the run has no history."""
    nan = float("nan")
    try:
        with open(run_dir / "evaluations.csv") as f:
            return [(int(r["step"]), float(r["return_mean"]), float(r["return_std"]),
                     float(r.get("wall_seconds") or nan), float(r.get("train_seconds") or nan))
                    for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return []


def _update_after(config: Path) -> int | None:
    """The env step of the run's first gradient update (train.update_after in its resolved config)."""
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(OmegaConf.load(config), "train.update_after")
        return None if value is None else int(value)
    except Exception:  # an unreadable or foreign config: the report then does not flag warm-up hits
        return None


def find_runs(roots: list[Path]) -> tuple[list[dict], list[Path]]:
    """(summaries, each with the run's `eval_history` and `update_after` (its first update's env step,
    from its config); run folders without a readable summary.json: failed or unfinished). A run folder
    is one Hydra made (it has `.hydra/config.yaml`)."""
    summaries, skipped = [], []
    for root in roots:
        for config in sorted(Path(root).rglob(".hydra/config.yaml")):
            run_dir = config.parent.parent
            try:
                summary = json.loads((run_dir / "summary.json").read_text())
            except (OSError, json.JSONDecodeError):
                skipped.append(run_dir)
                continue
            summary.setdefault("update_after", _update_after(config))
            summaries.append({**summary, "run_dir": str(run_dir), "eval_history": read_evaluations(run_dir)})
    return summaries, skipped
