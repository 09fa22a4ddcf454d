"""Trained actors quantised for deployment, in the task: each run's actor exported with
`python -m spikerl.export RUN --quantize int8 --target T --force` (written to a temporary folder whatever
its return), its closed-loop return over N evaluation episodes beside the float actor's, the share of
equal actions, and the chip energy per action at each precision. Prints a table and writes JSON with the
command, the code and the machine.

    python experiments/quantize_actors.py results/paper_100k/halfcheetah/popsan_seed0 ... --episodes 10
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import markdown, write_report  # noqa: E402

from spikerl.export.__main__ import main as export_main  # noqa: E402

HEADER = ["run", "target", "env steps", "float return", "quantised return", "ratio", "kept", "equal actions",
          "mean abs Δ action", "chip µJ/action float", "chip µJ/action quantised"]


def quantized_result(run: str, target: str, episodes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()) as printed:
        code = export_main([run, "--quantize", "int8", "--target", target, "--episodes", str(episodes), "--force",
                            "--json", "--out", str(Path(tmp) / "bundle")])
    if code != 0:
        raise SystemExit(f"quantize_actors: the export of {run} for {target} failed (exit {code})")
    out = json.loads(printed.getvalue())
    closed, energy = out["quantization"]["closed_loop"], out["energy"]
    return {"run": run, "target": target, "method": energy["method"], "env_id": energy["env_id"],
            "env_steps": energy["env_steps"], **{k: v for k, v in closed.items()},
            "energy_uj_45nm_float": out["float_energy"]["energy_uj"]["45nm"],
            "energy_uj_45nm_quantized": energy["energy_uj"]["45nm"], "arithmetic": energy.get("arithmetic"),
            "registers": {k: v for k, v in out["quantization"].items() if k in ("nodes", "graded_input", "scales")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (their checkpoints/last.pt) or checkpoint files")
    parser.add_argument("--targets", nargs="+", default=["loihi", "float"])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/quantize_actors.json"))
    args = parser.parse_args(argv)
    results = [quantized_result(run, target, args.episodes) for run in args.runs for target in args.targets]
    rows = [[r["run"], r["target"], f"{r['env_steps']:,}", f"{r['float_return']:,.0f}",
             f"{r['quantized_return']:,.0f}", "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
             "yes" if r["kept"] else "no", f"{100 * r['actions_equal_fraction']:.1f} %",
             f"{r['action_mean_abs_diff']:.4f}", f"{r['energy_uj_45nm_float']:.3f}",
             f"{r['energy_uj_45nm_quantized']:.3f}"] for r in results]
    print(markdown(HEADER, rows))
    write_report(args.out, "quantize_actors.py", argv, {"episodes": args.episodes, "targets": args.targets},
                 results, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
