"""Metrics: window averages and a JSON-lines file, one object per logged step."""

from __future__ import annotations

import json
import uuid
import warnings
from collections import defaultdict
from pathlib import Path

import torch


class RunningMeans:
    """Sums and counts per metric name since the last `pop`. Values may be numbers or 0-dim tensors on a
    device (the learner's losses): those are summed on the device and read only by `pop`, so adding
    them never waits for the device."""

    def __init__(self):
        self._sum: dict[str, float | torch.Tensor] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)

    def add(self, key: str, value: float | torch.Tensor) -> None:
        self._sum[key] = self._sum[key] + (value.detach() if isinstance(value, torch.Tensor) else float(value))
        self._count[key] += 1

    def update(self, values: dict[str, float | torch.Tensor]) -> None:
        for key, value in values.items():
            self.add(key, value)

    def pop(self) -> dict[str, float]:
        means = {k: float(self._sum[k]) / self._count[k] for k in self._sum}
        self._sum.clear()
        self._count.clear()
        return means


class MetricsWriter:
    """Appends one JSON object per line; each line is flushed so a killed run keeps its history."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)

    def write(self, row: dict) -> None:
        self._file.write(json.dumps(row, sort_keys=True) + "\n")

    def summarize(self, values: dict) -> None:
        """Run totals (energy) are in summary.json; the history file holds per-step rows only."""

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class WandbWriter:
    """Sends the same rows to a Weights & Biases run (rank 0 only). W&B failing to start or to log
    warns once and leaves the JSON lines as the record; it never stops training. A run folder keeps its
    W&B run's id (RUN_ID_FILE), so a resumed run continues the same W&B run instead of opening another."""

    RUN_ID_FILE = "wandb_run_id"

    def __init__(self, run_dir: str | Path, mode: str, project: str, entity: str | None, name: str, group: str,
                 job_type: str, tags: list[str], config: dict):
        self.run = None
        try:
            import wandb

            id_file = Path(run_dir) / self.RUN_ID_FILE
            run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
            self.run = wandb.init(
                mode=mode, project=project, entity=entity, name=name, group=group, job_type=job_type, tags=tags,
                config=config, id=run_id, resume="allow",
                dir=str(run_dir), reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"),
            )
            id_file.write_text(run_id + "\n")
        except Exception as exc:
            warnings.warn(f"W&B logging disabled: {type(exc).__name__}: {exc}", stacklevel=2)

    def write(self, row: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
        except Exception as exc:
            warnings.warn(f"W&B logging stopped: {type(exc).__name__}: {exc}", stacklevel=2)
            self.run = None

    def summarize(self, values: dict) -> None:
        """Run totals (energy) go to the W&B run's summary, beside the last logged values."""
        if self.run is None or not values:
            return
        try:
            self.run.summary.update(values)
        except Exception as exc:
            warnings.warn(f"W&B summary not written: {type(exc).__name__}: {exc}", stacklevel=2)

    def close(self) -> None:
        if self.run is not None:
            try:
                self.run.finish()  # every job of a multirun ends its own run
            except Exception:
                pass
            self.run = None


class TensorBoardWriter:
    """Sends the same rows to TensorBoard event files in `<run>/tensorboard/` (rank 0 only; `tensorboard
    --logdir <run or sweep folder>` shows them, each run folder a run). Like W&B, a failure warns once and
    never stops training. A resumed run appends to the same folder, so its curve continues."""

    def __init__(self, run_dir: str | Path):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        except Exception as exc:
            warnings.warn(f"TensorBoard logging disabled: {type(exc).__name__}: {exc}", stacklevel=2)

    def write(self, row: dict) -> None:
        if self.writer is None:
            return
        try:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, global_step=int(row["step"]))
        except Exception as exc:
            warnings.warn(f"TensorBoard logging stopped: {type(exc).__name__}: {exc}", stacklevel=2)
            self.writer = None

    def summarize(self, values: dict) -> None:
        """Run totals (energy) as text: TensorBoard has no run summary."""
        if self.writer is None or not values:
            return
        try:
            self.writer.add_text("summary", "\n".join(f"{k}: {v}" for k, v in sorted(values.items())))
        except Exception as exc:
            warnings.warn(f"TensorBoard summary not written: {type(exc).__name__}: {exc}", stacklevel=2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Writers:
    """Several writers behind one `write`/`close`."""

    def __init__(self, writers: list):
        self.writers = writers

    def write(self, row: dict) -> None:
        for w in self.writers:
            w.write(row)

    def summarize(self, values: dict) -> None:
        for w in self.writers:
            w.summarize(values)

    def close(self) -> None:
        for w in self.writers:
            w.close()
