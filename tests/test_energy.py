"""Energy measurement: figures in the summary, and a failing tracker never stops a run."""

import json

import pytest

from spikerl.config import compose, validate
from spikerl.launch import launch
from spikerl.telemetry import energy


def run_with_energy(tmp_path, *overrides):
    from conftest import TINY

    rc = validate(compose([*TINY, "train.total_steps=200", "energy=codecarbon", "energy.measure_power_secs=1",
                           *overrides]))
    return launch(rc, tmp_path, "popsan")


def test_codecarbon_figures_reach_the_summary(tmp_path):
    summary = run_with_energy(tmp_path, "energy.country=FRA")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["energy_kwh"] > 0 and on_disk["emissions_kg"] > 0 and on_disk["power_w"] > 0
    assert on_disk["energy_seconds"] >= on_disk["wall_seconds"]  # the meter spans the whole job
    assert on_disk["power_w"] == pytest.approx(on_disk["energy_kwh"] * 3.6e6 / on_disk["energy_seconds"])
    parts = on_disk["cpu_energy_kwh"] + on_disk["gpu_energy_kwh"] + on_disk["ram_energy_kwh"]
    assert parts == pytest.approx(on_disk["energy_kwh"], rel=1e-6)
    assert on_disk["country"] == "FRA"
    assert on_disk["energy_source"] in ("rapl", "estimate", "nvml+rapl", "nvml+estimate")
    assert (tmp_path / "energy" / "emissions.csv").is_file()  # CodeCarbon's own record, in the run folder


@pytest.mark.parametrize("where", ["start", "stop"])
def test_a_failing_tracker_warns_and_the_run_goes_on(tmp_path, monkeypatch, where):
    import codecarbon

    class Broken:
        def __init__(self, *args, **kwargs):
            if where == "start":
                raise RuntimeError("no hardware counters")

        def start(self):
            pass

        def stop(self):
            raise RuntimeError("tracker crashed")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Broken)
    with pytest.warns(UserWarning, match="energy measurement"):
        summary = run_with_energy(tmp_path)
    assert summary["total_env_steps"] == 200 and "energy_kwh" not in summary


def test_energy_source_names_the_measurement_mode():
    class CPU:
        def __init__(self, mode):
            self._mode = mode

    class GPU:
        pass

    assert energy.energy_source([CPU("intel_rapl")]) == "rapl"
    assert energy.energy_source([CPU("cpu_load")]) == "estimate"
    assert energy.energy_source([CPU("constant"), GPU()]) == "nvml+estimate"


def test_energy_figures_reach_the_wandb_run_before_it_finishes(tmp_path, monkeypatch):
    import wandb

    class FakeRun:
        def __init__(self):
            self.summary, self.finished_with = {}, None

        def log(self, row, step):
            pass

        def finish(self):
            self.finished_with = dict(self.summary)

    run = FakeRun()
    monkeypatch.setattr(wandb, "init", lambda *args, **kwargs: run)
    summary = run_with_energy(tmp_path, "logger=wandb")
    assert run.finished_with["energy/energy_kwh"] == summary["energy_kwh"] > 0
    assert run.finished_with["energy/emissions_kg"] == summary["emissions_kg"]


def test_codecarbon_reads_the_running_segment_with_the_keys_of_its_stop(tmp_path):
    """What a checkpoint keeps for a segment that may be killed before its meter stops."""
    import time

    meter = energy.CodeCarbonMeter(tmp_path, measure_power_secs=1)
    meter.start()
    time.sleep(1.5)
    reading = meter.reading()
    final = meter.stop()
    assert reading.keys() == final.keys() and 0 < reading["energy_kwh"] <= final["energy_kwh"]
    assert 1.0 < reading["energy_seconds"] <= final["energy_seconds"]
    assert energy.NullMeter().reading() == {}
