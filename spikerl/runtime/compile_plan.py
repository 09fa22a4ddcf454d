"""`compile=auto`: compile only where the run's planned updates repay the compiling.

Compiling costs seconds before the first update (about 40 s on the project's AVX512 CPUs and 60 s on
AVX2 ones from an empty cache, docs/benchmarks.md; a few seconds with a warm one) and saves some
milliseconds on each update after it. A run with `compile=auto` compiles when

    planned updates x (eager - compiled seconds per update) > compile seconds

with the figures this machine measured for the same sizes in earlier runs: each run records, in
`<compile_cache>/spikerl-timings.json`, its steady seconds per update (compiled or eager) and, compiled,
its compile seconds, keyed by what they depend on (the machine's CPU and torch, the networks, the
algorithm, the batch, the precision asked for, ranks and threads). Each figure kept is the best of the
runs on record (the fastest update, the shortest compile), so that a run slowed by other work on the
machine cannot make later runs decide from its figures; and the first compile, from an empty cache, is
kept apart from the later ones, which load the graphs that run left in the same cache. Until both an
eager and a compiled run are on record, the figures missing are the project's defaults below, which
depend on the actor: compiling a spiking actor fuses its time steps (issue 21's AVX2 measurement), while
the MLP has nothing to fuse and no saving is assumed for it.
The acting's own savings are left out, so the rule leans to running eagerly. The decision and its
reason go into the run's summary (`compile`, `compile_reason`). A record that cannot be read or written
is ignored: it never stops a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

TIMINGS_FILE = "spikerl-timings.json"
# issue 21 (2-core AMD EPYC, AVX2, one thread): compiling took about 60 s from an empty cache and saved
# 5.6 ms per update in the 8,000-step loop ((124 - 96) s over 5,000 updates), so it paid from ~11,000 updates
DEFAULT_COMPILE_SECONDS = 60.0
DEFAULT_SAVED_SECONDS = 0.0056
# a non-spiking actor (the MLP): bench_proxy (Xeon AVX512, one thread, batch 256) measured its update slower
# compiled than eager (7.07 against 6.40 ms), so without this machine's own figures it runs eagerly
DENSE_SAVED_SECONDS = 0.0
MIN_RECORDED_UPDATES = 200  # fewer updates give no steady figure worth keeping


def planned_updates(train, world_size: int = 1) -> int:
    """Learner updates a rank runs in the whole run: `gradient_steps` every `update_every` of its env
    steps once `update_after` global steps are done."""
    steps = max(0, train.total_steps - train.update_after) // max(1, world_size)
    return steps // train.update_every * train.gradient_steps


def timing_key(rc, obs_dim: int, act_dim: int, world_size: int, threads: int) -> str:
    """What a run's compile time and update speed depend on, hashed."""
    from .machine import host

    machine = host()
    parts = {"cpu": machine["cpu"], "capability": machine["cpu_capability"], "torch": machine["torch"],
             "gpu": machine.get("gpu"), "device": rc.device, "actor": rc.actor, "neuron_backend": rc.neuron_backend,
             "critic": rc.critic, "algo": rc.algo, "batch": rc.train.batch_size, "precision": rc.precision.mode,
             "compile_mode": rc.compile_mode, "dims": [obs_dim, act_dim], "ranks": world_size, "threads": threads}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _path(cache: str | None) -> Path | None:
    return None if cache is None else Path(os.path.expanduser(cache)) / TIMINGS_FILE


def load(cache: str | None) -> dict:
    path = _path(cache)
    try:
        records = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        return records if isinstance(records, dict) else {}
    except (OSError, ValueError):
        return {}


@dataclasses.dataclass(frozen=True)
class Decision:
    compile: bool
    reason: str


def default_saving(spiking: bool) -> float:
    """Seconds compiling saves per update where this machine has not measured it, by the actor's kind."""
    return DEFAULT_SAVED_SECONDS if spiking else DENSE_SAVED_SECONDS


def decide(planned: int, record: dict | None, spiking: bool = True) -> Decision:
    """Whether `planned` updates repay compiling, from this machine's `record` for these sizes (or the
    defaults for what it lacks, for a spiking actor or not)."""
    record = record or {}
    eager, compiled = record.get("eager_update_seconds"), record.get("compiled_update_seconds")
    # a compiled run on record left its graphs in this cache: the next compile loads them (the warm figure)
    cost = record.get("warm_compile_seconds", record.get("compile_seconds"))
    measured = eager is not None and compiled is not None
    saved = eager - compiled if measured else default_saving(spiking)
    cost = DEFAULT_COMPILE_SECONDS if cost is None else cost
    gain = planned * saved
    source = "as measured here before" if measured and "compile_seconds" in record else (
        "the project's figures for what this machine has not measured yet (docs/benchmarks.md)")
    verdict = "compiling" if gain > cost else "running eagerly"
    return Decision(gain > cost, f"compile=auto: {verdict}: {planned:,} planned updates x {saved * 1e3:.2f} ms saved "
                                 f"= {gain:.0f} s against {cost:.0f} s compiling, {source}")


def with_compile(rc, flag: bool):
    """The run's config with `compile` decided: `flag`."""
    return dataclasses.replace(rc, compile=flag)


def payoff(record: dict | None, summary: dict, spiking: bool = True) -> str | None:
    """Whether a compiled run's compiling paid off: its updates x the seconds compiling saved each (the
    eager figure this machine measured before, else the project's default saving for the actor's kind)
    against its compile seconds; None for an eager run or one without a steady rate."""
    rate = summary.get("steady_updates_per_second")
    if not summary.get("compile") or not rate:
        return None
    compiled, eager = 1.0 / rate, (record or {}).get("eager_update_seconds")
    saved_each, source = (eager - compiled, "eager as measured here before") if eager is not None else (
        default_saving(spiking), "the project's default saving per update")
    updates, cost = summary.get("updates", 0), float(summary.get("compile_seconds", 0.0))
    verdict = "paid off" if updates * saved_each > cost else "did not pay off"
    return (f"{verdict}: {updates * saved_each:.0f} s saved over {updates:,} updates against {cost:.0f} s "
            f"compiling ({source})")


def record(cache: str | None, key: str, summary: dict, compiled: bool) -> None:
    """Keep this run's steady seconds per update (and, compiled, its compile seconds) for later decisions."""
    path = _path(cache)
    updates, rate = summary.get("updates", 0), summary.get("steady_updates_per_second", 0.0)
    if path is None or updates < MIN_RECORDED_UPDATES or not rate or (compiled and summary.get("compile_failed")):
        return  # a compiled run that ran some of it eagerly is neither figure
    records = load(cache)
    entry = dict(records.get(key) or {})
    name = "compiled_update_seconds" if compiled else "eager_update_seconds"
    entry[name] = min(1.0 / rate, entry.get(name, float("inf")))  # the best run: load only ever slows one
    if compiled:
        seconds = float(summary.get("compile_seconds", 0.0))
        if "compile_seconds" not in entry:
            entry["compile_seconds"] = seconds  # the first compile, from an empty cache
        else:
            entry["warm_compile_seconds"] = min(seconds, entry.get("warm_compile_seconds", float("inf")))
    records[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(records, f, indent=1)
        os.replace(f.name, path)
    except OSError:
        pass  # a cache folder that cannot be written only means the next run decides from defaults
