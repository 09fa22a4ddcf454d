"""Figures of the comparison report (matplotlib, no display needed). Each takes the rows of a report
table (spikerl.report) and the PNG path to write."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on headless machines and inside Hydra callbacks
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402


def _by(rows: list[dict], key: str) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    return dict(sorted(groups.items()))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curves(summaries: list[dict], path: Path) -> None:
    """Per task, evaluation return against env steps (left) and against training time (right, wall
    time less evaluations): every seed a thin line, the mean over seeds a thick one with one standard
    deviation shaded (left)."""
    import numpy as np

    tasks = _by([s for s in summaries if s.get("eval_history")], "env_id")
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.8 * len(tasks)), squeeze=False)
    for (ax_steps, ax_time), (task, runs) in zip(axes, tasks.items()):
        for i, (method, method_runs) in enumerate(_by(runs, "method").items()):
            color = f"C{i}"
            by_step = defaultdict(list)
            for run in method_runs:
                rows = np.array([(*row, np.nan, np.nan)[:5] for row in run["eval_history"]], dtype=float)
                ax_steps.plot(rows[:, 0], rows[:, 1], color=color, lw=0.7, alpha=0.45)
                if not np.isnan(rows[:, 4]).all():
                    ax_time.plot(rows[:, 4] / 60, rows[:, 1], color=color, lw=0.9, alpha=0.6)
                for step, mean in rows[:, :2]:
                    by_step[step].append(mean)
            steps = sorted(by_step)
            mean = np.array([np.mean(by_step[s]) for s in steps])
            std = np.array([np.std(by_step[s]) for s in steps])
            label = f"{method} ({len(method_runs)} seed{'s' * (len(method_runs) > 1)})"
            ax_steps.plot(steps, mean, color=color, lw=2, label=label)
            ax_steps.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
            ax_time.plot([], [], color=color, lw=2, label=label)
        ax_steps.set(title=f"{task}: against env steps", xlabel="env steps", ylabel="evaluation return")
        ax_time.set(title=f"{task}: against training time (each seed)", xlabel="training minutes (no evaluations)",
                    ylabel="evaluation return")
        for ax in (ax_steps, ax_time):
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    _save(fig, path)


def gpsup_quadrant(rows: list[dict], baseline: str, path: Path) -> None:
    """Speedup (up: faster) against Powerup (right: more power) on log axes, the baseline at (1, 1).
    Dashed lines are constant Greenup: above the diagonal a method uses less energy than the baseline."""
    import numpy as np

    points = [r for r in rows if "powerup" in r]
    fig, ax = plt.subplots(figsize=(6, 5))
    xs = [r["powerup"] for r in points]
    ys = [r["speedup"] for r in points]
    lo = min([*xs, *ys, 1.0]) / 1.5
    hi = max([*xs, *ys, 1.0]) * 1.5
    grid = np.geomspace(lo, hi, 50)
    for greenup in (0.5, 1.0, 2.0):
        ax.plot(grid, greenup * grid, "--", color="grey", lw=0.8)
        x_end = min(hi, hi / greenup)  # where the line leaves the plot; the label sits on the line
        ax.annotate(f"Greenup {greenup:g}", (x_end / 1.25, greenup * x_end / 1.25), fontsize="x-small",
                    color="grey", ha="right")
    ax.axhline(1.0, color="black", lw=0.6)
    ax.axvline(1.0, color="black", lw=0.6)
    for r in points:
        ax.scatter(r["powerup"], r["speedup"], s=40, zorder=3)
        ax.annotate(f"{r['method']} ({r['env_id']})", (r["powerup"], r["speedup"]), fontsize="small",
                    xytext=(4, 4), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel=f"Powerup (P / P_{baseline})",
           ylabel=f"Speedup (T_{baseline} / T)", title=f"GPS-UP against {baseline}")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1-2-5 steps, not overlapping powers of ten
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.text(lo * 1.05, hi / 1.1, "faster, less power", fontsize="x-small", va="top")
    ax.text(hi / 1.05, lo * 1.05, "slower, more power", fontsize="x-small", ha="right")
    _save(fig, path)


def energy_carbon(rows: list[dict], path: Path) -> None:
    """Energy (Wh) and emissions (g CO2eq) per method, grouped by task."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    tasks = _by(rows, "env_id")
    methods = sorted({r["method"] for r in rows})
    width = 0.8 / len(methods)
    for ax, (key, scale, label) in zip(axes, [("energy_kwh", 1e3, "energy (Wh)"),
                                               ("emissions_kg", 1e3, "emissions (g CO2eq)")]):
        for i, method in enumerate(methods):
            values = [next((r[key] * scale for r in task_rows if r["method"] == method), 0.0)
                      for task_rows in tasks.values()]
            ax.bar([t + i * width for t in range(len(tasks))], values, width, label=method)
        ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], list(tasks), fontsize="small")
        ax.set(ylabel=label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    _save(fig, path)
