"""Trained ANN actors converted to spiking ones (`python -m spikerl.convert`), in the task: for each run and
reset, the converted actor's closed-loop return at each T beside the ANN's, its synaptic operations, MACs
and energy per action, and, from a comparison report's `inference_energy.csv` and `final_returns.csv`,
the trained spiking actors' of the same task beside them. Prints a table and writes JSON with the
command, the code and the machine.

    python experiments/convert_actors.py /work/runs/paper_100k/halfcheetah/td3-sac_seed0 \\
        --trained results/paper_100k/comparison --episodes 10
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import write_report  # noqa: E402
from readme_tables import convert_table  # noqa: E402

from spikerl.convert import main as convert_main  # noqa: E402


def converted(run: str, reset: str, timesteps: str, episodes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()) as printed:
        code = convert_main([run, "--timesteps", timesteps, "--reset", reset, "--episodes", str(episodes), "--json",
                             "--out", str(Path(tmp) / "converted")])
    if code != 0:
        raise SystemExit(f"convert_actors: the conversion of {run} ({reset}) failed (exit {code})")
    result = json.loads(printed.getvalue())
    result.pop("out")
    return {"run": run, **result}


def trained(report: Path, env_id: str) -> list[dict]:
    """The trained actors of `env_id` in a comparison report: mean final return, energy per action."""
    def rows(name):
        with open(report / name) as f:
            return {r["method"]: r for r in csv.DictReader(f) if r["env_id"] == env_id}

    energy, returns = rows("inference_energy.csv"), rows("final_returns.csv")
    return [{"method": m, "runs": int(e["runs"]), "kind": e["kind"],
             "final_return_mean": float(returns[m]["final_return_mean"]) if m in returns else None,
             **{k: float(e[k]) if e[k] else None for k in ("synaptic_ops", "macs", "firing_rate", "energy_uj_45nm",
                                                          "energy_uj_loihi")}}
            for m, e in sorted(energy.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="ANN run folders (their checkpoints/last.pt) or checkpoint files")
    parser.add_argument("--resets", nargs="+", default=["subtract", "zero"])
    parser.add_argument("--timesteps", default="8,16,32,64")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--trained", nargs="*", type=Path, default=[],
                        help="comparison report folders whose trained spiking actors to set beside (same task)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/convert_actors.json"))
    args = parser.parse_args(argv)
    results = []
    for run in args.runs:
        for i, reset in enumerate(args.resets):
            r = converted(run, reset, args.timesteps, args.episodes)
            if i == len(args.resets) - 1:  # once per run, after its last reset
                r["trained_spiking"] = [t for report in args.trained for t in trained(report, r["env_id"])]
            results.append(r)
            print(convert_table({"results": [r]}), flush=True)
    write_report(args.out, "convert_actors.py", argv,
                 {"episodes": args.episodes, "timesteps": args.timesteps, "resets": args.resets,
                  "trained": [str(p) for p in args.trained]}, results, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
