"""Print (and optionally write as Markdown/CSV) a table of run summaries.

    python experiments/summarize_runs.py outputs multirun [--markdown table.md] [--csv table.csv]

Finds every `summary.json` under the given folders; runs without one (failed or still running) are
listed as skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spikerl.analysis.report import markdown_table, write_csv
from spikerl.analysis.results import find_runs

COLUMNS = ["method", "actor", "env_id", "seed", "precision", "world_size", "total_env_steps",
           "wall_seconds", "eval_return_mean", "eval_return_std", "best_eval_return",
           "env_steps_per_second", "updates_per_second"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding run folders")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV here")
    args = parser.parse_args(argv)
    rows, skipped = find_runs(args.roots)
    rows.sort(key=lambda r: (r.get("env_id", ""), r.get("method", ""), r.get("seed", 0)))
    table = markdown_table(rows, COLUMNS)
    print(table)
    for run_dir in skipped:
        print(f"skipped (no summary.json: failed or unfinished): {run_dir}")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.csv:
        write_csv(args.csv, rows, COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
