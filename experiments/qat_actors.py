"""Quantisation-aware fine-tuning of trained actors, in the task: each run's actor exported with
`python -m spikerl.export RUN --quantize int8 --target T --qat-updates N --force` (to a temporary folder
whatever its return): the float return, the post-training quantised return and the quantised return
after fine-tuning over the same evaluation episodes, the fine-tuned float actor's own return, and the
fine-tuning's cost. A control fine-tunes the same learner for the same updates on the same replay
without fake quantisation, then quantises it post-training, which tells the effect of fake-quantised
training from that of more training. Prints a table and writes JSON with the command, the code and
the machine.

    python experiments/qat_actors.py /work/runs/halfcheetah_50k/dsrl_seed2 --updates 3000 --episodes 10
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import markdown, write_report  # noqa: E402

from spikerl.api import evaluate  # noqa: E402
from spikerl.export import qat  # noqa: E402
from spikerl.export.__main__ import main as export_main  # noqa: E402
from spikerl.rl.evaluation import trained_actor  # noqa: E402
from spikerl.runtime import checkpoint  # noqa: E402

HEADER = ["run", "target", "float return", "post-training int8 (ratio)", "after QAT int8 (ratio)",
          "fine-tuned float actor", "control: float fine-tuning, then int8 (ratio)", "updates", "QAT s"]


def exported(argv: list[str]) -> dict:
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = export_main([*argv, "--force", "--json"])
    if code != 0:
        raise SystemExit(f"qat_actors: the export {argv} failed (exit {code})")
    return json.loads(printed.getvalue())


def case(run: str, target: str, updates: int, episodes: int, lr: float | None, collect: int | None) -> dict:
    start = time.perf_counter()
    options = [*(["--qat-lr", str(lr)] if lr else []), *(["--qat-collect", str(collect)] if collect else [])]
    with tempfile.TemporaryDirectory() as tmp:
        out = exported([run, "--quantize", "int8", "--target", target, "--episodes", str(episodes),
                        "--qat-updates", str(updates), *options, "--out", f"{tmp}/qat"])
        closed, record = out["quantization"]["closed_loop"], out["quantization"]["qat"]
        tuned_float = evaluate(f"{tmp}/qat/{qat.CHECKPOINT}", episodes, closed["seed"])
        # the control: the same learner, updates, learning rate and replay, without fake quantisation
        state = checkpoint.load(run)
        prepared = qat.prepare(state, run, trained_actor(state)[0], target)
        control = qat.fine_tune(dataclasses.replace(prepared, quantizers=[]), state, updates, lr, collect)
        checkpoint.save_atomic(control.state, f"{tmp}/control.pt")
        ptq = exported([f"{tmp}/control.pt", "--quantize", "int8", "--target", target, "--episodes",
                        str(episodes), "--seed", str(closed["seed"]), "--out", f"{tmp}/control"])
    f = closed["float_return"]
    ratio = lambda q: q / f if f > 0 else None  # noqa: E731
    control_q = ptq["quantization"]["closed_loop"]["quantized_return"]
    return {"run": run, "target": target, "method": out["energy"]["method"], "env_id": out["energy"]["env_id"],
            "env_steps": out["energy"]["env_steps"], "episodes": episodes, "seed": closed["seed"],
            "float_return": f, "float_returns": closed["float_returns"],
            "post_training_return": record["post_training"]["quantized_return"],
            "post_training_ratio": record["post_training"]["ratio"],
            "qat_return": closed["quantized_return"], "qat_returns": closed["quantized_returns"],
            "qat_ratio": closed["ratio"], "min_return_ratio": closed["min_return_ratio"], "kept": closed["kept"],
            "post_training_kept": record["post_training"]["kept"],
            "fine_tuned_float_return": tuned_float["return_mean"],
            "control_float_return": ptq["quantization"]["closed_loop"]["float_return"],
            "control_quantized_return": control_q, "control_ratio": ratio(control_q),
            "control_seconds": control.record["seconds"],
            "updates": record["updates"], "lr": record["lr"], "learning_rates": record["learning_rates"],
            "batch_size": record["batch_size"], "qat_seconds": record["seconds"], "replay": record["replay"],
            "losses": record["losses"], "case_seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (their checkpoints/last.pt and config.yaml)")
    parser.add_argument("--targets", nargs="+", default=["float", "loihi"])
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=None, help="--qat-lr (default: the export's)")
    parser.add_argument("--collect", type=int, default=None, help="--qat-collect (default: the export's)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "qat_actors.json")
    args = parser.parse_args(argv)
    results = [case(run, target, args.updates, args.episodes, args.lr, args.collect)
               for run in args.runs for target in args.targets]

    def returned(q, r):
        return f"{q:,.0f}" + ("" if r is None else f" ({r:.3f})")

    rows = [[r["run"], r["target"], f"{r['float_return']:,.0f}",
             returned(r["post_training_return"], r["post_training_ratio"]), returned(r["qat_return"], r["qat_ratio"]),
             f"{r['fine_tuned_float_return']:,.0f}", returned(r["control_quantized_return"], r["control_ratio"]),
             f"{r['updates']:,}", f"{r['qat_seconds']:.0f}"] for r in results]
    print(markdown(HEADER, rows))
    write_report(args.out, "qat_actors.py", argv,
                 {"episodes": args.episodes, "targets": args.targets, "updates": args.updates,
                  "lr": args.lr or "the run's actor lr x 0.1", "collect": args.collect}, results, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
