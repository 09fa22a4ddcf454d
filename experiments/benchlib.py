"""Shared parts of the speed benchmarks (bench_update.py, bench_act.py, bench_train.py): the paper's
config and networks, built as a training run builds them; interleaved timing windows; the report (a
Markdown table, and JSON with the command line, the machine and the date)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Hashable
from pathlib import Path

# The checkout these scripts are in comes first, so that the code a report names (its commit) is the code that
# ran: `python experiments/x.py` would otherwise import whatever spikerl is installed (an editable install of
# another checkout, say).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import popsan_baseline  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from spikerl import job  # noqa: E402
from spikerl.analysis.report import markdown_table  # noqa: E402
from spikerl.config import RunConfig, compose, validate  # noqa: E402
from spikerl.job import build_components  # noqa: E402
from spikerl.rl.learners import Learner  # noqa: E402
from spikerl.rl.replay import Batch  # noqa: E402
from spikerl.runtime.precision import Precision  # noqa: E402
from spikerl.telemetry.provenance import code_version, host  # noqa: E402

OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah-v4's sizes, fixed here so that no environment is built
VARIANTS = ("ours", "compiled", "baseline", "mlp")  # (a), (a) with compile=true, (b), (c)
PAPER_SIZES = {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "actor": "PopSAN 256x256, population 10 in / 10 out, T=5",
               "critic": "two Q-networks 256x256"}


# -- the paper's setting ------------------------------------------------------------------------------------
def paper_config(*overrides: str, compiled: bool = False) -> RunConfig:
    """The checked config of the paper's HalfCheetah run (conf/env/halfcheetah.yaml, algo td3, actor
    popsan, critic mlp_ensemble) with `overrides`; logging and energy measurement off; the neuron kernels
    compiled only if `compiled`."""
    return validate(compose(["env=halfcheetah", "logger=none", "energy=none", f"compile={str(compiled).lower()}",
                             *overrides]))


def paper_networks(seed: int = 0, compiled: bool = False) -> tuple[dict[str, nn.Module], nn.Module]:
    """The actors at the paper's sizes, (a) ours as conf/actor/popsan.yaml builds it, with `compiled`
    also ours with `compile=true` (same weights), (b) the baseline with the same weights, (c) the
    MLP of conf/actor/mlp.yaml, and one critic (TD3's two Q-networks)."""
    torch.manual_seed(seed)
    ours, critic = build_components(paper_config(), OBS_DIM, ACT_DIM)
    networks = {"ours": ours}
    if compiled:
        networks["compiled"], _ = build_components(paper_config(compiled=True), OBS_DIM, ACT_DIM)
        networks["compiled"].load_state_dict(ours.state_dict())
    mlp, _ = build_components(paper_config("actor=mlp"), OBS_DIM, ACT_DIM)
    return {**networks, "baseline": popsan_baseline.baseline_from(ours), "mlp": mlp}, critic


def warm_compiled(precisions: tuple[str, ...] = ("fp32", "bf16"), batch: int = 100) -> None:
    """Compile the bptt kernels (shared by every compiled actor of this process) for batch 1 and a
    training batch, and the whole update's graphs (shared by every learner over networks of the same
    structure) and acting's graph in each precision, so that no timed window pays for compiling."""
    actor, critic = build_components(paper_config(compiled=True), OBS_DIM, ACT_DIM)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        actor(random_obs(1, gen))
    actor(random_obs(batch, gen)).sum().backward()
    for precision in precisions:
        learner = build_learner(paper_config(compiled=True), actor, critic, precision, compile=True)
        learner.update(random_batch(batch, gen)), learner.update(random_batch(batch, gen))
        learner.act(random_obs(1, gen))


def build_learner(rc: RunConfig, actor: nn.Module, critic: nn.Module, precision: str, compile: bool = False,
                  device: str = "cpu", compile_mode: str = "default") -> Learner:
    """The config's learner (TD3 for the paper) over copies of `actor` and `critic` (each learner trains
    its own) on `device`, as `spikerl.job.build_loop` builds it for one process; `compile` compiles the
    whole update, as `compile=true` does."""
    rc = dataclasses.replace(rc, compile=compile, compile_mode=compile_mode)
    return job.build_learner(rc, copy.deepcopy(actor).to(device), copy.deepcopy(critic).to(device), OBS_DIM, ACT_DIM,
                             Precision(precision, device))


def random_obs(size: int, gen: torch.Generator) -> torch.Tensor:
    """Normalised observations as the replay hands them out (z-scores clipped to +-3)."""
    return torch.randn(size, OBS_DIM, generator=gen).clamp(-3.0, 3.0)


def random_batch(size: int, gen: torch.Generator) -> Batch:
    """A replay batch of HalfCheetah's sizes: actions in [-1, 1], about 1% terminal transitions."""
    return Batch(
        obs=random_obs(size, gen), act=torch.rand(size, ACT_DIM, generator=gen) * 2 - 1,
        rew=torch.randn(size, generator=gen), next_obs=random_obs(size, gen),
        terminated=(torch.rand(size, generator=gen) < 0.01).float(),
    )


def check_equivalence(networks: dict[str, nn.Module], critic: nn.Module, sizes: list[int], seed: int = 0) -> None:
    """Stop the benchmark (exit 1) unless ours (and ours compiled, when timed) and the baseline give the
    same actions and actor-loss gradients in fp32 on random observations of each batch size: otherwise
    the timings compare different computations."""
    gen = torch.Generator().manual_seed(seed)
    batches = [random_obs(n, gen) for n in sizes]
    for variant in ("ours", "compiled"):
        if variant not in networks:
            continue
        problems = popsan_baseline.mismatches(networks[variant], networks["baseline"], critic, batches)
        if problems:
            print(f"equivalence check FAILED: {variant} and the baseline differ\n  " + "\n  ".join(problems[:20]),
                  file=sys.stderr)
            raise SystemExit(1)
        n_params = sum(1 for _ in networks[variant].parameters())
        print(f"equivalence check passed: {variant} and the baseline give the same actions and actor-loss "
              f"gradients ({n_params} parameters) at batch sizes {sizes}", file=sys.stderr)


# -- timing ---------------------------------------------------------------------------------------------------
def seconds_per_call(fn: Callable[[], object], calls: int, warmup: int) -> float:
    """Mean seconds of one `fn()` over `calls` calls, after `warmup` untimed ones (they re-warm the
    caches the previous variant has just used)."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def interleave(windows: dict[Hashable, Callable[[], object]], rounds: int, discard_first: bool = True,
               show: Callable[[object], str] = lambda s: f"{s * 1e3:.3g} ms") -> dict[Hashable, list]:
    """Run every variant's timing window once per round, in an order rotated by one each round, so that
    a slow spell of a shared machine hits all variants alike. Returns each variant's samples. With
    `discard_first`, a first untimed pass absorbs one-time costs (allocations, oneDNN kernel choice,
    optimizer state)."""
    keys = list(windows)
    if discard_first:
        for key in keys:
            windows[key]()
    samples: dict[Hashable, list] = {key: [] for key in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            samples[key].append(windows[key]())
            label = " ".join(map(str, key)) if isinstance(key, tuple) else key
            print(f"round {r + 1}/{rounds} {label}: {show(samples[key][-1])}", file=sys.stderr)
    return samples


def summarize(samples: dict[tuple[int, str, str], list[float]]) -> tuple[dict, list[dict]]:
    """Median seconds per unit of work keyed (batch, precision, variant), and the report's rows."""
    medians = {key: statistics.median(values) for key, values in samples.items()}
    rows = [{"batch_size": b, "precision": p, "variant": v, "median_seconds": medians[(b, p, v)],
             "samples_seconds": values} for (b, p, v), values in samples.items()]
    return medians, rows


class MatmulRecorder(TorchDispatchMode):
    """Records every matrix multiply torch runs inside the block (forward and backward): the op and
    each tensor argument's shape, stride and dtype, in order."""

    OPS = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
           torch.ops.aten.baddbmm.default)

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            self.calls.append((func, [(tuple(a.shape), tuple(a.stride()), a.dtype) if isinstance(a, torch.Tensor)
                                      else a for a in args], dict(kwargs or {})))
        return func(*args, **(kwargs or {}))


def matmul_floor(learner: Learner, batches: list[Batch]) -> Callable[[], None]:
    """Two TD3 updates' matrix multiplies alone (a critic-only update and one with the actor step), same
    shapes, strides, dtypes and order, on preallocated tensors: the work no implementation of the same
    networks can skip. Recorded on a copy of `learner`, so the learner itself is not stepped."""
    probe = copy.deepcopy(learner)
    with MatmulRecorder() as recorder:
        for batch in batches[:2]:
            probe.update(batch)
    calls = []
    for func, specs, kwargs in recorder.calls:
        args = [torch.empty_strided(s[0], s[1], dtype=s[2]).normal_() if isinstance(s, tuple) else s for s in specs]
        calls.append((func, args, kwargs))

    def replay() -> None:
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    return replay


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def comparisons(seconds: dict[tuple[int, str, str], float]) -> list[dict]:
    """From median seconds per unit of work keyed (batch, precision, variant), per batch and precision:
    ours' speedup over the baseline (t_baseline / t_ours), ours' time relative to the MLP
    (t_ours / t_mlp), and ours' bf16 throughput relative to fp32 (t_fp32 / t_bf16); None where a
    variant was not run."""
    rows = []
    for batch, precision in dict.fromkeys((b, p) for b, p, _ in seconds):
        ours, compiled = seconds.get((batch, precision, "ours")), seconds.get((batch, precision, "compiled"))
        baseline, mlp = seconds.get((batch, precision, "baseline")), seconds.get((batch, precision, "mlp"))
        rows.append({
            "batch_size": batch, "precision": precision,
            "speedup_vs_baseline": ratio(baseline, ours), "time_vs_mlp": ratio(ours, mlp),
            "compiled_speedup_vs_baseline": ratio(baseline, compiled), "compiled_time_vs_mlp": ratio(compiled, mlp),
            "bf16_throughput_vs_fp32": ratio(seconds.get((batch, "fp32", "ours")), ours)
            if precision == "bf16" else None,
            "time_vs_floor": ratio(ours, seconds.get((batch, precision, "floor"))),
            "compiled_time_vs_floor": ratio(compiled, seconds.get((batch, precision, "floor"))),
        })
    return rows


COMPARISON_HEADER = ["ours vs baseline (speedup)", "ours time / MLP", "compiled vs baseline (speedup)",
                     "compiled time / MLP", "ours bf16 vs fp32 (throughput)"]
COMPARISON_KEYS = ("speedup_vs_baseline", "time_vs_mlp", "compiled_speedup_vs_baseline", "compiled_time_vs_mlp",
                   "bf16_throughput_vs_fp32")


def comparison_cells(row: dict) -> list[str]:
    """A `comparisons` row as the table cells under COMPARISON_HEADER."""
    return [fmt(row[key], ".2f", "x") for key in COMPARISON_KEYS]


def comparison_table(medians: dict, compared: list[dict], header: list[str],
                     cells: Callable[[int, dict], list[str]]) -> str:
    """One row per batch size and precision: batch, precision, `cells(batch, median seconds by variant)`
    under `header`, then the comparisons."""
    rows = []
    for c in compared:
        seconds = {v: medians.get((c["batch_size"], c["precision"], v)) for v in VARIANTS}
        rows.append([c["batch_size"], c["precision"], *cells(c["batch_size"], seconds), *comparison_cells(c)])
    return markdown(["batch", "precision", *header, *COMPARISON_HEADER], rows)


# -- command line and report ----------------------------------------------------------------------------------
def add_common_options(parser: argparse.ArgumentParser, out: str,
                       precisions: tuple[str, ...] = ("fp32", "bf16")) -> None:
    """Options every benchmark has. Defaults left as None are filled by `resolve_defaults`."""
    parser.add_argument("--precisions", nargs="+", choices=precisions, help="default: fp32 bf16")
    parser.add_argument("--rounds", type=int, help="passes over all variants (the median is reported)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own default)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (tests)")
    parser.add_argument("--compiled", action=argparse.BooleanOptionalAction,
                        help="also time ours with compile=true (default: yes; --quick: no)")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"JSON report (default {out})")


def resolve_defaults(args: argparse.Namespace, full: dict, quick: dict) -> None:
    """Fill the options not given on the command line with the full defaults, or `--quick`'s."""
    for key, value in {**full, **(quick if args.quick else {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)


def bf16_speed_ratio(m: int, k: int, n: int, repeats: int = 7) -> float:
    """fp32 time / bf16 time of a forward and backward pass through two linear layers ([m, k] input,
    widths k -> n -> n) under CPU autocast, in interleaved pairs on this process's threads (median):
    above 1, bf16 is faster. A machine fact for the benchmark record (runs decide with the probe of
    their own update, spikerl.rl.learners.update_probe). Where bf16 is emulated (AVX2-only CPUs) it is
    10-60x slower, so the probe stops early once that is plain."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=generator)
    weights = [(torch.randn(k, n, generator=generator) / k**0.5).requires_grad_(),
               (torch.randn(n, n, generator=generator) / n**0.5).requires_grad_()]

    def seconds(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = torch.relu(x @ weights[0]) @ weights[1]
        out.float().sum().backward()
        return time.perf_counter() - start

    seconds(False), seconds(True)  # warm-up: first calls pick and build their kernels
    ratios = []
    for _ in range(repeats):
        ratios.append(seconds(False) / seconds(True))
        if len(ratios) >= 3 and max(ratios) < 0.25:
            break
    return statistics.median(ratios)


def machine() -> dict:
    """What the figures depend on (spikerl.telemetry.provenance.host: CPU model, torch's CPU capability,
    threads), and how bf16 matrix work runs here (two layers forward and backward)."""
    bf16_ratio = bf16_speed_ratio(500, 256, 256)
    return {**host(), "bf16_probe_speed_vs_fp32": round(bf16_ratio, 3), "bf16_native": bf16_ratio >= 1.0}


def fmt(value: float | None, spec: str = ".3g", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown(header: list[str], rows: list[list]) -> str:
    """Rows of cells under `header` as a Markdown table (spikerl.analysis.report's)."""
    return markdown_table([dict(zip(header, row)) for row in rows], header)


def write_report(path: Path, script: str, argv: list[str] | None, settings: dict, results: list[dict],
                 compared: list[dict]) -> None:
    """The JSON report: how it was made (command line, machine, date, settings), then the numbers."""
    meta = {
        "command": shlex.join(["python", f"experiments/{script}", *(sys.argv[1:] if argv is None else argv)]),
        "code": code_version(), "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "settings": settings,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": results, "comparisons": compared}, indent=2) + "\n")
    print(f"\nwrote {path}")
