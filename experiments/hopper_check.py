"""Hopper-v4 side by side: this project's `experiment=popsan` against the published PopSAN loop
(experiments/published_popsan.py), same protocol (100,000 env steps, one core each, evaluations of 10
episodes every 10,000 steps), per seed and over seeds.

    python experiments/hopper_check.py [--folder results/hopper_check] [--out results/hopper_check/summary.md]

Reads `ours_seed<N>/evaluations.csv` (a run folder of `python -m spikerl.run experiment=popsan env=hopper
seed=N train.total_steps=100000 hydra.run.dir=...`) and `published_seed<N>.csv`. The statistic is the
issue's: the mean of the evaluations at 80k, 90k and 100k steps. Writes a Markdown table and the curves.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
from pathlib import Path

LATE = (80_000, 90_000, 100_000)


def curve(path: Path, step_key: str, return_key: str) -> dict[int, float]:
    with path.open() as f:
        return {int(row[step_key]): float(row[return_key]) for row in csv.DictReader(f)}


def late_mean(points: dict[int, float]) -> float | None:
    values = [points[s] for s in LATE if s in points]
    return statistics.mean(values) if len(values) == len(LATE) else None


def curves(folder: Path) -> dict[str, dict[int, dict[int, float]]]:
    found: dict[str, dict[int, dict[int, float]]] = {"ours": {}, "published": {}}
    for path in sorted(folder.glob("ours_seed*/evaluations.csv")):
        found["ours"][int(re.search(r"seed(\d+)", str(path)).group(1))] = curve(path, "step", "return_mean")
    for path in sorted(folder.glob("published_seed*.csv")):
        found["published"][int(re.search(r"seed(\d+)", path.name).group(1))] = curve(path, "env_step", "return")
    return found


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("results/hopper_check"))
    parser.add_argument("--out", type=Path, help="default: FOLDER/summary.md")
    args = parser.parse_args(argv)
    found = curves(args.folder)
    seeds = sorted(set(found["ours"]) | set(found["published"]))
    steps = sorted({s for side in found.values() for c in side.values() for s in c})
    lines = ["| seed | " + " | ".join(f"{s // 1000}k ours / published" for s in steps) +
             " | mean at 80-100k, ours | mean at 80-100k, published |",
             "|---" * (len(steps) + 3) + "|"]
    late = {side: {seed: late_mean(c) for seed, c in found[side].items()} for side in found}
    for seed in seeds:
        ours, published = found["ours"].get(seed, {}), found["published"].get(seed, {})
        cells = [f"{fmt(ours.get(s))} / {fmt(published.get(s))}" for s in steps]
        lines.append(f"| {seed} | " + " | ".join(cells) +
                     f" | {fmt(late['ours'].get(seed))} | {fmt(late['published'].get(seed))} |")
    for side in ("ours", "published"):
        values = [v for v in late[side].values() if v is not None]
        if values:
            spread = f" ± {statistics.stdev(values):,.0f}" if len(values) > 1 else ""
            lines.append(f"\n{side}: mean at 80-100k over {len(values)} seeds {statistics.mean(values):,.0f}{spread} "
                         f"(per seed: {', '.join(fmt(v) for v in values)})")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or args.folder / "summary.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
