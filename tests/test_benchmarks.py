"""The speed benchmarks (experiments/bench_*.py): the PopSAN-style baseline computes what our actor
computes, the equivalence check can fail, and every script runs and writes its report."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY
from spikerl.rl.networks import QEnsemble
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))  # the scripts import each other as top-level modules
popsan_baseline = importlib.import_module("popsan_baseline")
benchlib = importlib.import_module("benchlib")

BATCH_SIZES = (1, 7, 64)


@pytest.fixture
def pair():
    """A small actor of ours, the baseline built from it, and a critic."""
    torch.manual_seed(0)
    ours = PopSpikingActor(5, 2, encoder=PopulationEncoder, hidden_sizes=(32, 32))
    return ours, popsan_baseline.baseline_from(ours), QEnsemble(5, 2, hidden_sizes=(32, 32))


def observations() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 5, generator=gen) * 1.5).clamp(-3, 3) for n in BATCH_SIZES]


def test_baseline_gives_our_actions_and_actor_loss_gradients(pair):
    ours, baseline, critic = pair
    assert isinstance(baseline, popsan_baseline.PopSANBaseline)
    for obs in observations():
        act_ours, grads_ours = popsan_baseline.actions_and_gradients(ours, critic, obs)
        act_base, grads_base = popsan_baseline.actions_and_gradients(baseline, critic, obs)
        torch.testing.assert_close(act_base, act_ours, rtol=1e-5, atol=1e-6)
        assert grads_base.keys() == grads_ours.keys() == dict(ours.named_parameters()).keys()
        for name, grad in grads_ours.items():
            scale = grad.abs().max().item()
            assert scale > 0, f"{name} has no gradient: the comparison would prove nothing"
            torch.testing.assert_close(grads_base[name], grad, rtol=1e-5, atol=1e-5 * scale, msg=name)


def test_equivalence_check_reports_a_changed_weight(pair):
    ours, baseline, critic = pair
    assert popsan_baseline.mismatches(ours, baseline, critic, observations()) == []
    # a weight that matters: the decoder's, from the output neuron that fires most (a silent one's is inert)
    rates = ours.snn(ours.encoder(observations()[-1], ours.timesteps)).mean((0, 1)).view(baseline.decoder.weight.shape)
    with torch.no_grad():
        baseline.decoder.weight.view(-1)[rates.argmax()] += 0.5
    problems = popsan_baseline.mismatches(ours, baseline, critic, observations())
    assert any("actions" in p for p in problems) and any("gradient of decoder.bias" in p for p in problems)


def test_equivalence_check_reports_a_gradient_only_difference(pair):
    ours, baseline, critic = pair
    baseline.half_width = 0.25  # the same spikes, a narrower surrogate window
    problems = popsan_baseline.mismatches(ours, baseline, critic, observations())
    assert problems and not any("actions" in p for p in problems)


def test_benchmarks_stop_before_timing_when_the_baseline_differs(capsys):
    networks, critic = benchlib.paper_networks()
    benchlib.check_equivalence(networks, critic, [4])
    with torch.no_grad():
        networks["baseline"].snn.linears[0].weight.mul_(1.5)
    with pytest.raises(SystemExit) as stop:
        benchlib.check_equivalence(networks, critic, [4])
    assert stop.value.code == 1 and "equivalence check FAILED" in capsys.readouterr().err


@pytest.mark.parametrize("script, rate", [
    ("bench_update.py", "updates_per_second"),
    ("bench_act.py", "actions_per_second"),
    ("bench_train.py", "env_steps_per_second"),
])
def test_quick_run_writes_its_report(script, rate, tmp_path):
    out = tmp_path / "report.json"
    cmd = [sys.executable, f"experiments/{script}", "--quick", "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report.keys() == {"meta", "results", "comparisons"}
    assert report["meta"]["command"].startswith(f"python experiments/{script} --quick")
    assert {"platform", "cpu", "torch", "threads"} <= report["meta"]["machine"].keys()
    assert report["meta"]["machine"]["threads"] == 1 and report["meta"]["date"]
    assert {r["variant"] for r in report["results"]} >= {"ours", "baseline"}
    assert all(r[rate] > 0 and r["precision"] in ("fp32", "bf16") for r in report["results"])
    assert all(c["speedup_vs_baseline"] > 0 for c in report["comparisons"])
    assert "| ours" in proc.stdout or "| fp32 | ours |" in proc.stdout


@pytest.mark.parametrize("family,variants,batch", [("proxytarget", {"vanilla", "proxy", "proxy-k1", "ann"}, 256),
                                                  ("popsan", {"vanilla", "proxy", "proxy-k1"}, 100)])
def test_bench_proxy_times_each_familys_presets_at_their_batch(tmp_path, family, variants, batch):
    out = tmp_path / "proxy.json"
    cmd = [sys.executable, "experiments/bench_proxy.py", "--quick", "--threads", "1", "--family", family,
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["results"]}
    assert rows.keys() == variants and rows["vanilla"]["time_vs_vanilla"] == 1.0
    assert all(r["updates_per_second"] > 0 for r in rows.values())
    assert report["meta"]["settings"]["batch"] == batch and report["meta"]["settings"]["family"] == family
    assert report["meta"]["command"].startswith("python experiments/bench_proxy.py --quick")


def test_bench_actors_writes_its_report_and_says_when_the_published_code_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("SPIKERL_ILCSAN_REPO", raising=False)
    out = tmp_path / "actors.json"
    cmd = [sys.executable, "experiments/bench_actors.py", "--presets", "ilcsan", "--rounds", "1", "--calls", "1",
           "--threads", "1", "--no-compiled", "--ilcsan-repo", "", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["variant"] for r in report["results"]] == ["ours"] and report["results"][0]["passes_per_second"] > 0
    assert report["meta"]["settings"]["notes"] == ["ilcsan: no published code given (--ilcsan-repo), timed without it"]


@pytest.mark.skipif(not os.environ.get("SPIKERL_ILCSAN_REPO"), reason="set SPIKERL_ILCSAN_REPO to a checkout of "
                    "lucifer2859/ILC-SAN")
def test_bench_actors_stops_before_timing_when_the_published_actor_differs(monkeypatch, capsys):
    bench_actors = importlib.import_module("bench_actors")
    ours = bench_actors.our_actor("ilcsan")
    published, forward, pairs = bench_actors.published_actor("ilcsan", os.environ["SPIKERL_ILCSAN_REPO"], ours)
    obs, probe = torch.randn(8, bench_actors.OBS), torch.randn(8, bench_actors.ACT)
    bench_actors.check("ilcsan", ours, published, forward, pairs, obs, probe)
    with torch.no_grad():
        published.snn.conn.bias.add_(0.5)
    with pytest.raises(SystemExit) as stop:
        bench_actors.check("ilcsan", ours, published, forward, pairs, obs, probe)
    assert stop.value.code == 1 and "equivalence check FAILED" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_compile_times_each_graph_cold_then_loads_them_from_the_cache(tmp_path):
    out = tmp_path / "compile.json"
    cmd = [sys.executable, "experiments/bench_compile.py", "--presets", "td3", "--threads", "1",
           "--compile-threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cold, warm = json.loads(out.read_text())["results"]
    assert (cold["cache"], warm["cache"]) == ("cold", "warm")
    assert list(cold["graphs"]) == ["acting", "critic step", "actor step"]
    for graph in ("critic step", "actor step"):  # forward and backward each: two Inductor graphs
        assert cold["graphs"][graph]["fxgraph_cache_miss"] == 2 and cold["graphs"][graph]["C++ files"] > 0
        assert warm["graphs"][graph]["fxgraph_cache_hit"] == 2 and warm["graphs"][graph]["C++ files"] == 0
    assert sum(g["compile_seconds"] for g in warm["graphs"].values()) < \
        sum(g["compile_seconds"] for g in cold["graphs"].values())


@pytest.mark.slow
def test_bench_allreduce_times_the_gradients_of_the_paper_networks(tmp_path):
    out = tmp_path / "allreduce.json"
    proc = subprocess.run([sys.executable, "experiments/bench_allreduce.py", "--calls", "5", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    actor, critic = benchlib.build_components(benchlib.paper_config(), benchlib.OBS_DIM, benchlib.ACT_DIM)
    elements = {"critic": sum(p.numel() for p in critic.parameters()),
                "actor": sum(p.numel() for p in actor.parameters() if p.requires_grad)}
    assert [(r["gradients"], r["pinned"]) for r in results] == [
        ("critic", False), ("critic", True), ("actor", False), ("actor", True)]
    assert all(r["elements"] == elements[r["gradients"]] and r["median_seconds"] > 0 for r in results)


@pytest.mark.slow
def test_bench_ranks_splits_two_ranks_time_into_the_update_and_gradient_mean(tmp_path):
    out = tmp_path / "ranks.json"
    proc = subprocess.run([sys.executable, "experiments/bench_ranks.py", "--updates", "5", "--rounds", "1", "--eager",
                           "--only", "solo", "flat", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["meta"]["settings"]["compile"] is False
    results = {(r["variant"], r["pinned"]): r for r in report["results"]}
    assert set(results) == {("solo", False), ("solo", True), ("flat", False), ("flat", True)}
    for (variant, _), r in results.items():
        assert r["median_seconds"] > 0
        if variant == "flat":  # the ranks did all-reduce, and that took part of each iteration
            assert 0 < r["median_sync_seconds"] < r["median_seconds"]
        else:
            assert r["median_sync_seconds"] is None


def test_bench_ranks_refuses_too_few_updates_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "experiments/bench_ranks.py", "--updates", "4",
                           "--out", str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "need --updates of at least 5" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r.json").exists()


FAKE_PUBLISHED_LOOP = '''
class SpikeActorDeepCritic:
    pass


def spike_td3(env_fn, steps_per_epoch, epochs, start_steps, update_after, **kwargs):
    """Stands in for the published loop: steps its env and prints its evaluation line as the loop does."""
    env = env_fn()
    env.reset()
    for _ in range(steps_per_epoch * epochs):
        env.step(env.action_space.sample())
    print(f"Steps: {steps_per_epoch * epochs} Mean Reward: {start_steps + update_after}")
'''


def fake_published_repo(root: Path) -> Path:
    package = root / "popsan_drl" / "popsan_td3"
    package.mkdir(parents=True)
    (package / "td3_cuda_norm.py").write_text(FAKE_PUBLISHED_LOOP)
    return root


@pytest.mark.parametrize("args, message", [
    (["--steps", "100", "--start", "100"], "need 0 < --start < --steps"),
    (["--variants", "warm"], "give cold too"),
])
def test_bench_loop_refuses_bad_options_in_one_line(tmp_path, args, message):
    out = tmp_path / "loop.json"
    proc = subprocess.run([sys.executable, "experiments/bench_loop.py", "--repo", str(fake_published_repo(tmp_path)),
                           "--out", str(out), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and not out.exists()
    proc = subprocess.run([sys.executable, "experiments/bench_loop.py", "--repo", str(tmp_path / "none")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a checkout of pop-spiking-deep-rl" in proc.stderr


@pytest.mark.slow
def test_bench_loop_times_whole_processes_against_the_published_loop(tmp_path):
    out = tmp_path / "loop.json"
    cmd = [sys.executable, "experiments/bench_loop.py", "--repo", str(fake_published_repo(tmp_path / "repo")),
           "--steps", "300", "--start", "200", "--variants", "published", "eager", "default", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    published, eager, default = report["results"]
    assert published["return"] == 400.0  # the fake loop's line, read from published_popsan.py's CSV
    assert "compile" not in published  # no summary: only the process's times
    # ours: its summary's split, and compile=auto runs eagerly for 100 updates on an empty record
    assert (eager["compile"], default["compile"]) == (False, False)
    assert default["compile_reason"].startswith("compile=auto: ")
    assert eager["steady_updates_per_second"] > 0 and eager["eval_seconds"] > 0
    for row in report["results"]:
        assert row["wall_seconds"] > 0 and 0 < row["cpu_seconds"] < 2 * row["wall_seconds"]
    speedups = {c["variant"]: c["speedup_vs_published"] for c in report["comparisons"]}
    assert speedups["published"] == 1.0
    assert speedups["eager"] == pytest.approx(published["wall_seconds"] / eager["wall_seconds"])
    assert "| published PopSAN loop |" in proc.stdout and "| ours, compile=false |" in proc.stdout


@pytest.mark.slow
def test_bench_first_run_times_the_default_command_over_an_empty_then_a_warm_cache(tmp_path):
    out = tmp_path / "first.json"
    proc = subprocess.run([sys.executable, "experiments/bench_first_run.py", "--out", str(out), "--", *TINY],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["variant"] for r in report["results"]] == ["empty cache", "warm cache"]
    for row in report["results"]:  # the run's own split beside the process's times
        assert row["env_steps"] == 600 and row["compile"] is False and row["steady_updates_per_second"] > 0
        assert row["wall_seconds"] > row["eval_seconds"] > 0
    assert report["meta"]["settings"]["overrides"] == TINY and "| empty cache |" in proc.stdout


def test_bench_first_run_refuses_bad_options_in_one_line(tmp_path):
    out = tmp_path / "first.json"
    proc = subprocess.run([sys.executable, "experiments/bench_first_run.py", "--rounds", "0", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--rounds must be at least 1" in proc.stderr and not out.exists()


def test_bench_seeds_quick_run_writes_its_report(tmp_path):
    out = tmp_path / "seeds.json"
    cmd = [sys.executable, "experiments/bench_seeds.py", "--quick", "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "equivalence check passed (S=2, eager)" in proc.stderr
    report = json.loads(out.read_text())
    assert report["meta"]["command"].startswith("python experiments/bench_seeds.py --quick")
    assert report["meta"]["machine"]["threads"] == 1 and report["meta"]["machine"]["cpu_capability"]
    timed = {(r["kind"], r["seeds"], r["variant"]) for r in report["results"] if r["kind"] in ("update", "act")}
    assert timed == {(k, s, v) for k in ("update", "act") for s in (1, 2) for v in ("separate", "batched")}
    assert all(r["median_seconds"] > 0 for r in report["results"] if "median_seconds" in r)
    assert [(c["seeds"], c["mode"]) for c in report["comparisons"]] == [(1, "eager"), (2, "eager")]
    assert all(c["seeds_per_core_hour_gain"] > 0 for c in report["comparisons"])
    memory = {m["seeds"]: m for m in report["results"] if m["kind"] == "memory"}
    assert memory[2]["state_bytes"] == 2 * memory[1]["state_bytes"]  # every seed its own state
    assert memory[2]["activation_bytes_batched"] > memory[2]["activation_bytes_separate"]


def test_bench_seeds_stops_before_timing_when_the_seed_axis_is_mixed_up(capsys):
    bench_seeds = importlib.import_module("bench_seeds")
    batches = bench_seeds.seed_batches(2, torch.Generator().manual_seed(0))
    learners = bench_seeds.separate_learners(2, compiled=False)
    assert bench_seeds.mismatches(learners, bench_seeds.BatchedTD3(learners), batches) == []
    learners = bench_seeds.separate_learners(2, compiled=False)
    batched = bench_seeds.BatchedTD3(learners)
    with torch.no_grad():  # seed 1's second hidden layer in seed 0's place, and the other way round
        weight = batched.actor["snn.linears.1.weight"]
        weight.copy_(weight.flip(0))
    with pytest.raises(SystemExit) as stop:
        bench_seeds.check_equivalence(learners, batched, batches, "mixed up")
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "equivalence check FAILED" in err and "seed 0 actions" in err



def machine_record(**limits: str) -> dict:
    """spikerl.runtime.machine.host() in a fresh process whose environment sets only these kernel limits."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    proc = subprocess.run([sys.executable, "-c", "import json; from spikerl.runtime.machine import host; "
                           "print(json.dumps(host()))"], env={**env, **limits}, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(proc.stdout)


def test_a_figure_taken_with_kernels_held_below_the_cpu_says_so():
    """bench_threads.py --kernels avx2 (an AVX2 machine's kernels on this CPU): every record of the machine
    names the limit, and torch's capability follows it."""
    from readme_tables import machine_line

    held = machine_record(ATEN_CPU_CAPABILITY="avx2")
    assert held["cpu_capability"] == "AVX2" and held["isa_limits"] == "ATEN_CPU_CAPABILITY=avx2"
    assert "kernels held below the CPU's by `ATEN_CPU_CAPABILITY=avx2`" in machine_line(held)
    assert "isa_limits" not in machine_record() and "kernels held" not in machine_line(machine_record())
