"""Reading finished runs back: the summaries of every run folder under some roots."""

from __future__ import annotations

import json
from pathlib import Path


def find_runs(roots: list[Path]) -> tuple[list[dict], list[Path]]:
    """(summaries, run folders without a readable summary.json: failed or unfinished). A run folder is
    one Hydra made (it has `.hydra/config.yaml`)."""
    summaries, skipped = [], []
    for root in roots:
        for config in sorted(Path(root).rglob(".hydra/config.yaml")):
            run_dir = config.parent.parent
            try:
                summaries.append({**json.loads((run_dir / "summary.json").read_text()), "run_dir": str(run_dir)})
            except (OSError, json.JSONDecodeError):
                skipped.append(run_dir)
    return summaries, skipped
