"""Threads against a busy machine: the default run (`python -m spikerl.run`, eager) on one core with one
torch thread (a single CPU run's default), and on every core with one thread each, each on a
quiet machine and with another process busy on one of the cores (a CPU hog pinned there, as another
job or a test run would be). Reports steady env steps and updates per second and the wall time, from
the runs' own summaries, and writes JSON with the command and the machine.

    python experiments/bench_threads.py [--steps 4000] [--rounds 1] [--kernels native|avx2]
                                        [--out experiments/results/bench_threads.json]

`--kernels avx2` holds the runs' torch and oneDNN kernels to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA):
an AVX2 machine's kernels on this machine's cores, clocks and caches, where no AVX2 machine is at hand.

The question it answers: does a run that takes every core collapse when another process shares one of
them (its threads wait on each other at every parallel region), and by how much against one thread?
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import write_report  # noqa: E402

VARIANTS = {  # name: (cores the run may use, whether a hog runs on the last core)
    "1 thread, quiet": ("0", False),
    "all cores, quiet": (None, False),
    "1 thread, busy core beside": ("0", True),
    "all cores, one busy": (None, True),
}


# what `--kernels avx2` sets for the runs: torch's own kernels, and oneDNN's (matrix multiplies)
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def run_once(cores: str | None, busy: bool, steps: int, folder: Path, kernels: dict) -> dict:
    all_cores = sorted(os.sched_getaffinity(0))
    hog = None
    if busy:  # another process keeps the last core busy for the whole run
        hog = subprocess.Popen(["taskset", "-c", str(all_cores[-1]), sys.executable, "-c", "while True: pass"])
    try:
        pin = ["taskset", "-c", cores] if cores is not None else []
        # every core: a thread on each (what a single run took by default before it took one, and what
        # OMP_NUM_THREADS asks for now)
        env = {**os.environ, **kernels}
        if cores is None:
            env["OMP_NUM_THREADS"] = str(len(all_cores))
        cmd = [*pin, sys.executable, "-m", "spikerl.run", f"train.total_steps={steps}", "train.start_steps=1000",
               "train.update_after=1000", f"train.eval_every={steps}", "train.eval_episodes=2", "train.progress=false",
               "compile=false", "logger=none", "energy=none", f"hydra.run.dir={folder}"]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600, env=env)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    summary = json.loads((folder / "summary.json").read_text())
    return {"wall_seconds": summary["wall_seconds"], "threads": summary["machine_threads"],
            "cpu_capability": summary["machine_cpu_capability"],
            "steady_env_steps_per_second": summary["steady_env_steps_per_second"],
            "steady_updates_per_second": summary["steady_updates_per_second"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="env steps per run (default 4000, 1000 random)")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the variants, interleaved")
    parser.add_argument("--kernels", choices=("native", "avx2"), default="native",
                        help="avx2: the runs' kernels held to AVX2 (an AVX2 machine's, on these cores)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_threads.json"))
    args = parser.parse_args(argv)
    kernels = AVX2_KERNELS if args.kernels == "avx2" else {}
    results = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, (cores, busy) in VARIANTS.items():
                results[name].append(run_once(cores, busy, args.steps, Path(tmp) / f"{r}_{len(results[name])}_{cores}"
                                                                                     f"_{busy}", kernels))
    rows = []
    base = max(x["steady_updates_per_second"] for x in results["1 thread, quiet"])  # the best of each, as below
    for name, runs in results.items():
        best = max(runs, key=lambda x: x["steady_updates_per_second"])
        rows.append({"variant": name, "threads": best["threads"], "cpu_capability": best["cpu_capability"],
                     "wall_seconds": round(best["wall_seconds"], 1),
                     "steady_env_steps_per_second": round(best["steady_env_steps_per_second"], 1),
                     "steady_updates_per_second": round(best["steady_updates_per_second"], 1),
                     "vs_one_thread_quiet": round(best["steady_updates_per_second"] / base, 2)})
    print("| variant | torch threads | wall s | steady env steps/s | steady updates/s | vs 1 thread, quiet |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['threads']} | {r['wall_seconds']} | {r['steady_env_steps_per_second']} | "
              f"{r['steady_updates_per_second']} | {r['vs_one_thread_quiet']}x |")
    settings = {"steps": args.steps, "rounds": args.rounds, "kernels": args.kernels,
                **({"kernel_env": kernels} if kernels else {})}
    write_report(args.out, "bench_threads.py", argv, settings, rows, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
