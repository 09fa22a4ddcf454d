"""Reading finished runs back: the summaries of every run folder under some roots."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
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


def _update_after(config: dict | None) -> int | None:
    """The env step of the run's first gradient update (train.update_after in its resolved config)."""
    try:
        return int(config["train"]["update_after"])
    except Exception:  # an unreadable or foreign config: the report then does not flag warm-up hits
        return None


def composition(config: dict) -> str | None:
    """A short fingerprint of what a run composed (its parts, learner and trainer settings: the
    sections spikerl.config names), from its resolved config, a learner argument it leaves out counted at
    the class's default; how it computed (neuron_backend, compile) and its own settings (seed, steps,
    devices) are left out. None where the config cannot be read."""
    from ..config import EXECUTION_KEYS, PART_SECTIONS, TRAINER_KEYS, learner_defaults

    if not isinstance(config, dict):
        return None
    parts = {section: config.get(section) for section in PART_SECTIONS}
    if isinstance(parts["algo"], dict):  # so that adding a defaulted key to conf/algo splits no method
        parts["algo"] = {**learner_defaults(parts["algo"].get("_target_", "")), **parts["algo"]}
    if isinstance(parts["actor"], dict):  # runs before execution settings left the actor's spec held them
        parts["actor"] = {k: v for k, v in parts["actor"].items() if k not in EXECUTION_KEYS}
    if "encoder" not in (parts["actor"] or {}):
        parts["encoder"] = None  # an actor that takes no encoder does not compose one
    train = config.get("train") or {}
    parts["train"] = {key: train.get(key) for key in TRAINER_KEYS}
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _resolved_config(run_dir: Path) -> dict | None:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)
    except Exception:
        return None


def separate_compositions(summaries: list[dict]) -> list[str]:
    """Runs that share a task and a method name but not a composition (runs written before names said
    so, or a user's own `method=` name) are never pooled: each composition after the most common one
    gets its fingerprint after the name (`popsan#1a2b3c4d`). Returns what was separated, as notes."""
    groups: dict[tuple, dict[str | None, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for s in summaries:
        groups[(s["env_id"], s["method"])][s.get("composition")].append(s)
    notes = []
    for (env_id, method), by_composition in groups.items():
        if len(by_composition) < 2:
            continue
        ranked = sorted(by_composition.items(), key=lambda item: (-len(item[1]), str(item[0])))
        for fingerprint, runs in ranked[1:]:
            for s in runs:
                s["method"] = f"{method}#{fingerprint}"
        apart = ", ".join(f"{method}#{fp}" for fp, _ in ranked[1:])
        counts = " / ".join(str(len(runs)) for _, runs in ranked)
        notes.append(f"{method} on {env_id}: runs composed differently under one name, kept apart as {apart} "
                     f"({counts} runs)")
    return notes


def preset_of(method: str) -> str:
    """The preset a run's name starts from: `popsan+train.batch_size=256` and `popsan~1a2b3c4d` are
    variants of `popsan` (spikerl.config.label)."""
    return str(method).split("+", 1)[0].split("~", 1)[0]


def resolve_baseline(summaries: list[dict], baseline: str) -> tuple[str, list[str]]:
    """The method the report compares against: `baseline` where runs carry that name, else the one
    variant of it that ran (a sweep whose every job changed the same settings); and what to note."""
    methods = {s["method"] for s in summaries}
    variants = sorted(m for m in methods if m != baseline and preset_of(m) == baseline)
    if baseline in methods or len(variants) != 1:
        return baseline, []
    return variants[0], [f"baseline {baseline}: its runs here are the variant {variants[0]}"]


def find_runs(roots: list[Path]) -> tuple[list[dict], list[Path]]:
    """(summaries, each with the run's `eval_history` and `update_after` (its first update's env step,
    from its config); run folders without a readable summary.json: failed or unfinished). A run folder
    is one Hydra made (it has `.hydra/config.yaml`), or a finished run's copied without Hydra's record
    (its summary.json beside the config.yaml the run wrote)."""
    summaries, skipped = [], []
    for root in roots:
        made = {config.parent.parent for config in Path(root).rglob(".hydra/config.yaml")}
        copied = {found.parent for found in Path(root).rglob("summary.json")
                  if (found.parent / "config.yaml").is_file()}
        for run_dir in sorted(made | copied):
            try:
                summary = json.loads((run_dir / "summary.json").read_text())
            except (OSError, json.JSONDecodeError):
                skipped.append(run_dir)
                continue
            config = _resolved_config(run_dir)  # every run writes config.yaml before it trains
            summary.setdefault("update_after", _update_after(config))
            summaries.append({**summary, "run_dir": str(run_dir), "eval_history": read_evaluations(run_dir),
                              "composition": composition(config)})
    return summaries, skipped
