"""Time, steps and energy to a return threshold, and GPS-UP at equal return, on hand-made run folders."""

import math

import pytest

from conftest import make_run_folder
from spikerl.analysis.results import find_runs
from spikerl.analysis.time_to_return import first_reach, threshold_for, time_to_return


def run(method, seed, final, history, energy_kwh=None, energy_seconds=None, **extra):
    s = {"env_id": "HalfCheetah-v4", "method": method, "seed": seed, "eval_return_mean": final,
         "wall_seconds": history[-1][3], "eval_history": history, **extra}
    if energy_kwh is not None:
        s.update(energy_kwh=energy_kwh, energy_seconds=energy_seconds, emissions_kg=energy_kwh * 0.4)
    return s


def test_threshold_is_a_fraction_of_the_way_from_zero_to_the_baseline():
    assert threshold_for(1000.0, 0.8) == pytest.approx(800.0)
    with pytest.raises(ValueError):
        threshold_for(-200.0, 0.8)  # below where the baseline ended: no threshold at all


def test_a_short_sweep_with_a_negative_baseline_gets_no_threshold_and_says_why(tmp_path):
    """A first, short sweep: popsan ends at -183 on average. A fraction of it (-220 once) was "reached"
    by a method's first evaluation after one update and printed Speedups of 50; now the task has no
    threshold, the report says so, and its other tables and figures are written, each panel saying
    why it is empty."""
    from spikerl.analysis.report import write_report

    for seed, (base, other) in enumerate([(-150.0, -60.0), (-216.0, -90.0)]):
        make_run_folder(tmp_path, f"p{seed}", run("popsan", seed, base, [(2000, -300.0, 0, 20.0, 15.0),
                                                                         (4000, base, 0, 40.0, 30.0)]))
        make_run_folder(tmp_path, f"d{seed}", run("dsrl", seed, other, [(2000, other, 0, 20.0, 15.0),
                                                                        (4000, other, 0, 40.0, 30.0)],
                                                  update_after=1000))
    summaries, _ = find_runs([tmp_path])
    assert time_to_return(summaries, "popsan") == []
    report = write_report([tmp_path], tmp_path / "out", inference_episodes=0, bootstrap_reps=100)
    text = (tmp_path / "out" / "report.md").read_text()
    assert not (tmp_path / "out" / "time_to_return.md").exists() and "speedup_at_threshold" not in text
    assert any("no time to a return there" in note for note in report.notes)
    assert any("no profiles.png" in note for note in report.notes)
    assert (tmp_path / "out" / "intervals.png").is_file() and (tmp_path / "out" / "learning_curves.png").is_file()


def test_first_reach_takes_the_first_evaluation_at_or_above_the_threshold():
    # rows: step, mean, std, wall seconds, training seconds; 36 J/s = 0.01 kWh per 1000 s
    history = [(10, 100.0, 0, 50.0, 40.0), (20, 800.0, 0, 120.0, 100.0), (30, 900.0, 0, 200.0, 170.0)]
    r = run("popsan", 0, 900.0, history, energy_kwh=0.01, energy_seconds=1000.0)
    hit = first_reach(r, 800.0)
    assert hit["step"] == 20 and hit["train_seconds"] == 100.0 and hit["wall_seconds"] == 120.0
    assert hit["energy_kwh"] == pytest.approx(0.01 * 120.0 / 1000.0)
    assert first_reach(r, 901.0) is None


def test_time_to_return_and_gps_up_at_equal_return(tmp_path):
    """Baseline popsan: final means 1000 and 1000 -> threshold 800. popsan seeds reach it at 200 and
    400 training seconds (mean 300); spikerl's seed 0 at 100 s, its seed 1 never: shown as 1 of 2 reached;
    dsrl never. A resumed run (segments 2) carries its wall and training time across segments."""
    runs = {
        "popsan_s0": run("popsan", 0, 1000.0, [(5, 500.0, 0, 110.0, 100.0), (10, 900.0, 0, 220.0, 200.0)],
                         energy_kwh=0.02, energy_seconds=440.0),
        "popsan_s1": run("popsan", 1, 1000.0, [(5, 700.0, 0, 220.0, 200.0), (10, 1000.0, 0, 440.0, 400.0)],
                         energy_kwh=0.04, energy_seconds=880.0, segments=2),
        "spikerl_s0": run("spikerl", 0, 850.0, [(5, 810.0, 0, 120.0, 100.0), (10, 850.0, 0, 240.0, 200.0)],
                          energy_kwh=0.01, energy_seconds=480.0),
        "spikerl_s1": run("spikerl", 1, 300.0, [(5, 100.0, 0, 120.0, 100.0), (10, 300.0, 0, 240.0, 200.0)],
                          energy_kwh=0.01, energy_seconds=480.0),
        "dsrl_s0": run("dsrl", 0, 50.0, [(5, 10.0, 0, 60.0, 50.0), (10, 50.0, 0, 120.0, 100.0)]),
    }
    for name, summary in runs.items():
        make_run_folder(tmp_path, name, summary)
    summaries, _ = find_runs([tmp_path])
    rows = {r["method"]: r for r in time_to_return(summaries, "popsan", 0.8)}
    assert all(r["threshold"] == pytest.approx(800.0) for r in rows.values())
    popsan, spikerl, dsrl = rows["popsan"], rows["spikerl"], rows["dsrl"]
    assert (popsan["reached"], popsan["runs"]) == (2, 2)
    assert popsan["step_to_threshold"] == 10 and popsan["train_seconds_to_threshold"] == pytest.approx(300.0)
    # energy to threshold: mean power (0.02 kWh / 440 s, 0.04 / 880 s: both 163.6 W) x wall time to it
    power = 0.02 * 3.6e6 / 440.0
    assert popsan["energy_kwh_to_threshold"] == pytest.approx(power * (220.0 + 440.0) / 2 / 3.6e6)
    assert (spikerl["reached"], spikerl["runs"]) == (1, 2) and spikerl["train_seconds_to_threshold"] == 100.0
    assert spikerl["speedup_at_threshold"] == pytest.approx(3.0)
    spikerl_energy = 0.01 * 120.0 / 480.0
    assert spikerl["greenup_at_threshold"] == pytest.approx(popsan["energy_kwh_to_threshold"] / spikerl_energy)
    assert dsrl["reached"] == 0 and "train_seconds_to_threshold" not in dsrl and "speedup_at_threshold" not in dsrl


def test_runs_without_timing_columns_are_read_with_nan_times(tmp_path):
    make_run_folder(tmp_path, "old", {"env_id": "Hopper-v4", "method": "popsan", "eval_return_mean": 1.0,
                                      "eval_history": [[10, 1.0, 0.0]]})
    (summary,), _ = find_runs([tmp_path])
    step, mean, std, wall, train = summary["eval_history"][0]
    assert (step, mean) == (10, 1.0) and math.isnan(wall) and math.isnan(train)


def test_a_reach_before_the_first_update_is_flagged_and_left_out_of_speedup(tmp_path):
    """carebn's initial actor happens to score 850 at step 5 (before its first update at step 5, read from
    its config); it drops, and reaches the threshold after learning at step 15 (300 training seconds).
    Its time to the threshold is that of step 15, and the early hit is counted in `before_updates`."""
    runs = {
        "popsan_s0": run("popsan", 0, 1000.0, [(5, 500.0, 0, 110.0, 100.0), (10, 900.0, 0, 220.0, 200.0)]),
        "carebn_s0": run("carebn", 0, 900.0, [(5, 850.0, 0, 60.0, 50.0), (10, 100.0, 0, 220.0, 200.0),
                                              (15, 900.0, 0, 330.0, 300.0)]),
    }
    for name, summary in runs.items():
        make_run_folder(tmp_path, name, summary)
    (tmp_path / "carebn_s0" / "config.yaml").write_text("method: carebn\ntrain:\n  update_after: 5\n")
    summaries, _ = find_runs([tmp_path])
    assert {s["method"]: s["update_after"] for s in summaries} == {"carebn": 5, "popsan": None}
    rows = {r["method"]: r for r in time_to_return(summaries, "popsan", 0.8)}
    carebn = rows["carebn"]
    assert (carebn["reached"], carebn["before_updates"], carebn["step_to_threshold"]) == (1, 1, 15)
    assert carebn["speedup_at_threshold"] == pytest.approx(200.0 / 300.0)
    assert rows["popsan"]["before_updates"] == 0
