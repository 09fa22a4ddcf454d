"""The comparison report: aggregation over seeds, GPS-UP, energy equivalents and plots, from synthetic
run folders; and the report a real (tiny) three-method multirun leaves in its sweep folder."""

import csv
import json
import shutil
import subprocess
import sys

import pytest

from conftest import TINY, make_run_folder
from spikerl.analysis.report import EQUIVALENTS, write_report
from spikerl.analysis.results import find_runs, preset_of


def summary(method, seed, wall, final, history, energy_kwh=None, emissions_kg=None):
    s = {"env_id": "Hopper-v4", "method": method, "seed": seed, "wall_seconds": wall, "eval_return_mean": final,
         "best_eval_return": max(m for _, m, _ in history), "total_env_steps": history[-1][0],
         "eval_history": history}
    if energy_kwh is not None:
        s.update(energy_kwh=energy_kwh, emissions_kg=emissions_kg, energy_seconds=wall)
    return s


def rows(path):
    return list(csv.DictReader(open(path)))


@pytest.fixture
def sweep(tmp_path):
    runs = {
        "0_popsan_s0": summary("popsan", 0, 100.0, 10.0, [[10, 2.0, 0], [20, 10.0, 0]], 0.010, 0.004),
        "1_popsan_s1": summary("popsan", 1, 300.0, 30.0, [[10, 4.0, 0], [20, 30.0, 0]], 0.030, 0.012),
        "2_spikerl_s0": summary("spikerl", 0, 50.0, 22.0, [[10, 5.0, 0], [20, 22.0, 0]], 0.005, 0.002),
    }
    for name, run in runs.items():
        make_run_folder(tmp_path, name, run)
    make_run_folder(tmp_path, "3_dsrl_crashed", None)
    return tmp_path


def test_report_tables_follow_from_the_summaries(sweep):
    report = write_report([sweep], sweep / "comparison")
    out = sweep / "comparison"
    assert report.runs == 3 and [p.name for p in report.skipped] == ["3_dsrl_crashed"]
    assert any("3_dsrl_crashed" in n for n in report.notes)

    finals = {r["method"]: r for r in rows(out / "final_returns.csv")}
    assert float(finals["popsan"]["final_return_mean"]) == 20.0 and float(finals["popsan"]["final_return_std"]) == 10.0
    assert finals["popsan"]["runs"] == "2" and float(finals["spikerl"]["final_return_std"]) == 0.0

    curve = {(r["method"], r["step"]): r for r in rows(out / "learning_curves.csv")}
    assert float(curve[("popsan", "10")]["return_mean"]) == 3.0 and float(curve[("popsan", "10")]["return_std"]) == 1.0
    assert curve[("popsan", "20")]["seeds"] == "2"

    gps = {r["method"]: r for r in rows(out / "gpsup.csv")}
    # popsan means: T 200 s, E 0.02 kWh, P 0.02 * 3.6e6 / 200 = 360 W; spikerl: 50 s, 0.005 kWh, 360 W
    assert float(gps["spikerl"]["speedup"]) == pytest.approx(4.0)
    assert float(gps["spikerl"]["powerup"]) == pytest.approx(1.0)
    assert float(gps["spikerl"]["greenup"]) == pytest.approx(4.0)
    assert float(gps["spikerl"]["reward_diff_percent"]) == pytest.approx(10.0)
    assert float(gps["spikerl"]["carbon_diff_percent"]) == pytest.approx(-75.0)

    energy = {r["method"]: r for r in rows(out / "energy_carbon.csv")}
    assert float(energy["spikerl"]["car_miles"]) == pytest.approx(0.002 / 0.404)
    assert float(energy["popsan"]["household_hours"]) == pytest.approx(0.02 / (10_791 / 365) * 24)
    text = (out / "energy_carbon.md").read_text()
    assert all(source in text for *_, source in EQUIVALENTS)  # the factors' sources stand beside the numbers

    for name in ("learning_curves", "gpsup_quadrant", "energy_carbon"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.md").read_text()
    assert "![gpsup_quadrant](gpsup_quadrant.png)" in page and "3_dsrl_crashed" in page


def test_the_report_module_lists_every_file_it_writes(sweep):
    """spikerl/analysis/report.py's docstring names each file of a report with every part: its lines
    `    name.{md,csv}    what it holds`."""
    import re

    from spikerl.analysis import report as module

    documented = set()
    for stem, suffixes in re.findall(r"^    ([a-z_]+)\.(\{[a-z,]+\}|[a-z]+) ", module.__doc__, re.MULTILINE):
        documented |= {f"{stem}.{s}" for s in suffixes.strip("{}").split(",")}
    report = write_report([sweep], sweep / "comparison", bootstrap_reps=50, inference_episodes=0)
    written = {p.name for p in report.files}
    assert {"improvement.md", "sample_efficiency.csv", "profiles.png", "gpsup_quadrant.png"} <= written
    assert written <= documented, written - documented


def test_report_names_the_precision_that_ran_and_marks_estimated_energy_on_its_figures(tmp_path, monkeypatch):
    from spikerl.analysis import plots, report

    notes = {}
    for name in ("gpsup_quadrant", "energy_carbon"):
        draw = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _draw=draw, _name=name, **k: (notes.__setitem__(_name, k.get(
            "note")), _draw(*a, **k)))
    auto = {"precision": "fp32", "precision_reason": "precision=auto: bf16 measured 0.97x fp32 here"}
    asked = {"precision": "fp32", "precision_reason": "as requested"}
    make_run_folder(tmp_path, "p", {**summary("popsan", 0, 10.0, 1.0, [[5, 1.0, 0]], 0.001, 0.0004), **asked,
                                    "energy_source": "estimate"})
    make_run_folder(tmp_path, "s", {**summary("spikerl", 0, 8.0, 1.0, [[5, 1.0, 0]], 0.001, 0.0004), **auto,
                                    "energy_source": "estimate"})
    write_report([tmp_path], tmp_path / "out", bootstrap_reps=0, inference_episodes=0)
    finals = {r["method"]: r for r in rows(tmp_path / "out" / "final_returns.csv")}
    assert (finals["spikerl"]["precision"], finals["spikerl"]["precision_reason"]) == ("fp32", auto["precision_reason"])
    assert notes["gpsup_quadrant"] == notes["energy_carbon"] == report.FIGURE_NOTE
    for s in ("p", "s"):  # measured energy: no caveat on the figures
        data = json.loads((tmp_path / s / "summary.json").read_text())
        (tmp_path / s / "summary.json").write_text(json.dumps({**data, "energy_source": "rapl"}))
    write_report([tmp_path], tmp_path / "out2", bootstrap_reps=0, inference_episodes=0)
    assert notes["gpsup_quadrant"] is None and notes["energy_carbon"] is None


def test_report_without_energy_or_baseline_says_what_it_left_out(tmp_path):
    make_run_folder(tmp_path, "a", summary("dsrl", 0, 10.0, 1.0, [[5, 1.0, 0]]))
    report = write_report([tmp_path], tmp_path / "out")
    assert not (tmp_path / "out" / "energy_carbon.csv").exists()
    assert not (tmp_path / "out" / "gpsup_quadrant.png").exists()
    assert any("baseline 'popsan'" in n for n in report.notes) and any("energy" in n for n in report.notes)


def test_the_report_says_which_runs_ran_eagerly_where_compiling_failed(sweep):
    """A run asked to compile that ran some of it eagerly (its summary's `compile_failed`) has times that
    are not a compiled run's: the report says so by run."""
    run = sweep / "2_spikerl_s0" / "summary.json"
    failed = {"compile_failed": "policy_action (TorchRuntimeError)"}
    run.write_text(json.dumps({**json.loads(run.read_text()), **failed}))
    notes = write_report([sweep], sweep / "comparison", bootstrap_reps=0, inference_episodes=0).notes
    assert [n for n in notes if "eagerly" in n] == [
        f"{sweep / '2_spikerl_s0'} ran part of its work eagerly though asked to compile (compiling failed: "
        "policy_action (TorchRuntimeError)): its times are not a compiled run's"]


def test_report_of_no_finished_runs_writes_nothing(tmp_path):
    make_run_folder(tmp_path, "a", None)
    report = write_report([tmp_path], tmp_path / "out")
    assert report.files == [] and not (tmp_path / "out").exists()


def test_a_finished_run_copied_without_hydras_record_is_still_found(tmp_path):
    """A run folder copied without `.hydra/` (its summary.json beside the config.yaml the run wrote) is
    read; a config.yaml alone (W&B writes one under wandb/) is no run."""
    make_run_folder(tmp_path, "hydra", summary("popsan", 0, 10.0, 1.0, [[5, 1.0, 0]]))
    make_run_folder(tmp_path, "copied", summary("dsrl", 0, 12.0, 2.0, [[5, 2.0, 0]]))
    shutil.rmtree(tmp_path / "copied" / ".hydra")
    (tmp_path / "copied" / "config.yaml").write_text("train: {update_after: 7}\n")
    (tmp_path / "hydra" / "wandb" / "files").mkdir(parents=True)
    (tmp_path / "hydra" / "wandb" / "files" / "config.yaml").write_text("x: 1\n")
    summaries, skipped = find_runs([tmp_path])
    assert sorted(s["method"] for s in summaries) == ["dsrl", "popsan"] and skipped == []
    assert next(s for s in summaries if s["method"] == "dsrl")["update_after"] == 7


def test_the_compare_command_lists_its_options(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spikerl.compare", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m spikerl.compare [-h]")
    for option in ("--baseline", "--out", "--threshold-fraction", "--inference-episodes", "--bootstrap-reps"):
        assert option in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_compare_command_writes_the_report_of_run_folders(sweep, capsys):
    from spikerl.compare import main

    out = sweep / "elsewhere"
    assert main([str(sweep), "--out", str(out), "--inference-episodes", "0", "--bootstrap-reps", "50"]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "3_dsrl_crashed" in printed and f"files to {out} (start with report.md)" in printed
    assert float({r["method"]: r for r in rows(out / "gpsup.csv")}["spikerl"]["speedup"]) == pytest.approx(4.0)
    assert (out / "report.md").is_file() and (out / "intervals.csv").is_file()
    assert not (sweep / "comparison").exists() and not (out / "inference_energy.md").exists()


def test_the_compare_command_exits_1_when_no_run_finished(tmp_path, capsys):
    from spikerl.compare import main

    make_run_folder(tmp_path, "a", None)
    assert main([str(tmp_path)]) == 1
    assert "no finished runs: nothing to compare" in capsys.readouterr().out
    assert not (tmp_path / "comparison").exists()


@pytest.mark.slow  # three jobs with CodeCarbon and W&B, among make test's longest; CI runs it in test-slow
def test_three_method_multirun_leaves_its_comparison_in_the_sweep_folder(tmp_path):
    """The README's small sweep, at unit-test size: popsan, dsrl and spikerl with energy and W&B."""
    proc = subprocess.run(
        [sys.executable, "-m", "spikerl.run", "-m", *TINY, "train.total_steps=400", "experiment=popsan,dsrl,spikerl",
         "energy=codecarbon", "energy.measure_power_secs=1", "logger=wandb", "hydra.sweep.dir=sweep"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    # TINY makes each job a variant of its preset, named alike (spikerl.config.label): read them by preset
    jobs = {preset_of(s["method"]): s for s in (json.loads(p.read_text()) for p in sweep.glob("*/summary.json"))}
    assert set(jobs) == {"popsan", "dsrl", "spikerl"} and len({s["variant"] for s in jobs.values()}) == 1
    for job in sweep.glob("*_seed0"):
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
    out = sweep / "comparison"
    assert "comparison of 3 run(s) written" in proc.stderr

    def rows(path):  # the report's rows, keyed by preset
        return [{**r, "method": preset_of(r["method"])} for r in csv.DictReader(open(path))]

    gps = {r["method"]: r for r in rows(out / "gpsup.csv")}
    base, ours = jobs["popsan"], jobs["spikerl"]
    # one time base, the steady training time (without compiling), so that Greenup = Speedup / Powerup
    steady = {name: run["wall_seconds"] - run["compile_seconds"] for name, run in (("base", base), ("ours", ours))}
    assert gps["spikerl"]["time_basis"] == "steady_seconds"
    assert float(gps["spikerl"]["speedup"]) == pytest.approx(steady["base"] / steady["ours"], rel=1e-6)
    power = {name: run["energy_kwh"] / run["energy_seconds"] for name, run in (("base", base), ("ours", ours))}
    assert float(gps["spikerl"]["greenup"]) == pytest.approx(
        power["base"] * steady["base"] / (power["ours"] * steady["ours"]), rel=1e-6)
    assert float(gps["spikerl"]["greenup"]) == pytest.approx(
        float(gps["spikerl"]["speedup"]) / float(gps["spikerl"]["powerup"]), rel=1e-6)
    assert {r["method"] for r in rows(out / "learning_curves.csv")} == {"popsan", "dsrl", "spikerl"}
    inference = {r["method"]: r for r in rows(out / "inference_energy.csv")}  # every trained actor's estimate
    assert set(inference) == {"popsan", "dsrl", "spikerl"} and all(r["kind"] == "spiking" for r in inference.values())
    assert all(float(r["energy_uj_45nm"]) > 0 and 0 <= float(r["firing_rate"]) < 1 for r in inference.values())
    # (DSRL's actor, which feeds its first layer no synaptic current, may not fire yet this early)
    assert all(float(inference[m]["firing_rate"]) > 0 for m in ("popsan", "spikerl"))
    for name in ("report.md", "learning_curves.png", "gpsup_quadrant.png", "energy_carbon.png", "final_returns.md"):
        assert (out / name).is_file()
    assert list((out / "wandb").glob("offline-run-*"))  # the GPS-UP table and figures, for the W&B dashboard


def test_a_multirun_over_the_algorithms_compares_them(tmp_path):
    """`experiment=popsan algo=td3,ddpg,sac`: each job trains its learner, its run folder and summary name
    it (popsan, popsan-ddpg, popsan-sac), and the comparison report has a row for each, PopSAN-TD3 the
    GPS-UP baseline; the SAC actor's deterministic part exports for its inference energy like the others."""
    proc = subprocess.run(
        [sys.executable, "-m", "spikerl.run", "-m", *TINY, "train.total_steps=300", "experiment=popsan",
         "algo=td3,ddpg,sac", "hydra.sweep.dir=sweep"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    # TINY's sizes and schedule make every job a variant of its preset, named alike (spikerl.config.label)
    methods = {s["algo"]: s["method"] for s in jobs.values()}
    tiny = methods["td3"][len("popsan"):]
    assert tiny.startswith("~") and methods == {"td3": f"popsan{tiny}", "ddpg": f"popsan-ddpg{tiny}",
                                                "sac": f"popsan-sac{tiny}"}
    assert all(name.split("_")[1] == s["method"] for name, s in jobs.items())  # <num>_<method>_<env>_seed<seed>
    out = sweep / "comparison"
    gps = {r["method"]: r for r in rows(out / "gpsup.csv")}  # the baseline popsan: its one variant here
    assert set(gps) == set(methods.values()) and "speedup" in gps[f"popsan-sac{tiny}"]
    inference = rows(out / "inference_energy.csv")
    assert {r["method"] for r in inference} == set(gps)
    # each run keeps its estimate: a report over the results without their checkpoints (as committed) has it too
    for job in jobs:
        assert (sweep / job / "inference_energy.json").is_file()
        shutil.rmtree(sweep / job / "checkpoints")
    write_report([sweep], tmp_path / "again", bootstrap_reps=0)
    assert rows(tmp_path / "again" / "inference_energy.csv") == inference


def test_a_failed_job_does_not_stop_the_sweep_or_its_report(tmp_path):
    """Seed 1 of the faulty task crashes; seed 2 still runs, the report covers it and names the failure,
    and the command exits 1."""
    import os

    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    proc = subprocess.run(
        [sys.executable, "-m", "spikerl.run", "-m", *TINY, "train.total_steps=300", "seed=1,2",
         "env.id=faulty_env:FaultyPendulum-v0", "hydra.sweep.dir=sweep"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.count("SpikeRL run summary") == 1
    assert "simulated crash" in proc.stderr and "comparison of 1 run(s) written" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("spikerl: error: 1 job(s) of the multirun failed:")
    report = (tmp_path / "sweep" / "comparison" / "report.md").read_text()
    assert "seed1" in report and "failed or unfinished" in report
