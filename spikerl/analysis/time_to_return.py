"""Time to a return: how many env steps, how much training time and how much energy each method
needs to first reach a return threshold, and GPS-UP at equal return.

End-of-run GPS-UP compares what each method spent on the same step budget, which makes a better
policy look slower (its evaluation episodes last longer). Here every method is compared at the point
where it first reaches the same return: by default 80 % of the way from 0 to the baseline's final mean
return on that task (threshold = 0.8 R_base). A fraction of a baseline return that is not positive
means nothing (it lies below where the baseline ended, and a policy that has barely learned meets it),
so such a task gets no threshold, and the report says so (`skipped_tasks`). A run reaches it at its
first evaluation at or above it after its first gradient update: an evaluation before any update
(inside the random warm-up, e.g. CaRe-BN's 25,000 steps) measures the initial actor's luck, not
learning, so it is counted apart (`before_updates`) and left out of Speedup.
Training time excludes evaluation time (evaluations.csv's train_seconds). Energy to the
threshold is the run's mean power (its energy over the span it was measured) times the wall time to
the threshold: exact when the energy is CodeCarbon's estimate (constant power), an approximation with
measured power.
"""

from __future__ import annotations

import math
import statistics

from .gpsup import by_task_and_method


def threshold_for(base_final: float, fraction: float) -> float:
    """`fraction` of the way from 0 to a positive baseline return (a task whose baseline ends at <= 0
    gets no threshold: `skipped_tasks`)."""
    if base_final <= 0:
        raise ValueError(f"a return threshold needs a positive baseline return, got {base_final}")
    return fraction * base_final


def before_updates(run: dict, step: int) -> bool:
    """Whether the evaluation at env `step` came before the run's first gradient update."""
    return run.get("update_after") is not None and step <= run["update_after"]


def reached_before_updates(run: dict, threshold: float) -> bool:
    return any(mean >= threshold and before_updates(run, step) for step, mean, *_ in run.get("eval_history", []))


def first_reach(run: dict, threshold: float) -> dict | None:
    """Where a run's evaluations first reach `threshold` after its first gradient update: env step,
    training and wall seconds, energy (kWh, when the run measured it); None if they never do."""
    for step, mean, _, wall, train in run.get("eval_history", []):
        if mean >= threshold and not before_updates(run, step):
            hit = {"step": step, "train_seconds": train, "wall_seconds": wall}
            if "energy_kwh" in run and run.get("energy_seconds"):
                power_w = run["energy_kwh"] * 3.6e6 / run["energy_seconds"]
                hit["energy_kwh"] = power_w * wall / 3.6e6
            return hit
    return None


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else None


def skipped_tasks(summaries: list[dict], baseline: str = "popsan") -> list[str]:
    """Tasks whose baseline runs end at a mean return <= 0: no threshold there (see above)."""
    groups = by_task_and_method(summaries)
    return sorted(task for task, method in groups if method == baseline
                  and statistics.fmean(r["eval_return_mean"] for r in groups[(task, method)]) <= 0)


def time_to_return(summaries: list[dict], baseline: str = "popsan", fraction: float = 0.8) -> list[dict]:
    """One row per (task, method) on tasks with baseline runs that end at a positive mean return: the
    threshold, how many of the runs reached it, and the means over those that did of steps, training
    seconds and energy to reach it; with Speedup and Greenup at equal return against the baseline where
    both reached it."""
    groups = by_task_and_method(summaries)
    rows = []
    skipped = skipped_tasks(summaries, baseline)
    for env_id in sorted({task for task, _ in groups}):
        base_runs = groups.get((env_id, baseline))
        if not base_runs or env_id in skipped:
            continue
        threshold = threshold_for(statistics.fmean(r["eval_return_mean"] for r in base_runs), fraction)
        task_rows = {}
        for (task, method), runs in groups.items():
            if task != env_id:
                continue
            hits = [h for h in (first_reach(r, threshold) for r in runs) if h is not None]
            row = {"env_id": env_id, "method": method, "threshold": threshold, "runs": len(runs),
                   "reached": len(hits), "before_updates": sum(reached_before_updates(r, threshold) for r in runs)}
            for key in ("step", "train_seconds", "energy_kwh"):
                value = _mean([h.get(key) for h in hits])
                if value is not None:
                    row[f"{key}_to_threshold"] = value
            task_rows[method] = row
        base = task_rows[baseline]
        for row in task_rows.values():
            if row.get("train_seconds_to_threshold") and base.get("train_seconds_to_threshold"):
                row["speedup_at_threshold"] = base["train_seconds_to_threshold"] / row["train_seconds_to_threshold"]
            if row.get("energy_kwh_to_threshold") and base.get("energy_kwh_to_threshold"):
                row["greenup_at_threshold"] = base["energy_kwh_to_threshold"] / row["energy_kwh_to_threshold"]
            rows.append(row)
    return rows
