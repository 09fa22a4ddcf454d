"""`compile=auto` (spikerl.runtime.compile_plan): the planned updates, the rule against this machine's
recorded timings or the defaults, the record each run leaves, and a run that decides and says why."""

import json
import re

import pytest

from spikerl.config import ConfigError, compose, validate
from spikerl.runtime import compile_plan
from spikerl.runtime.compile_plan import DEFAULT_COMPILE_SECONDS, DEFAULT_SAVED_SECONDS, decide, planned_updates


def train(**changes):
    return validate(compose([f"train.{k}={v}" for k, v in changes.items()])).train


def test_planned_updates_follow_the_schedule():
    # 25,000 steps, updates from step 1,000: 24,000 steps / update_every 50 = 480 rounds x 50 gradient steps
    assert planned_updates(train(total_steps=25000, update_after=1000, update_every=50, gradient_steps=50)) == 24000
    # two ranks share the global steps: each runs half the rounds
    assert planned_updates(train(total_steps=25000, update_after=1000, update_every=50, gradient_steps=50), 2) == 12000
    assert planned_updates(train(total_steps=500, update_after=1000)) == 0


def test_without_a_record_the_defaults_decide():
    break_even = DEFAULT_COMPILE_SECONDS / DEFAULT_SAVED_SECONDS  # about 10,700 updates
    short, long = decide(int(break_even) - 100, None), decide(int(break_even) + 100, None)
    assert not short.compile and long.compile
    assert "running eagerly" in short.reason and "the project's figures" in long.reason


def test_this_machines_timings_decide_where_recorded():
    # eager 20 ms, compiled 12 ms per update: 8 ms saved; a warm cache compiles in 5 s: pays from 625 updates
    record = {"eager_update_seconds": 0.020, "compiled_update_seconds": 0.012, "compile_seconds": 5.0}
    assert decide(700, record).compile and not decide(600, record).compile
    assert "as measured here before" in decide(700, record).reason and "8.00 ms saved" in decide(700, record).reason
    # compiled no faster than eager here: never compile
    assert not decide(10**7, {**record, "compiled_update_seconds": 0.021}).compile


def test_the_record_keeps_each_kind_of_run_and_ignores_what_it_cannot_use(tmp_path):
    cache = str(tmp_path / "cache")
    compile_plan.record(cache, "k", {"updates": 1000, "steady_updates_per_second": 50.0}, compiled=False)
    compile_plan.record(cache, "k", {"updates": 1000, "steady_updates_per_second": 80.0, "compile_seconds": 42.0},
                        compiled=True)
    compile_plan.record(cache, "k", {"updates": 10, "steady_updates_per_second": 1.0}, compiled=False)  # too few
    assert compile_plan.load(cache) == {"k": {"eager_update_seconds": 0.02, "compiled_update_seconds": 0.0125,
                                              "compile_seconds": 42.0}}
    (tmp_path / "cache" / compile_plan.TIMINGS_FILE).write_text("{not json")
    assert compile_plan.load(cache) == {}  # a damaged record is ignored, never an error
    compile_plan.record("/proc/spikerl-cache", "k", {"updates": 1000, "steady_updates_per_second": 50.0}, True)


def test_a_run_slowed_by_other_work_cannot_poison_later_decisions(tmp_path):
    """The record keeps each figure's best run: a compiled run on a busy machine (0.033 s an update, a
    294 s compile) once made every later run of those sizes run eagerly. A later compile, which loads
    the graphs the first left in the cache, is kept apart as the warm figure the next decision uses."""
    cache = str(tmp_path / "cache")
    quiet = {"updates": 1000, "steady_updates_per_second": 80.0, "compile_seconds": 60.0}
    busy = {"updates": 1000, "steady_updates_per_second": 30.0, "compile_seconds": 294.0}
    compile_plan.record(cache, "k", {"updates": 1000, "steady_updates_per_second": 50.0}, compiled=False)
    compile_plan.record(cache, "k", quiet, compiled=True)
    compile_plan.record(cache, "k", busy, compiled=True)
    compile_plan.record(cache, "k", {**quiet, "compile_seconds": 6.0}, compiled=True)  # warm: graphs from the cache
    entry = compile_plan.load(cache)["k"]
    assert entry == {"eager_update_seconds": 0.02, "compiled_update_seconds": 0.0125, "compile_seconds": 60.0,
                     "warm_compile_seconds": 6.0}
    assert decide(1000, entry).compile and "against 6 s compiling" in decide(1000, entry).reason  # 7.5 s saved


def test_the_summary_says_whether_compiling_paid_off():
    record = {"eager_update_seconds": 0.02}
    paid = compile_plan.payoff(record, {"compile": True, "updates": 10_000, "steady_updates_per_second": 80.0,
                                        "compile_seconds": 40.0})
    assert paid.startswith("paid off: 75 s saved over 10,000 updates against 40 s compiling")
    lost = compile_plan.payoff(None, {"compile": True, "updates": 1_000, "steady_updates_per_second": 80.0,
                                      "compile_seconds": 40.0})
    assert lost.startswith("did not pay off: 6 s saved") and "default saving" in lost
    assert compile_plan.payoff(record, {"compile": False, "steady_updates_per_second": 80.0}) is None


def test_compile_auto_is_the_default_and_other_values_are_refused():
    assert validate(compose([])).compile == "auto"
    with pytest.raises(ConfigError, match="compile must be true, false or auto, got 'sometimes'"):
        validate(compose(["compile=sometimes"]))


def test_a_short_auto_run_runs_eagerly_says_why_and_records_its_speed(tiny_run, tmp_path):
    cache = tmp_path / "cache"
    summary, _ = tiny_run("compile=auto", f"compile_cache={cache}", "train.update_every=10")  # 40 rounds x 10
    assert summary["compile"] is False and summary["compile_seconds"] == 0.0
    assert summary["compile_reason"].startswith("compile=auto: running eagerly: 400 planned updates")
    (entry,) = json.loads((cache / compile_plan.TIMINGS_FILE).read_text()).values()
    assert entry == {"eager_update_seconds": pytest.approx(1 / summary["steady_updates_per_second"])}
    summary, _ = tiny_run("compile=false", f"compile_cache={cache}", name="explicit")
    assert summary["compile"] is False and summary["compile_reason"] == "as configured"


def test_a_compiled_run_that_fell_back_to_eager_says_what_and_records_no_figure(tiny_run, tmp_path, monkeypatch):
    """A run asked to compile whose compiling fails runs on eagerly: its summary names each function that
    ran so and why, its printed summary says so, and its speed is neither a compiled nor an eager figure."""
    import torch
    from torch._inductor.exc import CppCompileError

    from spikerl.job import format_summary
    from spikerl.snn import through_time

    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise CppCompileError(["g++"], "g++: not found")
        return run

    monkeypatch.setattr(through_time, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="it runs eagerly"):
        summary, run_dir = tiny_run("compile=true", f"compile_cache={cache}")
    assert summary["compile"] is True  # what was asked; what ran eagerly (the actor's kernels, then, too):
    failed = dict(item.split(" (", 1) for item in summary["compile_failed"].split("; "))
    assert set(failed) == {"policy_action", "critic_loss", "actor_loss", "the forward kernel", "the backward kernel"}
    assert all(why.startswith("CppCompileError") for why in failed.values())
    assert json.loads((run_dir / "summary.json").read_text())["compile_failed"] == summary["compile_failed"]
    assert re.search(r"ran eagerly +compiling failed: .*policy_action \(CppCompileError", format_summary(summary))
    assert not (cache / compile_plan.TIMINGS_FILE).exists()


def test_without_a_record_the_mlp_runs_eagerly_and_its_payoff_uses_no_default_saving():
    """The MLP has no time steps to fuse: its update measured slower compiled (bench_proxy), so the default
    figures never compile it, however long the run; this machine's own figures still decide once recorded."""
    assert decide(10**7, None).compile and not decide(10**7, None, spiking=False).compile
    assert "0.00 ms saved" in decide(10**7, None, spiking=False).reason
    record = {"eager_update_seconds": 0.020, "compiled_update_seconds": 0.012, "compile_seconds": 5.0}
    assert decide(700, record, spiking=False).compile
    summary = {"compile": True, "updates": 10_000, "steady_updates_per_second": 80.0, "compile_seconds": 40.0}
    assert compile_plan.payoff(None, summary, spiking=False).startswith("did not pay off: 0 s saved")


def test_the_run_plans_by_its_actors_kind():
    from spikerl.job import plan_compile

    for preset, compiles in (("popsan", True), ("td3", False)):
        rc = validate(compose([f"experiment={preset}", "compile=auto", "train.total_steps=1000000",
                               "compile_cache=null"]))
        planned, _, reason = plan_compile(rc, 1)
        assert planned.compile is compiles, reason
