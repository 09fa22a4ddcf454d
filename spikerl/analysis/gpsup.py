"""GPS-UP (Speedup, Powerup, Greenup) of a method against a baseline, from run summaries.

For a method's runs and its baseline's runs on the same task (means over seeds):
    Speedup = T_base / T          (time)
    Powerup = P / P_base          (mean power, P = E / T)
    Greenup = E_base / E = Speedup / Powerup   (energy)
Every row uses one time base T, so the identity Greenup = Speedup / Powerup holds in each row:

    steady_seconds   (the default, where every run on both sides records its compiling) the training wall
                     time less what torch.compile took: a job's compiling is paid once per process (not at
                     all from a warm cache), so the job that happened to compile first, or on a cold cache,
                     would otherwise look slower. E is then the energy of that span, the job's mean power
                     times it. What was left out is in `startup_seconds` (compiling, the precision probe,
                     building the run: the energy meter's span less the steady time), beside the rates.
    energy_seconds   where both sides have energy but a run predates the compile record: the span the
                     energy meter measured (the whole job), the time the energy belongs to; a run without
                     `energy_seconds` falls back to its `wall_seconds`.
    wall_seconds     without energy on both sides: the training wall time, and no Powerup or Greenup.

Each row records its base in `time_basis` and keeps `wall_seconds` for display.
and the reward difference in percent, as the SpikeRL paper reports it: 100 (R - R_base) / |R_base|.
"""

from __future__ import annotations

import statistics
from collections import defaultdict


def spread(values: list[float]) -> float:
    """Population standard deviation over seeds (0 for one seed)."""
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def by_task_and_method(summaries: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The runs of each (env_id, method), sorted by key: one entry per seed."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for s in summaries:
        groups[(s["env_id"], s["method"])].append(s)
    return dict(sorted(groups.items()))


def mean_by_method(summaries: list[dict]) -> dict[tuple[str, str], dict]:
    """Mean wall time, energy, power and final return per (env_id, method), with the seed count, the
    spread over seeds (population standard deviation) of wall time, return and energy, and how the
    energy was measured."""
    out = {}
    for key, runs in by_task_and_method(summaries).items():
        row = {"runs": len(runs), "wall_seconds": statistics.fmean(r["wall_seconds"] for r in runs),
               "wall_seconds_std": spread([r["wall_seconds"] for r in runs]),
               "eval_return_mean": statistics.fmean(r["eval_return_mean"] for r in runs),
               "eval_return_std": spread([r["eval_return_mean"] for r in runs])}
        if all("energy_kwh" in r for r in runs):
            row["energy_kwh"] = statistics.fmean(r["energy_kwh"] for r in runs)
            row["energy_kwh_std"] = spread([r["energy_kwh"] for r in runs])
            row["energy_source"] = "+".join(sorted({str(r.get("energy_source", "unknown")) for r in runs}))
            row["emissions_kg"] = statistics.fmean(r["emissions_kg"] for r in runs)
            # mean power over the span the energy was measured in (the whole job), else the training time
            row["energy_seconds"] = statistics.fmean(r.get("energy_seconds", r["wall_seconds"]) for r in runs)
            row["power_w"] = row["energy_kwh"] * 3.6e6 / row["energy_seconds"]
        if all("compile_seconds" in r for r in runs):
            row["steady_seconds"] = statistics.fmean(r["wall_seconds"] - r["compile_seconds"] for r in runs)
            row["compile_seconds"] = statistics.fmean(r["compile_seconds"] for r in runs)
            row["startup_seconds"] = row.get("energy_seconds", row["wall_seconds"]) - row["steady_seconds"]
        out[key] = row
    return out


def run_time(run: dict, basis: str) -> float:
    """One run's time on a row's time basis (for resampling runs: the intervals)."""
    if basis == "steady_seconds":
        return run["wall_seconds"] - run["compile_seconds"]
    return run.get(basis, run["wall_seconds"])


def run_energy(run: dict, basis: str) -> float:
    """One run's energy (kWh) on a row's time basis: on the steady time, its mean power times that time."""
    if basis == "steady_seconds":
        return run["energy_kwh"] * run_time(run, basis) / run.get("energy_seconds", run["wall_seconds"])
    return run["energy_kwh"]


def gps_up(method: dict, base: dict) -> dict:
    """GPS-UP of one method's means against the baseline's (same task), on one time base (module doc)."""
    with_energy = "energy_kwh" in method and "energy_kwh" in base
    steady = "steady_seconds" in method and "steady_seconds" in base
    basis = "steady_seconds" if steady else "energy_seconds" if with_energy else "wall_seconds"
    result = {
        "time_basis": basis,
        "speedup": base[basis] / method[basis],
        "reward_diff_percent": 100.0 * (method["eval_return_mean"] - base["eval_return_mean"])
        / abs(base["eval_return_mean"]) if base["eval_return_mean"] else float("nan"),
    }
    if with_energy:
        # the energy of the time base: the whole job's, or its mean power times the steady time
        def energy(row):
            return row["energy_kwh"] * (row[basis] / row["energy_seconds"] if steady else 1.0)

        result["powerup"] = method["power_w"] / base["power_w"]
        result["greenup"] = energy(base) / energy(method)
        result["carbon_diff_percent"] = 100.0 * (energy(method) / method["energy_kwh"] * method["emissions_kg"]
                                                 / (energy(base) / base["energy_kwh"] * base["emissions_kg"]) - 1.0)
    return result


def compare(summaries: list[dict], baseline: str = "popsan") -> list[dict]:
    """One row per (task, method): the means and, where the task has baseline runs, GPS-UP."""
    means = mean_by_method(summaries)
    rows = []
    for (env_id, method), row in sorted(means.items()):
        base = means.get((env_id, baseline))
        rows.append({"env_id": env_id, "method": method, **row, **(gps_up(row, base) if base else {})})
    return rows
