"""Interval estimates for few runs (Agarwal et al., "Deep reinforcement learning at the edge of the
statistical precipice", NeurIPS 2021), computed with their `rliable` package.

For each task and method, over its runs (seeds):

    IQM          interquartile mean (the mean of the middle 50 % of runs): robust to one outlying seed,
                 less noisy than the median; with a 95 % stratified-bootstrap confidence interval
    final        the run's last evaluation return
    auc          the area under its learning curve divided by the steps it spans: the mean evaluation
                 return over training (trapezoid rule over the evaluated steps), which rewards learning
                 early as well as far
    P(X > Y)     probability of improvement: the chance that a run of method X beats a run of the
                 baseline Y on a task (Mann-Whitney U / (n m)), averaged over tasks, with its interval

Across tasks the returns are normalised by the baseline method's mean final return on each task
(1 = the baseline's level, 0 = a return of 0): the project compares methods against a baseline (GPS-UP
does too), no random-policy or expert score is measured for every task, and a baseline without runs or
with a mean final return <= 0 leaves its task out of the aggregate, with a note. Performance profiles
give, for each threshold tau, the fraction of runs (over all tasks) whose normalised final return
exceeds tau. Sample-efficiency curves give the normalised IQM with its interval at each evaluated env
step, and against training time (each run's curve interpolated on a common grid of training seconds).

A method with fewer than MIN_RUNS runs on a task gets its IQM but no interval (an interval from one or
two runs says nothing), and the aggregate of a method uses the same number of runs on every task (the
first n seeds, n the smallest count), with a note where runs were left out.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

MIN_RUNS = 3
CONFIDENCE = 0.95
# Stratified-bootstrap samples per interval where a caller gives none: the report, `python -m spikerl.compare`
# and the end-of-sweep callback (conf/config.yaml's callback states the sweep's own choice).
BOOTSTRAP_REPS = 2000
ALL_TASKS = "all tasks (normalised)"  # the aggregate rows of IQMs: normalised returns, all tasks' runs
TASK_MEAN = "all tasks (mean)"  # the aggregate rows of the probability of improvement: its mean over tasks
INTERVAL_COLUMNS = ["env_id", "method", "runs", "metric", "iqm", "ci_low", "ci_high", "mean"]
IMPROVEMENT_COLUMNS = ["env_id", "method", "baseline", "runs", "baseline_runs", "probability", "ci_low", "ci_high"]
PROFILE_COLUMNS = ["method", "tau", "fraction", "ci_low", "ci_high"]
EFFICIENCY_COLUMNS = ["method", "axis", "x", "runs", "iqm", "ci_low", "ci_high"]


def area_under_curve(history: list) -> float | None:
    """The mean evaluation return over training: trapezoid area under (step, return) over the steps spanned."""
    rows = np.asarray([row[:2] for row in history], dtype=float)
    if len(rows) < 2:
        return float(rows[0, 1]) if len(rows) else None
    return float(np.trapezoid(rows[:, 1], rows[:, 0]) / (rows[-1, 0] - rows[0, 0]))


def _runs(summaries: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """method -> task -> its runs, by seed."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for s in sorted(summaries, key=lambda s: (s["method"], s["env_id"], s.get("seed", 0))):
        out[s["method"]][s["env_id"]].append(s)
    return out


def _estimates(score_dict: dict, func, reps: int, seed: int):
    """rliable's interval estimates, the same for the same `seed`: rliable 1.2.0's stratified bootstraps
    draw their resampling indices from NumPy's global generator (np.random.choice), not from the
    `random_state` they are given, so that generator is seeded here and put back afterwards."""
    import warnings

    from rliable import library as rly

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch's notice about rliable's RandomState: not the user's to act on
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            return rly.get_interval_estimates(score_dict, func, reps=reps, confidence_interval_size=CONFIDENCE,
                                              random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(saved)


def _iqm(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores)])


def _interval_row(env_id: str, method: str, metric: str, scores: np.ndarray, reps: int, seed: int) -> dict:
    """scores [runs, tasks]: IQM with its interval (none under MIN_RUNS runs), and the plain mean."""
    row = {"env_id": env_id, "method": method, "runs": scores.shape[0], "metric": metric,
           "iqm": float(_iqm(scores)[0]), "ci_low": None, "ci_high": None, "mean": float(scores.mean())}
    if scores.shape[0] >= MIN_RUNS:
        _, ci = _estimates({method: scores}, _iqm, reps, seed)
        row["ci_low"], row["ci_high"] = float(ci[method][0, 0]), float(ci[method][1, 0])
    return row


def _improvement_row(env_id: str, method: str, baseline: str, x: np.ndarray, y: np.ndarray, reps: int,
                     seed: int) -> dict:
    from rliable import metrics

    row = {"env_id": env_id, "method": method, "baseline": baseline, "runs": x.shape[0], "baseline_runs": y.shape[0],
           "probability": float(metrics.probability_of_improvement(x, y)), "ci_low": None, "ci_high": None}
    if min(x.shape[0], y.shape[0]) >= MIN_RUNS:
        pair = f"{method},{baseline}"
        _, ci = _estimates({pair: (x, y)}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
                           reps, seed)
        row["ci_low"], row["ci_high"] = float(ci[pair][0, 0]), float(ci[pair][1, 0])
    return row


def _matrix(by_task: dict[str, list[float]], tasks: list[str]) -> np.ndarray:
    """[n, tasks] with n the smallest run count among `tasks` (the first n runs of each)."""
    n = min(len(by_task[t]) for t in tasks)
    return np.array([[by_task[t][i] for t in tasks] for i in range(n)], dtype=float)


def interval_estimates(summaries: list[dict], baseline: str, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict:
    """Everything above, as rows of the report's tables: {"intervals", "improvement", "profile",
    "efficiency", "notes"}. The same runs and `seed` give the same intervals: some of rliable's bootstraps
    draw from numpy's global generator, which is seeded here and put back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return _interval_estimates(summaries, baseline, reps, seed)
    finally:
        np.random.set_state(state)


def _interval_estimates(summaries: list[dict], baseline: str, reps: int, seed: int) -> dict:
    runs = _runs(summaries)
    final = {m: {t: [r["eval_return_mean"] for r in rs] for t, rs in by_task.items()} for m, by_task in runs.items()}
    auc = {m: {t: [a for r in rs if (a := area_under_curve(r.get("eval_history") or [])) is not None]
               for t, rs in by_task.items()} for m, by_task in runs.items()}
    notes, intervals, improvement = [], [], []
    few = sorted({(t, m) for m, by_task in final.items() for t, v in by_task.items() if len(v) < MIN_RUNS})
    if few:
        notes.append(f"fewer than {MIN_RUNS} runs, so an IQM without an interval, for: "
                     + ", ".join(f"{m} on {t} ({len(final[m][t])})" for t, m in few))
    for method, by_task in final.items():
        for task, scores in by_task.items():
            intervals.append(_interval_row(task, method, "final", np.array([scores]).T, reps, seed))
            if len(auc[method][task]) == len(scores):
                intervals.append(_interval_row(task, method, "auc", np.array([auc[method][task]]).T, reps, seed))
            if method != baseline and task in final.get(baseline, {}):
                improvement.append(_improvement_row(task, method, baseline, np.array([scores]).T,
                                                    np.array([final[baseline][task]]).T, reps, seed))
    # the aggregate: normalised by the baseline's mean final return on each task
    reference = {t: float(np.mean(v)) for t, v in final.get(baseline, {}).items()}
    unusable = sorted(t for t, r in reference.items() if r <= 0)
    if baseline not in final:
        notes.append(f"no runs of the baseline {baseline!r}: no normalised aggregate, profile or curves")
    if unusable:
        notes.append(f"the baseline's mean final return is <= 0 on {', '.join(unusable)}: left out of the aggregate")
    usable = {t: r for t, r in reference.items() if r > 0}
    normalised, curves_of = {}, {}
    for method, by_task in final.items():
        tasks = sorted(t for t in by_task if t in usable)
        if not tasks:
            continue
        if len(tasks) < len(usable):  # its aggregate, profile and curves then pool other tasks than the rest's
            notes.append(f"{method}: no runs on {', '.join(sorted(set(usable) - set(tasks)))}, so its aggregate "
                         f"covers {', '.join(tasks)} only and is not comparable with the others'")
        matrix = _matrix(by_task, tasks) / np.array([usable[t] for t in tasks])
        if matrix.shape[0] < max(len(by_task[t]) for t in tasks):
            notes.append(f"{method}: the aggregate uses the first {matrix.shape[0]} runs of each task")
        normalised[method] = matrix
        curves_of[method] = [(t, runs[method][t][:matrix.shape[0]]) for t in tasks]
        intervals.append(_interval_row(ALL_TASKS, method, "final", matrix, reps, seed))
        if all(len(auc[method][t]) == len(by_task[t]) for t in tasks):
            auc_matrix = _matrix(auc[method], tasks) / np.array([usable[t] for t in tasks])
            intervals.append(_interval_row(ALL_TASKS, method, "auc", auc_matrix, reps, seed))
    for method in normalised:  # the probability of improvement over the tasks both ran, averaged
        tasks = [t for t, _ in curves_of[method] if t in dict(curves_of.get(baseline, []))]
        if method != baseline and tasks:
            improvement.append(_improvement_row(TASK_MEAN, method, baseline, _matrix(final[method], tasks),
                                                _matrix(final[baseline], tasks), reps, seed))
    profile = performance_profile(normalised, reps, seed)
    efficiency = sample_efficiency(curves_of, usable, max(reps // 10, 200), seed)
    return {"intervals": intervals, "improvement": improvement, "profile": profile, "efficiency": efficiency,
            "notes": notes}


def gpsup_intervals(summaries: list[dict], rows: list[dict], baseline: str, reps: int, seed: int = 0) -> None:
    """Add to each GPS-UP row against the baseline the 95 % stratified-bootstrap intervals of its Speedup
    and Greenup (`speedup_ci_low`, ...): the method's runs and the baseline's resampled apart, each sample
    giving the ratio of the mean times (energies) on the row's time basis. Fewer than MIN_RUNS runs on
    either side: no interval."""
    from .gpsup import by_task_and_method, run_energy, run_time

    groups = by_task_and_method(summaries)
    for row in rows:
        basis, runs = row.get("time_basis"), groups[(row["env_id"], row["method"])]
        base = groups.get((row["env_id"], baseline), [])
        if basis is None or row["method"] == baseline or min(len(runs), len(base)) < MIN_RUNS:
            continue
        measures = {"speedup": run_time, **({"greenup": run_energy} if "greenup" in row else {})}
        for name, measure in measures.items():
            x, y = (np.array([[measure(r, basis)] for r in rs]) for rs in (runs, base))
            _, ci = _estimates({name: (x, y)}, lambda a, b: np.array([b.mean() / a.mean()]), reps, seed)
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = float(ci[name][0, 0]), float(ci[name][1, 0])


def performance_profile(normalised: dict[str, np.ndarray], reps: int, seed: int, points: int = 41) -> list[dict]:
    """Fraction of runs (all tasks) whose normalised final return exceeds tau, for tau on a grid from 0 to
    the largest score, with intervals where a method has MIN_RUNS runs."""
    from rliable import library as rly

    if not normalised:
        return []
    top = max(1.0, max(float(m.max()) for m in normalised.values()))
    taus = np.linspace(0.0, top, points)
    rows = []
    for method, matrix in normalised.items():
        if matrix.shape[0] >= MIN_RUNS:
            fractions, cis = rly.create_performance_profile({method: matrix}, taus, reps=min(reps, 2000))
            fraction, ci = fractions[method], cis[method]
        else:
            fraction, ci = np.array([(matrix > tau).mean() for tau in taus]), None
        rows += [{"method": method, "tau": float(tau), "fraction": float(fraction[i]),
                  "ci_low": None if ci is None else float(ci[0][i]), "ci_high": None if ci is None else float(ci[1][i])}
                 for i, tau in enumerate(taus)]
    return rows


def sample_efficiency(curves_of: dict[str, list[tuple[str, list[dict]]]], reference: dict[str, float], reps: int,
                      seed: int, points: int = 20) -> list[dict]:
    """The normalised IQM (with its interval) against env steps, at the steps every run evaluated, and
    against training seconds, each run's curve interpolated on a grid up to the shortest run's time."""
    rows = []
    for method, tasks in curves_of.items():
        for axis, column in (("env_steps", 0), ("train_seconds", 4)):
            curves = []  # [task] -> [run] -> (x, return / reference)
            for task, task_runs in tasks:
                histories = [np.asarray(r.get("eval_history") or [], dtype=float) for r in task_runs]
                if any(h.ndim != 2 or h.shape[1] <= column for h in histories):
                    curves = []
                    break
                curves.append([(h[:, column], h[:, 1] / reference[task]) for h in histories])
            if not curves:
                continue
            if axis == "env_steps":
                grid = sorted(set.intersection(*(set(x.tolist()) for task in curves for x, _ in task)))
            else:
                end = min(x[-1] for task in curves for x, _ in task)
                grid = np.linspace(end / points, end, points).tolist()
            for x in grid:
                matrix = np.array([[np.interp(x, xs, ys) for xs, ys in task] for task in curves]).T  # [runs, tasks]
                row = _interval_row("", method, axis, matrix, reps, seed)
                rows.append({"method": method, "axis": axis, "x": float(x), "runs": row["runs"], "iqm": row["iqm"],
                             "ci_low": row["ci_low"], "ci_high": row["ci_high"]})
    return rows
