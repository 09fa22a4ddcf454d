"""Compile time per graph: what `compile=true` costs a run before its first compiled update pays back, graph
by graph, from an empty compile cache and from a warm one, and where Inductor spends it.

    python experiments/bench_compile.py                                  # popsan fp32 and bf16, td3, ilcsan
    taskset -c 0 python experiments/bench_compile.py --threads 1 --compile-threads 1
    python experiments/bench_compile.py --presets popsan --precisions fp32 --env TORCHINDUCTOR_CPP_WRAPPER=1

A run compiles three graphs (spikerl.rl.learners.base): acting (the actor at batch 1, its batch dimension
symbolic), the critic's step (forward and backward) and the actor's step (forward and backward); the
target networks are inside the critic's step. Each (preset, precision) runs in two fresh processes over
one fresh cache folder (TORCHINDUCTOR_CACHE_DIR): `cold` compiles everything, `warm` loads what the cold
process left. Per graph, its first call's seconds less a steady call's, and the phases from torch's own
compile-time instrumentation (`torch._dynamo.utils.compilation_time_metrics`): dynamo's tracing, AOT
autograd's joint graph, Inductor's lowering and scheduling, the C++ builds of its kernels (and how many)
and loading the built modules; a phase can be nested in another, so the phases do not add up to the total.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import readme_tables

# Inductor's and dynamo's own timers, as compilation_time_metrics names them (torch 2.13)
PHASES = {"dynamo trace": "bytecode_tracing", "AOT joint graph": "aot_trace_joint_graph",
          "Inductor lowering": "GraphLowering.run", "Inductor scheduling": "Scheduler.__init__",
          "C++ builds": "compile_file", "module loads": "PyCodeCache.load_by_key_path"}
CACHE_COUNTERS = ("fxgraph_cache_hit", "fxgraph_cache_miss")


def child(preset: str, precision: str, threads: int | None) -> dict:
    """In this process: build the learner, call each graph once (timed, with the phases), then once more."""
    import torch
    from torch._dynamo.utils import compilation_time_metrics, counters

    if threads:
        torch.set_num_threads(threads)
    rc = benchlib.paper_config(f"experiment={preset}", compiled=True)
    torch.manual_seed(0)
    actor, critic = benchlib.build_components(rc, benchlib.OBS_DIM, benchlib.ACT_DIM)
    learner = benchlib.build_learner(rc, actor, critic, precision, compile=True)
    gen = torch.Generator().manual_seed(0)
    batch = rc.train.batch_size
    act = lambda: learner.act(benchlib.random_obs(1, gen))  # noqa: E731
    update = lambda: learner.update(benchlib.random_batch(batch, gen))  # noqa: E731
    # TD3 steps the actor on every second update (policy_delay 2): update 1 builds the critic's step, update 2
    # the actor's; an algorithm that steps both on every update builds both in update 1.
    two = getattr(learner, "policy_delay", 1) == 2
    names = ["acting", *(["critic step", "actor step"] if two else ["critic and actor steps"])]
    calls = [act, update, *([update] if two else [])]

    def snapshot() -> dict:
        phases = {name: sum(compilation_time_metrics.get(key, ())) for name, key in PHASES.items()}
        return {**phases, "C++ files": len(compilation_time_metrics.get("compile_file", ())),
                **{k: counters["inductor"][k] for k in CACHE_COUNTERS}}

    firsts = []
    for call in calls:
        before, start = snapshot(), time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        firsts.append((seconds, {k: v - before[k] for k, v in snapshot().items()}))
    graphs = {}
    for name, call, (first, phases) in zip(names, calls, firsts):  # the same calls again, all compiled now
        start = time.perf_counter()
        call()
        steady = time.perf_counter() - start
        graphs[name] = {"first_call_seconds": first, "steady_call_seconds": steady,
                        "compile_seconds": max(first - steady, 0.0), **phases}
    return graphs


def measure(preset: str, precision: str, args: argparse.Namespace, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    if args.compile_threads:
        env["TORCHINDUCTOR_COMPILE_THREADS"] = str(args.compile_threads)
    env.update(item.split("=", 1) for item in args.env)
    threads = ["--threads", str(args.threads)] if args.threads else []
    cmd = [sys.executable, __file__, "--child", preset, precision, *threads]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{preset} {precision}: the measuring process failed:\n{proc.stderr[-2000:]}")
    return {"process_seconds": time.perf_counter() - start, "graphs": json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["popsan", "td3", "ilcsan"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                        help="popsan's precisions (the other presets: fp32)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads in the measuring processes")
    parser.add_argument("--compile-threads", type=int,
                        help="Inductor's parallel C++ builds (TORCHINDUCTOR_COMPILE_THREADS; default: torch's, "
                             "the usable cores)")
    parser.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="environment of the measuring processes, e.g. an Inductor setting "
                             "(TORCHINDUCTOR_CPP_WRAPPER=1)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_compile.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    if args.child:
        print(json.dumps(child(*args.child, args.threads)))
        return
    jobs = [(p, q) for p in args.presets for q in (args.precisions if p == "popsan" else ["fp32"])]
    results = []
    for preset, precision in jobs:
        with tempfile.TemporaryDirectory(prefix="bench_compile_") as cache:
            for state in ("cold", "warm"):
                results.append({"preset": preset, "precision": precision, "cache": state,
                                **measure(preset, precision, args, cache)})
                print(f"{preset} {precision} {state}: "
                      f"{sum(g['compile_seconds'] for g in results[-1]['graphs'].values()):.1f} s", file=sys.stderr)
    settings = {"presets": args.presets, "precisions": args.precisions, "threads": args.threads,
                "compile_threads": args.compile_threads, "env": args.env,
                "phases": PHASES}
    benchlib.write_report(args.out, "bench_compile.py", argv, settings, results, [])
    print(readme_tables.compile_table(json.loads(args.out.read_text())))

if __name__ == "__main__":
    main()
