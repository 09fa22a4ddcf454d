"""Metrics: window averages and a JSON-lines file, one object per logged step."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


class RunningMeans:
    """Sums and counts per metric name since the last `pop`."""

    def __init__(self):
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)

    def add(self, key: str, value: float) -> None:
        self._sum[key] += float(value)
        self._count[key] += 1

    def update(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.add(key, value)

    def pop(self) -> dict[str, float]:
        means = {k: self._sum[k] / self._count[k] for k in self._sum}
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

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
