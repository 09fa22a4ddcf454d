"""Interval estimates of the comparison report (spikerl/analysis/intervals.py): hand-computed IQMs, areas,
probabilities of improvement, the baseline normalisation and its refusals, and the files the report adds."""

import pytest

from conftest import make_run_folder
from spikerl.analysis.intervals import ALL_TASKS, TASK_MEAN, area_under_curve, interval_estimates
from spikerl.analysis.report import write_report


def runs(method, env, finals, history=None):
    return [{"method": method, "env_id": env, "seed": i, "eval_return_mean": float(f),
             "eval_history": history(f) if history else [(5000, f / 2, 0.0, 10.0, 8.0), (10000, f, 0.0, 20.0, 16.0)]}
            for i, f in enumerate(finals)]


def row(rows, env, method, metric="final"):
    return next(r for r in rows if r["env_id"] == env and r["method"] == method and r.get("metric", metric) == metric)


def test_area_under_the_curve_is_the_mean_return_over_the_steps_spanned():
    assert area_under_curve([(0, 0.0), (10, 10.0)]) == pytest.approx(5.0)
    assert area_under_curve([(0, 2.0), (10, 2.0), (30, 6.0)]) == pytest.approx((20 + 80) / 30)
    assert area_under_curve([(5, 3.0)]) == 3.0 and area_under_curve([]) is None


def test_iqm_ignores_an_outlying_run_and_intervals_need_three_runs():
    summaries = runs("popsan", "A", [1, 2, 3, 100]) + runs("dsrl", "A", [1, 2])
    out = interval_estimates(summaries, "popsan", reps=300)
    popsan = row(out["intervals"], "A", "popsan")
    assert popsan["iqm"] == pytest.approx(2.5) and popsan["mean"] == pytest.approx(26.5)  # the middle half: 2, 3
    assert popsan["ci_low"] <= popsan["iqm"] <= popsan["ci_high"]
    dsrl = row(out["intervals"], "A", "dsrl")
    assert dsrl["iqm"] == pytest.approx(1.5) and dsrl["ci_low"] is None and dsrl["ci_high"] is None
    assert any("fewer than 3 runs" in n and "dsrl on A (2)" in n for n in out["notes"])
    auc = row(out["intervals"], "A", "popsan", "auc")  # (f/2 + f) / 2 per run: 0.75 f
    assert auc["iqm"] == pytest.approx(0.75 * 2.5)


def test_probability_of_improvement_counts_pairs_of_runs():
    summaries = runs("popsan", "A", [0, 1, 2]) + runs("better", "A", [3, 4, 5]) + runs("same", "A", [0, 1, 2]) \
        + runs("mixed", "A", [0.5, 1.5, 2.5])
    out = interval_estimates(summaries, "popsan", reps=300)
    p = {r["method"]: r for r in out["improvement"] if r["env_id"] == "A"}
    assert p["better"]["probability"] == 1.0 and p["same"]["probability"] == pytest.approx(0.5)
    assert p["mixed"]["probability"] == pytest.approx(6 / 9)  # 0.5 > 0; 1.5 > 0, 1; 2.5 > all three
    assert "popsan" not in p and p["better"]["ci_low"] is not None


def test_the_aggregate_divides_by_the_baselines_mean_and_leaves_out_tasks_it_cannot_normalise():
    summaries = (runs("popsan", "A", [100, 100, 100]) + runs("x", "A", [50, 50, 50])
                 + runs("popsan", "B", [10, 20, 30]) + runs("x", "B", [40, 40, 40])
                 + runs("popsan", "C", [-5, -5, -5]) + runs("x", "C", [7, 7, 7]))
    out = interval_estimates(summaries, "popsan", reps=300)
    x = row(out["intervals"], ALL_TASKS, "x")
    assert x["mean"] == pytest.approx((0.5 + 2.0) / 2) and x["runs"] == 3  # C is left out
    assert any("<= 0 on C" in n for n in out["notes"])
    assert row(out["intervals"], ALL_TASKS, "popsan")["mean"] == pytest.approx(1.0)
    # x never beats popsan on A and always on B: a probability of improvement of 0.5 over those tasks
    assert row(out["improvement"], TASK_MEAN, "x")["probability"] == pytest.approx(0.5)
    # performance profile: at tau = 1.0 the runs above it are x's on B (2.0 > 1) and popsan's 30 / 20 on B
    profile = {(r["method"], r["tau"]): r["fraction"] for r in out["profile"]}
    assert profile[("x", 0.0)] == 1.0 and profile[("x", 1.0)] == pytest.approx(0.5)
    assert profile[("popsan", 1.0)] == pytest.approx(1 / 6)
    steps = [r for r in out["efficiency"] if r["method"] == "x" and r["axis"] == "env_steps"]
    assert [r["x"] for r in steps] == [5000.0, 10000.0] and steps[-1]["iqm"] == pytest.approx(1.25)


def test_a_method_missing_a_task_is_aggregated_over_its_tasks_and_the_report_says_so():
    summaries = (runs("popsan", "A", [100, 100, 100]) + runs("popsan", "B", [10, 10, 10])
                 + runs("x", "A", [50, 50, 50]) + runs("x", "B", [20, 20, 20]) + runs("y", "A", [200, 200, 200]))
    out = interval_estimates(summaries, "popsan", reps=300)
    assert row(out["intervals"], ALL_TASKS, "y")["mean"] == pytest.approx(2.0)  # A only
    assert [n for n in out["notes"] if "no runs on" in n] == [
        "y: no runs on B, so its aggregate covers A only and is not comparable with the others'"]


def test_without_the_baseline_there_is_no_aggregate_and_the_report_says_so():
    out = interval_estimates(runs("x", "A", [1, 2, 3]), "popsan", reps=200)
    assert [r["env_id"] for r in out["intervals"]] == ["A", "A"] and not out["profile"]
    assert any("no runs of the baseline" in n for n in out["notes"])


def test_the_report_adds_the_interval_tables_and_figures(tmp_path):
    for method, finals in (("popsan", [100, 120, 140]), ("dsrl", [60, 80, 200])):
        for seed, final in enumerate(finals):
            make_run_folder(tmp_path, f"{method}_{seed}", {
                "method": method, "env_id": "A", "seed": seed, "eval_return_mean": final, "wall_seconds": 10.0,
                "eval_history": [(1000, final / 2, 0.0, 5.0, 4.0), (2000, final, 0.0, 10.0, 8.0)]})
    report = write_report([tmp_path], tmp_path / "out", "popsan", inference_episodes=0, bootstrap_reps=200)
    names = {p.name for p in report.files}
    assert {"intervals.md", "intervals.csv", "improvement.md", "intervals.png", "profiles.png",
            "profiles.csv", "sample_efficiency.csv"} <= names
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Interquartile means with 95 % confidence intervals" in text
    assert "## Probability of improvement over popsan" in text
    bare = write_report([tmp_path], tmp_path / "bare", "popsan", inference_episodes=0, bootstrap_reps=0)
    assert "intervals.md" not in {p.name for p in bare.files}


def test_the_same_runs_give_the_same_intervals_and_the_global_generator_is_left_alone():
    import numpy as np

    summaries = runs("popsan", "A", [1, 2, 3, 4]) + runs("x", "A", [2, 3, 5, 9])
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    first = interval_estimates(summaries, "popsan", reps=200)
    assert (np.random.get_state()[1] == before).all()
    assert interval_estimates(summaries, "popsan", reps=200) == first


def test_speedup_and_greenup_get_bootstrap_intervals_from_three_runs_a_side():
    from spikerl.analysis.gpsup import compare
    from spikerl.analysis.intervals import gpsup_intervals

    def timed(method, walls, power_w, compile_s=10.0):
        # energy over the whole job (wall + 5 s of start-up) at a constant power
        return [{"method": method, "env_id": "A", "seed": i, "eval_return_mean": 1.0, "wall_seconds": w,
                 "compile_seconds": compile_s, "energy_seconds": w + 5.0, "energy_kwh": power_w * (w + 5.0) / 3.6e6,
                 "emissions_kg": 0.4 * power_w * (w + 5.0) / 3.6e6} for i, w in enumerate(walls)]

    # steady times: popsan 90, 190, 290 s (mean 190); spikerl 40, 90, 140 s (mean 90): Speedup 190 / 90
    summaries = timed("popsan", [100, 200, 300], 30.0) + timed("spikerl", [50, 100, 150], 60.0) \
        + timed("dsrl", [50, 100], 30.0)
    rows = compare(summaries, "popsan")
    gpsup_intervals(summaries, rows, "popsan", reps=500)
    spikerl = next(r for r in rows if r["method"] == "spikerl")
    assert spikerl["speedup"] == pytest.approx(190 / 90)
    assert 90 / 140 <= spikerl["speedup_ci_low"] <= spikerl["speedup"] <= spikerl["speedup_ci_high"] <= 290 / 40
    # twice the power: Greenup is half the Speedup in every resample
    assert spikerl["greenup_ci_low"] == pytest.approx(spikerl["speedup_ci_low"] / 2)
    assert spikerl["greenup_ci_high"] == pytest.approx(spikerl["speedup_ci_high"] / 2)
    assert "speedup_ci_low" not in next(r for r in rows if r["method"] == "dsrl")  # two runs: no interval
    assert "speedup_ci_low" not in next(r for r in rows if r["method"] == "popsan")
    same = timed("popsan", [100] * 3, 30.0) + timed("spikerl", [60] * 3, 30.0)  # no spread: the interval is a point
    rows = compare(same, "popsan")
    gpsup_intervals(same, rows, "popsan", reps=200)
    spikerl = next(r for r in rows if r["method"] == "spikerl")
    assert spikerl["speedup_ci_low"] == pytest.approx(90 / 50) == spikerl["speedup_ci_high"]


def test_intervals_are_the_same_for_the_same_seed():
    """rliable draws its resamples from NumPy's global generator whatever random_state it is given; the
    report seeds it, so a report's intervals can be reproduced (and leaves the caller's generator as it was)."""
    import numpy as np

    summaries = runs("popsan", "A", [1, 5, 2, 8, 3]) + runs("spikerl", "A", [4, 9, 2, 7, 6])
    results = []
    for caller_seed in (1, 2):  # whatever state the caller left NumPy's generator in
        np.random.seed(caller_seed)
        before = np.random.get_state()[1].copy()
        results.append(interval_estimates(summaries, "popsan", reps=200))
        assert (np.random.get_state()[1] == before).all()
    first, second = results
    assert first["intervals"] == second["intervals"] and first["improvement"] == second["improvement"]


def test_the_report_its_command_and_the_sweep_callback_share_one_bootstrap_default(tmp_path, monkeypatch):
    import inspect

    from spikerl import compare
    from spikerl.analysis.intervals import BOOTSTRAP_REPS
    from spikerl.analysis.report import Report
    from spikerl.callbacks import ComparisonReport

    assert inspect.signature(interval_estimates).parameters["reps"].default == BOOTSTRAP_REPS
    assert inspect.signature(write_report).parameters["bootstrap_reps"].default == BOOTSTRAP_REPS
    assert ComparisonReport().bootstrap_reps == BOOTSTRAP_REPS
    given = []
    monkeypatch.setattr(compare, "write_report", lambda *args: given.append(args) or Report(out=tmp_path))
    compare.main([str(tmp_path)])
    assert given[0][5] == BOOTSTRAP_REPS  # roots, out, baseline, threshold, inference episodes, bootstrap samples
