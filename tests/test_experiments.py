"""experiments/ scripts on small synthetic run folders."""

import csv
import runpy
import sys
from pathlib import Path

from conftest import make_run_folder

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "summarize_runs.py"


def run_script(script: Path, monkeypatch, *args: str) -> None:
    """Run an experiments/ script as `python <script> <args>` in this process; it must exit 0."""
    monkeypatch.setattr(sys, "argv", [script.name, *args])
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        assert exc.code == 0


def test_summarize_runs_tables_finished_runs_and_skips_others(tmp_path, monkeypatch, capsys):
    make_run_folder(tmp_path, "a", {"method": "popsan", "env_id": "Hopper-v4", "seed": 0, "eval_return_mean": 12.25})
    make_run_folder(tmp_path, "b", {"method": "dsrl", "env_id": "Hopper-v4", "seed": 1, "eval_return_mean": 3.0})
    make_run_folder(tmp_path, "broken", None)
    out_csv = tmp_path / "t.csv"
    run_script(SCRIPT, monkeypatch, str(tmp_path), "--csv", str(out_csv))
    out = capsys.readouterr().out
    assert "| dsrl |" in out and "| popsan |" in out and "12.2" in out
    assert "skipped (no summary.json: failed or unfinished)" in out and "broken" in out
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["method"] for r in rows] == ["dsrl", "popsan"]


COMPARE = Path(__file__).resolve().parent.parent / "experiments" / "compare_methods.py"


def test_compare_methods_writes_gpsup_tables_from_run_folders(tmp_path, monkeypatch, capsys):
    base = {"env_id": "HalfCheetah-v4", "seed": 0, "eval_return_mean": 1000.0, "emissions_kg": 0.004}
    make_run_folder(tmp_path, "0_popsan", {**base, "method": "popsan", "wall_seconds": 100.0, "energy_kwh": 0.01})
    make_run_folder(tmp_path, "1_spikerl", {**base, "method": "spikerl", "wall_seconds": 50.0, "energy_kwh": 0.006,
                                     "eval_return_mean": 1037.2})
    make_run_folder(tmp_path, "2_dsrl_failed", None)
    run_script(COMPARE, monkeypatch, str(tmp_path))
    out = capsys.readouterr().out
    assert "skipped" in out and "2_dsrl_failed" in out and "wrote" in out
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "comparison" / "gpsup.csv"))}
    assert float(rows["spikerl"]["speedup"]) == 2.0 and float(rows["popsan"]["speedup"]) == 1.0
    assert abs(float(rows["spikerl"]["reward_diff_percent"]) - 3.72) < 1e-9
    assert (tmp_path / "comparison" / "gpsup.md").read_text().startswith("# GPS-UP against popsan")
