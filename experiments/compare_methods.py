"""GPS-UP comparison of methods from run or sweep folders: Speedup, Powerup, Greenup and reward
difference against a baseline method on each task (means over seeds).

    python experiments/compare_methods.py multirun/<date> [--baseline popsan] [--out <folder>]

Writes gpsup.md and gpsup.csv into --out (default: the first folder given) and prints the table.
Runs without a summary.json (failed or unfinished) are skipped with a note; a task without a
baseline run gets means only.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from spikerl.gpsup import compare
from spikerl.results import find_runs

COLUMNS = ["env_id", "method", "runs", "eval_return_mean", "wall_seconds", "energy_kwh", "power_w", "emissions_kg",
           "speedup", "powerup", "greenup", "reward_diff_percent", "carbon_diff_percent"]


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="run or sweep folders")
    parser.add_argument("--baseline", default="popsan", help="method compared against (default popsan)")
    parser.add_argument("--out", type=Path, help="where to write gpsup.md and gpsup.csv (default: first root)")
    args = parser.parse_args(argv)
    summaries, skipped = find_runs(args.roots)
    for run_dir in skipped:
        print(f"skipped (no summary.json: failed or unfinished): {run_dir}")
    if not summaries:
        print("no finished runs found")
        return 1
    rows = compare(summaries, args.baseline)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    out = args.out or args.roots[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpsup.md").write_text(f"GPS-UP against {args.baseline} (means over seeds)\n\n{table}\n")
    with open(out / "gpsup.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out / 'gpsup.md'} and {out / 'gpsup.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
