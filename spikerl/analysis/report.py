"""The comparison report of a sweep (or any set of run folders): tables and plots that follow from the
runs' `summary.json` files alone.

    final_returns.{md,csv}    final evaluation return per task and method (mean and spread over seeds)
    intervals.{md,csv,png}    IQM with 95 % bootstrap intervals of the final return and the area under the curve,
                              per task and over all tasks (spikerl.analysis.intervals, with rliable); the
                              figure also shows the probability of improvement
    improvement.{md,csv}      probability of improvement over the baseline, per task and over all tasks
    profiles.{csv,png}        performance profiles (the figure also shows sample_efficiency.csv)
    sample_efficiency.csv     normalised IQM against env steps and against training time
                              (these four only with bootstrap samples; profiles and sample efficiency only
                              where the baseline's returns normalise a task)
    learning_curves.{png,csv} evaluation return against env steps and training time, every seed and the mean
    time_to_return.{md,csv}   steps, training time and energy to reach a return threshold; GPS-UP at equal return
    inference_energy.{md,csv} energy per action of each trained actor on neuromorphic-style hardware (estimate;
                              each run's estimate is also written into its run folder, inference_energy.json)
    gpsup.{md,csv}            Speedup, Powerup, Greenup, reward and carbon differences against a baseline
    gpsup_quadrant.png        Speedup against Powerup; Greenup = Speedup / Powerup
    energy_carbon.{md,csv,png} energy, power and CO2eq per method with everyday equivalents
    report.md                 all of the above in one page, with the runs skipped and why

Runs without a summary (failed or unfinished) are skipped with a note, never an error.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .gpsup import by_task_and_method, compare, spread
from .intervals import BOOTSTRAP_REPS
from .results import find_runs, resolve_baseline, separate_compositions
from .time_to_return import skipped_tasks, time_to_return

# Everyday equivalents: (column, label, amount per unit, unit of the run figure, source).
EQUIVALENTS = [
    ("car_miles", "miles driven by an average gasoline car", 1 / 0.404, "kg CO2eq",
     "404 g CO2 per mile: US EPA, Greenhouse Gas Emissions from a Typical Passenger Vehicle "
     "(EPA-420-F-18-008, 2018)"),
    ("household_hours", "hours of an average US household's electricity", 24 / (10_791 / 365), "kWh",
     "10,791 kWh per year per US residential customer (2022): US EIA, 'How much electricity does an "
     "American home use?'"),
]

GPSUP_COLUMNS = ["env_id", "method", "runs", "eval_return_mean", "eval_return_std", "wall_seconds",
                 "wall_seconds_std", "steady_seconds", "compile_seconds", "startup_seconds", "energy_seconds",
                 "energy_kwh", "energy_kwh_std", "power_w", "emissions_kg",
                 "energy_source", "time_basis", "speedup", "speedup_ci_low", "speedup_ci_high", "powerup", "greenup",
                 "greenup_ci_low", "greenup_ci_high", "reward_diff_percent", "carbon_diff_percent"]
INFERENCE_COLUMNS = ["env_id", "method", "runs", "kind", "energy_uj_45nm", "energy_uj_loihi", "synaptic_ops", "macs",
                     "neuron_updates", "firing_rate"]
THRESHOLD_COLUMNS = ["env_id", "method", "threshold", "runs", "reached", "before_updates", "step_to_threshold",
                     "train_seconds_to_threshold", "energy_kwh_to_threshold", "speedup_at_threshold",
                     "greenup_at_threshold"]
RETURN_COLUMNS = ["env_id", "method", "runs", "final_return_mean", "final_return_std", "best_return_mean",
                  "total_env_steps", "precision", "precision_reason"]
CURVE_COLUMNS = ["env_id", "method", "step", "seeds", "return_mean", "return_std"]
ENERGY_COLUMNS = ["env_id", "method", "runs", "energy_kwh", "power_w", "emissions_kg", "carbon_diff_percent",
                  "energy_source", *(e[0] for e in EQUIVALENTS)]
ESTIMATE_NOTE = (
    "Energy source `estimate`: CodeCarbon found no power counters (no RAPL, no NVML), so it assumed a fixed "
    "CPU power (a share of the CPU's TDP by load) plus RAM power. Energy then grows with wall time alone: "
    "Powerup is about 1 and Greenup about equal to Speedup by construction, and they say nothing about "
    "the methods' real power draw. Only `rapl` or `nvml` figures measure it.")

FIGURE_NOTE = ("Energy is CodeCarbon's estimate (no power counters): a fixed power times wall time, so Powerup "
               "is about 1 and Greenup about Speedup by construction; not a measurement.")


def final_returns(summaries: list[dict]) -> list[dict]:
    """Final and best evaluation return per (task, method): mean and standard deviation over seeds."""
    rows = []
    for (env_id, method), runs in by_task_and_method(summaries).items():
        finals = [r["eval_return_mean"] for r in runs]
        rows.append({
            "env_id": env_id, "method": method, "runs": len(runs), "final_return_mean": statistics.fmean(finals),
            "final_return_std": spread(finals),
            "best_return_mean": statistics.fmean(r.get("best_eval_return", r["eval_return_mean"]) for r in runs),
            "total_env_steps": max(r.get("total_env_steps", 0) for r in runs),
            "precision": _distinct(r.get("precision") for r in runs),
            "precision_reason": _distinct(r.get("precision_reason") for r in runs),
        })
    return rows


def _distinct(values) -> str | None:
    """The distinct values of the runs, in order, joined; None if no run recorded one."""
    seen = list(dict.fromkeys(str(v) for v in values if v))
    return "; ".join(seen) if seen else None


def learning_curves(summaries: list[dict]) -> list[dict]:
    """Evaluation return at each evaluated env step per (task, method): mean and standard deviation
    over the seeds evaluated at that step (runs from older versions without a history are left out)."""
    points = defaultdict(lambda: defaultdict(list))
    for s in summaries:
        for step, mean, *_ in s.get("eval_history", []):
            points[(s["env_id"], s["method"])][int(step)].append(mean)
    rows = []
    for (env_id, method), by_step in sorted(points.items()):
        for step, values in sorted(by_step.items()):
            rows.append({"env_id": env_id, "method": method, "step": step, "seeds": len(values),
                         "return_mean": statistics.fmean(values), "return_std": spread(values)})
    return rows


def energy_rows(gpsup_rows: list[dict]) -> list[dict]:
    """Energy, power and carbon per (task, method) with the everyday equivalents of EQUIVALENTS."""
    rows = []
    for r in gpsup_rows:
        if "energy_kwh" not in r:
            continue
        row = {c: r.get(c) for c in ENERGY_COLUMNS[:8]}
        for column, _, per_unit, unit, _ in EQUIVALENTS:
            row[column] = (r["emissions_kg"] if unit == "kg CO2eq" else r["energy_kwh"]) * per_unit
        rows.append(row)
    return rows


INFERENCE_FILE = "inference_energy.json"


def run_inference_energy(summary: dict, episodes: int) -> dict:
    """A run's inference estimate (spikerl.export.inference_energy), kept in its folder as INFERENCE_FILE:
    results are committed without their checkpoints, and a later report over them reuses it. A kept one
    for other episodes or another length of the run is estimated afresh (from the checkpoint)."""
    from ..export import inference_energy

    kept = Path(summary["run_dir"]) / INFERENCE_FILE
    try:
        result = json.loads(kept.read_text())
        if result.get("episodes") == (episodes if result.get("kind") == "spiking" else 0) and \
                result.get("env_steps") == summary.get("total_env_steps"):
            return result
    except (OSError, ValueError):
        pass
    result = inference_energy(summary["run_dir"], episodes=episodes)
    try:
        kept.write_text(json.dumps(result, indent=1) + "\n")
    except OSError:  # a read-only results folder: the report still has the estimate
        pass
    return result


def inference_rows(summaries: list[dict], episodes: int, notes: list[str]) -> list[dict]:
    """Energy per action of each run's trained actor on neuromorphic-style hardware (spikerl.export:
    synaptic operations x published per-operation energies; MACs for the ANN), from `episodes`
    evaluation episodes, means over seeds per (task, method). Runs whose actor cannot be estimated are
    left out with a note."""
    per_run = []
    for s in summaries:
        try:
            result = run_inference_energy(s, episodes)
        except Exception as exc:  # no checkpoint, an actor the estimate does not cover
            notes.append(f"no inference energy for {s['run_dir']}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
            continue
        rates = [layer["firing_rate"] for layer in result["layers"] if layer.get("firing_rate") is not None]
        per_run.append({"env_id": s["env_id"], "method": s["method"], "kind": result["kind"],
                        "energy_uj_45nm": result["energy_uj"]["45nm"], "energy_uj_loihi": result["energy_uj"]["loihi"],
                        **result["totals"], "firing_rate": statistics.fmean(rates) if rates else None})
    rows = []
    for (env_id, method), runs in by_task_and_method(per_run).items():
        row = {"env_id": env_id, "method": method, "runs": len(runs), "kind": runs[0]["kind"]}
        for key in INFERENCE_COLUMNS[4:]:
            values = [r[key] for r in runs if r[key] is not None]
            row[key] = statistics.fmean(values) if values else None
        rows.append(row)
    return rows


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class Report:
    out: Path
    runs: int = 0
    skipped: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gpsup: list[dict] = field(default_factory=list)


def write_report(roots: list[Path], out: Path, baseline: str = "popsan", threshold_fraction: float = 0.8,
                 inference_episodes: int = 1, bootstrap_reps: int = BOOTSTRAP_REPS) -> Report:
    """Read every run folder under `roots` and write the tables and plots into `out`. Time to a return
    is measured against `threshold_fraction` of the baseline's final mean return; the inference energy
    per action from `inference_episodes` episodes of each trained actor (0: left out); the intervals
    from `bootstrap_reps` stratified-bootstrap samples (0: left out)."""
    from . import plots

    summaries, skipped = find_runs(roots)
    report = Report(out=out, runs=len(summaries), skipped=skipped)
    report.notes += separate_compositions(summaries)
    baseline, notes = resolve_baseline(summaries, baseline)
    report.notes += notes
    report.notes += [f"skipped {p} (no summary.json: failed or unfinished)" for p in skipped]
    report.notes += [f"{s['run_dir']} ran part of its work eagerly though asked to compile (compiling failed: "
                     f"{s['compile_failed']}): its times are not a compiled run's"
                     for s in summaries if s.get("compile_failed")]
    if not summaries:
        report.notes.append("no finished runs: nothing to compare")
        return report
    out.mkdir(parents=True, exist_ok=True)
    report.gpsup = compare(summaries, baseline)
    finals, curves, energy = final_returns(summaries), learning_curves(summaries), energy_rows(report.gpsup)
    if not any("speedup" in r for r in report.gpsup):
        report.notes.append(f"no task has runs of the baseline {baseline!r}: GPS-UP left out")
    if not energy:
        report.notes.append("no run measured its energy (energy=none?): energy table and quadrant left out")

    sections = [f"# Comparison of {report.runs} runs\n\nBaseline for GPS-UP: `{baseline}` on the same task; "
                "means over seeds. Speedup = T_base / T, Powerup = P / P_base, Greenup = E_base / E = "
                "Speedup / Powerup; differences in percent of the baseline."]

    def table(name: str, title: str, rows: list[dict], columns: list[str], extra: str = "") -> None:
        text = markdown_table(rows, columns)
        (out / f"{name}.md").write_text(f"# {title}\n\n{text}\n{extra}")
        write_csv(out / f"{name}.csv", rows, columns)
        report.files += [out / f"{name}.md", out / f"{name}.csv"]
        sections.append(f"## {title}\n\n{text}\n{extra}")

    def figure(name: str, draw, *args, **kwargs) -> None:
        path = out / f"{name}.png"
        draw(*args, path, **kwargs)
        report.files.append(path)
        sections.append(f"![{name}]({name}.png)")

    estimate = any("estimate" in str(r.get("energy_source", "")) for r in report.gpsup)
    table("final_returns", "Final evaluation return", finals, RETURN_COLUMNS,
          "\n`precision`: what the runs computed in (`precision_reason`: why, e.g. what `precision=auto`'s probe "
          "measured), from their summaries.\n")
    if bootstrap_reps > 0:
        from .intervals import (
            EFFICIENCY_COLUMNS,
            IMPROVEMENT_COLUMNS,
            INTERVAL_COLUMNS,
            MIN_RUNS,
            PROFILE_COLUMNS,
            gpsup_intervals,
            interval_estimates,
        )

        stats = interval_estimates(summaries, baseline, bootstrap_reps)
        gpsup_intervals(summaries, report.gpsup, baseline, bootstrap_reps)
        report.notes += stats["notes"]
        table("intervals", "Interquartile means with 95 % confidence intervals", stats["intervals"], INTERVAL_COLUMNS,
              f"\nIQM over the runs of each method (the mean of the middle half; with {MIN_RUNS} runs, their mean), "
              f"with a 95 % stratified-bootstrap interval ({bootstrap_reps} samples; none under {MIN_RUNS} runs). "
              "`final`: the last evaluation return; `auc`: the mean evaluation return over training (area under "
              f"the learning curve / steps). Over all tasks, returns are divided by {baseline}'s mean final return "
              "on the task (1 = its level). Intervals from 3 runs are wide: read them before any ranking.\n")
        table("improvement", f"Probability of improvement over {baseline}", stats["improvement"], IMPROVEMENT_COLUMNS,
              f"\nThe probability that a run of the method ends above a run of {baseline} on the same task "
              "(Mann-Whitney U / (n m); over all tasks, its mean), with its 95 % interval; 0.5 = no difference.\n")
        figure("intervals", plots.interval_estimates, stats["intervals"], stats["improvement"], baseline)
        if not stats["profile"]:
            report.notes.append(f"no profiles.png: performance profiles and efficiency curves need runs of {baseline} "
                                "ending at a positive mean return (they are normalised by it)")
        else:
            write_csv(out / "profiles.csv", stats["profile"], PROFILE_COLUMNS)
            write_csv(out / "sample_efficiency.csv", stats["efficiency"], EFFICIENCY_COLUMNS)
            report.files += [out / "profiles.csv", out / "sample_efficiency.csv"]
            figure("profiles", plots.profiles_and_efficiency, stats["profile"], stats["efficiency"], baseline)
    if curves:
        write_csv(out / "learning_curves.csv", curves, CURVE_COLUMNS)
        report.files.append(out / "learning_curves.csv")
        figure("learning_curves", plots.learning_curves, summaries)
    thresholds = time_to_return(summaries, baseline, threshold_fraction)
    unmeasured = skipped_tasks(summaries, baseline)
    if unmeasured:
        report.notes.append(f"{baseline}'s mean final return is <= 0 on {', '.join(unmeasured)}: no time to a "
                            f"return there (a fraction of it would lie below where {baseline} ended)")
    if thresholds:
        table("time_to_return", f"Time to {threshold_fraction:.0%} of {baseline}'s final return", thresholds,
              THRESHOLD_COLUMNS, "\nMeans over the runs that reached the threshold (`reached` of `runs`) after their "
              "first gradient update. `before_updates`: runs whose evaluation reached it before any update (inside "
              "the random warm-up: the initial actor, not learning); their time counts from their first reach "
              "after updates began, or not at all. Training seconds exclude evaluations; energy to the threshold "
              "is the run's mean power times its wall time to it. Speedup and Greenup at equal return compare "
              "these with the baseline's.\n")
    table("gpsup", f"GPS-UP against {baseline}", report.gpsup, GPSUP_COLUMNS,
          "\nMeans over seeds, with the spread over seeds (`_std`: population standard deviation). `time_basis` "
          "says which time GPS-UP divides: `steady_seconds` (training wall time less compiling, paid once per "
          "process; its energy is the job's mean power times it) where every run records its compiling, with "
          "the compiling and the rest of the start-up (`startup_seconds`: compiling, the precision probe, "
          "building the run) in their own columns; else the energy meter's span (`energy_seconds`) or the "
          "training wall time. `_ci_low`, `_ci_high`: 95 % stratified-bootstrap intervals of Speedup and Greenup "
          "(each side's runs resampled apart; none under 3 runs a side).\n"
          + (f"\n{ESTIMATE_NOTE}\n" if estimate else ""))
    if any("powerup" in r for r in report.gpsup):
        figure("gpsup_quadrant", plots.gpsup_quadrant, report.gpsup, baseline, note=FIGURE_NOTE if estimate else None)
    inference = inference_rows(summaries, inference_episodes, report.notes) if inference_episodes > 0 else []
    if inference:
        table("inference_energy", "Inference energy per action", inference, INFERENCE_COLUMNS,
              "\nAn estimate of what one action of the trained actor costs on neuromorphic-style hardware: "
              "synaptic operations (presynaptic spikes x the synapses they feed) at 45 nm CMOS figures "
              "(Horowitz, ISSCC 2014) "
              "and at Loihi's published per-operation energy (unverified here: see docs/neuromorphic.md); dense "
              "MACs for non-spiking inputs and for the ANN; memory access not counted. `firing_rate`: mean over "
              "the spiking layers. Set beside the measured training energy below.\n")
    if energy:
        sources = "\n".join(f"- {column}: {label}; {source}" for column, label, _, _, source in EQUIVALENTS)
        table("energy_carbon", "Energy and carbon", energy, ENERGY_COLUMNS,
              f"\nEquivalents:\n{sources}\n" + (f"\n{ESTIMATE_NOTE}\n" if estimate else ""))
        figure("energy_carbon", plots.energy_carbon, energy, note=FIGURE_NOTE if estimate else None)
    if report.notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {n}" for n in report.notes))
    (out / "report.md").write_text("\n\n".join(sections) + "\n")
    report.files.append(out / "report.md")
    return report
