"""Compare methods from run or sweep folders: final returns, learning curves, GPS-UP (Speedup, Powerup,
Greenup against a baseline on each task) with its quadrant graph, interquartile means with bootstrap
intervals, probability of improvement and performance profiles (rliable), time to a return and GPS-UP at
equal return, the trained actors' inference energy per action, and energy and carbon with everyday
equivalents, as PNG plus Markdown and CSV.

    python -m spikerl.compare multirun/<date> [more folders] [--baseline popsan] [--out <folder>]

A multirun writes the same report into <sweep>/comparison/ when it ends (the `ComparisonReport` Hydra
callback); this command redoes it for any folders, e.g. several sweeps together or another baseline.
Runs without a summary.json (failed or unfinished) are skipped with a note. The files written are
listed in spikerl/analysis/report.py. Exit code 1 when no run had finished (nothing written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .analysis.intervals import BOOTSTRAP_REPS
from .analysis.report import GPSUP_COLUMNS, markdown_table, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spikerl.compare", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("roots", nargs="+", type=Path, help="run or sweep folders")
    parser.add_argument("--baseline", default="popsan", help="method compared against (default popsan)")
    parser.add_argument("--out", type=Path, help="folder for the report (default: <first folder>/comparison)")
    parser.add_argument("--threshold-fraction", type=float, default=0.8,
                        help="time to a return: this fraction of the baseline's final mean return (default 0.8)")
    parser.add_argument("--inference-episodes", type=int, default=1,
                        help="episodes per trained actor for the inference energy per action (0: leave it out)")
    parser.add_argument("--bootstrap-reps", type=int, default=BOOTSTRAP_REPS,
                        help=f"stratified-bootstrap samples for the IQM intervals (default {BOOTSTRAP_REPS}; 0: leave "
                             "them out)")
    args = parser.parse_args(argv)
    report = write_report(args.roots, args.out or args.roots[0] / "comparison", args.baseline, args.threshold_fraction,
                          args.inference_episodes, args.bootstrap_reps)
    for note in report.notes:
        print(note)
    if not report.files:
        return 1
    print(markdown_table(report.gpsup, GPSUP_COLUMNS))
    print(f"wrote {len(report.files)} files to {report.out} (start with report.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
