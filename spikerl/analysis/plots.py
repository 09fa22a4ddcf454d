"""Figures of the comparison report (matplotlib, no display needed). Each takes the rows of a report
table (spikerl.analysis.report) and the PNG path to write."""

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


def _empty(ax, why: str) -> None:
    """Say in the panel why it shows nothing (an empty frame says nothing)."""
    import textwrap

    ax.text(0.5, 0.5, textwrap.fill(why, 40), transform=ax.transAxes, ha="center", va="center", fontsize="small")
    ax.set_yticks([])


def _save(fig, path: Path, note: str | None = None) -> None:
    """Write the figure; a `note` (a caveat the figure must carry, not only the text) goes under it."""
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize="small", style="italic", wrap=True)
        fig.tight_layout(rect=(0, 0.09, 1, 1))
    else:
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
                    ax_time.plot(rows[:, 4] / 60, rows[:, 1], color=color, lw=0.9, alpha=0.6, marker="o", ms=2)
                for step, mean in rows[:, :2]:
                    by_step[step].append(mean)
            steps = sorted(by_step)
            mean = np.array([np.mean(by_step[s]) for s in steps])
            std = np.array([np.std(by_step[s]) for s in steps])
            label = f"{method} ({len(method_runs)} seed{'s' * (len(method_runs) > 1)})"
            ax_steps.plot(steps, mean, color=color, lw=2, marker="o", ms=3, label=label)  # one point shows too
            ax_steps.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
            ax_time.plot([], [], color=color, lw=2, label=label)
        ax_steps.set(title=f"{task}: against env steps", xlabel="env steps", ylabel="evaluation return")
        ax_time.set(title=f"{task}: against training time (each seed)", xlabel="training minutes (no evaluations)",
                    ylabel="evaluation return")
        for ax in (ax_steps, ax_time):
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    _save(fig, path)


def gpsup_quadrant(rows: list[dict], baseline: str, path: Path, note: str | None = None) -> None:
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
    # plain numbers at 1-2-5 steps, not overlapping powers of ten; every digit where the range is narrow
    subs = (1.0, 2.0, 5.0) if hi / lo > 5 else tuple(float(d) for d in range(1, 10))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.text(lo * 1.05, hi / 1.1, "faster, less power", fontsize="x-small", va="top")
    ax.text(hi / 1.05, lo * 1.05, "slower, more power", fontsize="x-small", ha="right")
    _save(fig, path, note)


def energy_carbon(rows: list[dict], path: Path, note: str | None = None) -> None:
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
    _save(fig, path, note)


def interval_estimates(rows: list[dict], improvement: list[dict], baseline: str, path: Path) -> None:
    """Left: each method's IQM of the normalised final return and of the area under its curve, over all
    tasks, with 95 % bootstrap intervals (a dot alone: too few runs for one). Right: the probability that
    a run of each method beats one of the baseline, with its interval; 0.5 = no difference."""
    from .intervals import ALL_TASKS, TASK_MEAN

    fig, (ax, ax_p) = plt.subplots(1, 2, figsize=(11, 0.6 * max(3, len({r["method"] for r in rows})) + 1.5))
    aggregate = [r for r in rows if r["env_id"] == ALL_TASKS]
    methods = sorted({r["method"] for r in aggregate})
    metrics = (("final", "final return", "C0", -0.15), ("auc", "area under the curve", "C1", 0.15))
    for metric, label, color, offset in metrics:
        for y, method in enumerate(methods):
            r = next((r for r in aggregate if r["method"] == method and r["metric"] == metric), None)
            if r is None:
                continue
            if r["ci_low"] is not None:
                ax.plot([r["ci_low"], r["ci_high"]], [y + offset] * 2, color=color, lw=6, alpha=0.4)
            ax.plot(r["iqm"], y + offset, "o", color=color)
        ax.plot([], [], "o-", color=color, label=label)  # one legend entry per metric
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(methods)), methods)
    ax.set(xlabel=f"IQM of the return / {baseline}'s mean final return", title="Interquartile mean, all tasks")
    if aggregate:
        ax.legend(fontsize="small")
    else:
        _empty(ax, f"No aggregate over the tasks: it is normalised by {baseline}'s mean final return, which needs "
                   f"runs of {baseline} ending above 0 (see the notes in report.md).")
    pairs = [r for r in improvement if r["env_id"] == TASK_MEAN]
    for y, r in enumerate(pairs):
        if r["ci_low"] is not None:
            ax_p.plot([r["ci_low"], r["ci_high"]], [y, y], color="C2", lw=6, alpha=0.4)
        ax_p.plot(r["probability"], y, "o", color="C2")
    if not pairs:
        _empty(ax_p, f"No probability of improvement over the tasks: it needs another method's runs beside "
                     f"{baseline}'s on tasks where {baseline} ends above 0 (see the notes in report.md).")
    ax_p.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax_p.set_yticks(range(len(pairs)), [r["method"] for r in pairs])
    ax_p.set(xlim=(0, 1), xlabel=f"P(a run beats one of {baseline})", title="Probability of improvement")
    for a in (ax, ax_p):
        a.grid(axis="x", alpha=0.3)
    _save(fig, path)


def profiles_and_efficiency(profile: list[dict], efficiency: list[dict], baseline: str, path: Path) -> None:
    """Left: performance profiles (fraction of runs, all tasks, whose normalised final return exceeds
    tau). Middle and right: the normalised IQM against env steps and against training time, with 95 %
    bootstrap bands where a method has enough runs."""
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    panels = [(axes[0], profile, "tau", "fraction", f"tau (final return / {baseline}'s)", "fraction of runs > tau"),
              (axes[1], [r for r in efficiency if r["axis"] == "env_steps"], "x", "iqm", "env steps",
               f"IQM of return / {baseline}'s"),
              (axes[2], [r for r in efficiency if r["axis"] == "train_seconds"], "x", "iqm",
               "training minutes (no evaluations)", f"IQM of return / {baseline}'s")]
    for ax, rows, x_key, y_key, xlabel, ylabel in panels:
        for i, (method, method_rows) in enumerate(_by(rows, "method").items()):
            xs = np.array([r[x_key] for r in method_rows]) / (60 if xlabel.startswith("training") else 1)
            ax.plot(xs, [r[y_key] for r in method_rows], color=f"C{i}", lw=2, label=method)
            if all(r["ci_low"] is not None for r in method_rows):
                ax.fill_between(xs, [r["ci_low"] for r in method_rows], [r["ci_high"] for r in method_rows],
                                color=f"C{i}", alpha=0.15)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        if rows:
            ax.legend(fontsize="small")
    axes[0].set_title("Performance profile")
    axes[1].set_title("Sample efficiency")
    axes[2].set_title("Time efficiency")
    _save(fig, path)
