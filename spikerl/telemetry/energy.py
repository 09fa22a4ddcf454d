"""Energy measurement: one meter per node, around the whole job on that node.

`CodeCarbonMeter` runs CodeCarbon offline (no network) with a configured country for the grid's
carbon intensity. Measuring must never stop or slow training: any failure of CodeCarbon, at start or
stop, warns once and the run goes on without energy figures.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

KINDS = ("codecarbon", "none")


@dataclass
class EnergyConfig:
    """The `energy` config section."""

    kind: str = "codecarbon"
    country: str = "USA"  # ISO 3166 alpha-3 code of the grid the machine draws from
    measure_power_secs: float = 15.0

    CHOICES = {"kind": KINDS}
    POSITIVE = ("measure_power_secs",)


class NullMeter:
    def start(self) -> None:
        pass

    def stop(self) -> dict:
        return {}

    def reading(self) -> dict:
        return {}


class CodeCarbonMeter:
    """Energy (kWh, split CPU / GPU / RAM), mean power, emissions (kg CO2eq) and how they were measured:
    RAPL counters, NVML for GPUs, or CodeCarbon's estimate from CPU load and TDP when neither exists."""

    def __init__(self, output_dir: str | Path, country: str = "USA", measure_power_secs: float = 15.0):
        self.output_dir, self.country, self.measure_power_secs = Path(output_dir), country, measure_power_secs
        self.tracker = None

    def start(self) -> None:
        try:
            os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")  # CodeCarbon is chatty otherwise
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            from codecarbon import OfflineEmissionsTracker

            self.output_dir.mkdir(parents=True, exist_ok=True)  # a missing folder makes it a silent no-op
            self.tracker = OfflineEmissionsTracker(
                country_iso_code=self.country, output_dir=str(self.output_dir), log_level="error",
                measure_power_secs=self.measure_power_secs, save_to_file=True, tracking_mode="machine",
            )
            self.tracker.start()
        except Exception as exc:  # a broken install or missing hardware counters: measure nothing
            warnings.warn(f"energy measurement disabled: {type(exc).__name__}: {exc}", stacklevel=2)
            self.tracker = None

    def stop(self) -> dict:
        if self.tracker is None:
            return {}
        try:
            emissions = self.tracker.stop()
            return self._figures(self.tracker.final_emissions_data, emissions)
        except Exception as exc:
            warnings.warn(f"energy measurement failed: {type(exc).__name__}: {exc}", stacklevel=2)
            return {}

    def reading(self) -> dict:
        """This segment's figures so far, the tracker still running (as of its latest power sample, at most
        `measure_power_secs` old); {} where they cannot be read. CodeCarbon has no public call that reads
        without writing a row to its CSV, so this uses its own measuring step and totals."""
        if self.tracker is None:
            return {}
        try:
            data = self.tracker._prepare_emissions_data()
            return self._figures(data, data.emissions)
        except Exception:
            return {}

    def _figures(self, data, emissions) -> dict:
        energy = float(data.energy_consumed)
        return {
            "energy_kwh": energy,
            "cpu_energy_kwh": float(data.cpu_energy),
            "gpu_energy_kwh": float(data.gpu_energy),
            "ram_energy_kwh": float(data.ram_energy),
            "energy_seconds": float(data.duration),  # the span measured: the whole job on this node
            "power_w": energy * 3.6e6 / data.duration if data.duration else 0.0,
            "emissions_kg": float(emissions or 0.0),
            "country": self.country,
            # CodeCarbon's measured devices say how CPU power was read
            "energy_source": energy_source(self.tracker._hardware),
        }


def energy_source(hardware: list) -> str:
    """How CodeCarbon measured: `rapl`, `nvml+rapl`, `nvml+estimate`, or `estimate` (TDP x load)."""
    names = {type(h).__name__ for h in hardware}
    cpu_modes = {getattr(h, "_mode", None) for h in hardware if type(h).__name__ == "CPU"}
    cpu = "rapl" if "intel_rapl" in cpu_modes else "estimate"
    return f"nvml+{cpu}" if "GPU" in names else cpu


def make_meter(kind: str, output_dir: str | Path, country: str = "USA", measure_power_secs: float = 15.0):
    if kind == "none":
        return NullMeter()
    if kind == "codecarbon":
        return CodeCarbonMeter(output_dir, country, measure_power_secs)
    raise ValueError(f"energy.kind must be one of {', '.join(KINDS)}; got {kind!r}")


# Figures of a segment that add up over a run's segments; power, country and source do not.
ADDITIVE = ("energy_kwh", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh", "energy_seconds", "emissions_kg")


class EnergyLedger:
    """The figures of each segment of a run (a run stopped and resumed has several) in
    `<run>/energy/segments.jsonl`, one line a segment: a run's energy is the sum over its segments.

    A segment killed outright (SIGKILL, a lost node) never stops its meter. So at each checkpoint the
    segment's figures so far are kept in `open_segment.json`; the next segment, resuming from a
    checkpoint, first enters them as a cut-off segment. Its energy then counts up to about its last
    checkpoint, as its wall time does (the steps after it are done again, and counted, by the next)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / "segments.jsonl"
        self.open_path = self.path.with_name("open_segment.json")

    def settle(self, fresh: bool) -> bool:
        """As a segment starts: a fresh run forgets a cut-off segment; a resumed one enters it. Returns
        whether a cut-off segment was entered."""
        if not self.open_path.exists():
            return False
        figures = json.loads(self.open_path.read_text())
        if not fresh:
            self._append({**figures, "cut_off": True}, fresh=False)
        self.open_path.unlink()
        return not fresh

    def mark_open(self, figures: dict) -> None:
        """The running segment's figures so far (written whole, so that a kill mid-write leaves the last)."""
        if not figures:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.open_path.with_suffix(".tmp")
        partial.write_text(json.dumps(figures))
        os.replace(partial, self.open_path)

    def add(self, figures: dict, fresh: bool) -> dict:
        """Record one segment's figures as it ends (a fresh run starts the ledger anew); returns the run's totals."""
        self._append(figures, fresh)
        self.open_path.unlink(missing_ok=True)
        return self.totals()

    def _append(self, figures: dict, fresh: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w" if fresh else "a") as f:
            f.write(json.dumps(figures) + "\n")

    def totals(self) -> dict:
        segments = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        totals = {**segments[-1], **{k: sum(s.get(k, 0.0) for s in segments) for k in ADDITIVE}}
        totals.pop("cut_off", None)
        totals["power_w"] = totals["energy_kwh"] * 3.6e6 / totals["energy_seconds"] if totals["energy_seconds"] else 0.0
        totals["energy_segments"] = len(segments)
        totals["energy_segments_cut_off"] = sum(bool(s.get("cut_off")) for s in segments)
        return totals
