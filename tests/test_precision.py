"""Mixed precision: bf16 autocast keeps fp32 weights and is close to fp32; non-finite steps are skipped."""

import pytest
import torch
from test_learners import OBS, make_batch, make_learner

from spikerl.rl.networks import MLPActor
from spikerl.runtime.precision import Precision
from spikerl.snn.actors import DSRLSpikingActor, PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder, TwoNeuronEncoder

# Under bf16 autocast the linear layers compute in bfloat16 while spiking neurons keep their membrane
# recurrence in fp32, so spiking actors return fp32; the MLP's last layer stays bf16. The learner casts
# actions to fp32 before they meet the critic.
ACTOR_DTYPES = [
    (PopSpikingActor, {"encoder": PopulationEncoder}, torch.float32),
    (DSRLSpikingActor, {"encoder": TwoNeuronEncoder}, torch.float32),
    (MLPActor, {}, torch.bfloat16),
]


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
@pytest.mark.parametrize("actor_cls,kwargs,bf16_dtype", ACTOR_DTYPES)
def test_actor_output_under_each_precision(mode, actor_cls, kwargs, bf16_dtype):
    torch.manual_seed(0)
    actor = actor_cls(OBS, 2, hidden_sizes=(64, 64), **kwargs)
    precision = Precision(mode)
    with precision.autocast():
        out = actor(torch.randn(16, OBS) * 2)
    assert out.dtype == (bf16_dtype if mode == "bf16" else torch.float32)
    assert torch.isfinite(out.float()).all() and out.float().abs().max() <= 1.0
    assert all(p.dtype == torch.float32 for p in actor.parameters())


def test_bf16_update_is_finite_close_to_fp32_and_keeps_fp32_state():
    batch = make_batch(100, seed=3)
    results = {}
    for mode in ("fp32", "bf16"):
        td3 = make_learner(spiking=True, precision=Precision(mode))
        start = [p.detach().clone() for p in td3.critic.parameters()]
        torch.manual_seed(1)  # same target-smoothing noise in both modes
        metrics = td3.update(batch)
        torch.manual_seed(1)
        metrics.update(td3.update(batch))
        step = [p.detach() - s for p, s in zip(td3.critic.parameters(), start)]
        results[mode] = (metrics, step)
        assert all(p.dtype == torch.float32 for p in td3.actor.parameters())
        assert all(p.dtype == torch.float32 for p in td3.critic_target.parameters())
        state = td3.critic_opt.state_dict()["state"]
        assert all(v["exp_avg"].dtype == torch.float32 for v in state.values())
        assert td3.skipped == 0
    (m32, step32), (m16, step16) = results["fp32"], results["bf16"]
    assert all(torch.isfinite(v) for v in m16.values())
    # bf16 keeps 8 bits of mantissa: losses agree to 5 %, the critic's weight updates point the same way
    assert m16["loss/critic"].item() == pytest.approx(m32["loss/critic"].item(), rel=0.05)
    flat32, flat16 = torch.cat([s.flatten() for s in step32]), torch.cat([s.flatten() for s in step16])
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) > 0.95


def test_fp16_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        Precision("fp16")


def cpu_fp16() -> Precision:
    """fp16 with a real GradScaler on the CPU: the scaler logic is device-independent, so its skip
    bookkeeping is testable without a GPU (users still cannot ask for fp16 on a CPU)."""
    return Precision("fp16", "cpu", scaler=torch.amp.GradScaler("cpu"))


def test_fp16_step_with_a_non_finite_gradient_is_skipped_and_reported():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = cpu_fp16()
    x = torch.randn(4, 3)
    before = [p.detach().clone() for p in model.parameters()]
    assert precision.step(model(x).sum() * torch.tensor(float("inf")), opt).item() == 1.0  # skipped
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))  # the optimizer did not step
    scale = precision.scaler.get_scale()
    precision.end_iteration()
    assert precision.scaler.get_scale() == scale * 0.5  # the scaler saw the inf too and backed off
    assert precision.step(model(x).sum(), opt).item() == 0.0
    precision.end_iteration()
    assert not all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("mode,bad_value", [("fp32", float("nan")), ("fp16", float("inf"))])
def test_non_finite_gradients_skip_the_step_and_are_counted(mode, bad_value):
    """fp32 checks the gradients itself; fp16 through its (CPU) GradScaler, whose skips were never seen
    before (the scale was compared before `update()` changes it)."""
    td3 = make_learner(spiking=False, precision=cpu_fp16() if mode == "fp16" else None)
    before = [p.detach().clone() for p in td3.critic.parameters()]
    bad = make_batch(8)
    bad.rew[0] = bad_value
    td3.update(bad)
    assert td3.skipped == 1 and td3.consecutive_skips == 1
    assert all(torch.equal(b, p) for b, p in zip(before, td3.critic.parameters()))
    td3.update(bad)
    assert td3.skipped == 2 and td3.consecutive_skips == 2
    td3.update(make_batch(8))
    assert td3.skipped == 2 and td3.consecutive_skips == 0


def test_auto_precision_follows_the_probe_and_says_why(monkeypatch):
    from spikerl.runtime import precision
    from spikerl.runtime.precision import Probe, choose

    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)  # a CPU whose bf16 is worth measuring

    calls = []

    def probe(ratio):
        return Probe(lambda: calls.append(ratio) or ratio, "an update at batch 100")

    slow = choose("auto", "cpu", probe(0.5))
    assert (slow.mode, slow.requested) == ("fp32", "auto") and "0.50x as fast in bf16" in slow.reason
    assert "an update at batch 100" in slow.reason and calls == [0.5]
    even = choose("auto", "cpu", probe(1.05))  # within the probe's noise of fp32: no reason to lose precision
    assert even.mode == "fp32" and "1.05x" in even.reason
    calls.clear()
    fast = choose("auto", "cpu", probe(1.3))
    assert fast.mode == "bf16" and "1.30x" in fast.reason
    assert choose("fp32", "cpu", probe(9.0)).mode == "fp32" and calls == [1.3]  # no probe


def test_auto_on_a_cpu_without_bf16_instructions_takes_fp32_without_probing(monkeypatch):
    """On an AVX2-only CPU the probe cost tens of seconds to learn what the CPU flags already say."""
    from spikerl.runtime import precision

    calls = []
    probe = precision.Probe(lambda: calls.append(1) or 2.0, "an update")
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    choice = precision.choose("auto", "cpu", probe)
    assert choice.mode == "fp32" and "no bf16 instructions" in choice.reason and calls == []
    with pytest.warns(UserWarning):  # asked for explicitly: measured, so the warning can say by how much
        assert precision.choose("bf16", "cpu", precision.Probe(lambda: 0.1, "an update")).mode == "bf16"
    for known in (True, None):  # native bf16, or flags that cannot be read: the probe decides
        monkeypatch.setattr(precision, "cpu_native_bf16", lambda known=known: known)
        assert precision.choose("auto", "cpu", probe).mode == "bf16" and len(calls) == 1
        calls.clear()


def test_explicit_bf16_where_it_is_slow_runs_as_asked_with_one_warning():
    import warnings

    from spikerl.runtime.precision import Probe, choose

    with pytest.warns(UserWarning, match="precision=bf16: .* 0.20x as fast in bf16 .* would train faster") as record:
        choice = choose("bf16", "cpu", Probe(lambda: 0.2, "an update"))
    assert choice.mode == "bf16" and len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose("bf16", "cpu", Probe(lambda: 1.1, "an update")).mode == "bf16"  # no warning


def test_the_update_probe_times_the_learner_it_is_given_in_both_precisions(monkeypatch):
    """The probe builds the run's own learner in fp32 and in bf16 and returns fp32 time / bf16 time of
    an update plus an exploring action; the global random state is left as it was. Stand-in learners
    whose updates advance a stand-in clock by a known time pin the arithmetic exactly, however busy the
    machine (a probe that inverted the ratio, or timed the wrong learner, fails)."""
    import time

    from spikerl.rl.learners import update_probe

    built, now = [], [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])

    class StandIn:
        batches_per_update = 1

        def __init__(self, precision):
            self.mode, self.calls = precision.mode, []
            built.append(self)

        def update(self, batch, lead=()):
            self.calls.append("update")
            now[0] += 0.25 if self.mode == "fp32" else 0.125  # binary fractions: the sums are exact

        def explore(self, obs):
            self.calls.append("explore")
            assert obs.shape == (1, OBS)

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    probe = update_probe(StandIn, OBS, 2, 16, samples=3)
    assert probe.what == "an update and an action at batch 16" and built == []  # nothing built before it runs
    ratio = probe.ratio()
    assert [b.mode for b in built] == ["fp32", "bf16"] and built[0].calls[:2] == ["update", "explore"]
    assert ratio == 2.0  # fp32 takes twice as long here
    assert torch.equal(torch.rand(3), expected)


def test_the_run_probes_its_own_algorithm(monkeypatch):
    """precision=auto's probe builds the chosen learner (SAC here) over copies of the run's networks."""
    from spikerl import job
    from spikerl.config import compose, validate
    from spikerl.rl.learners import base
    from spikerl.runtime.precision import PrecisionChoice

    probes, timed = [], []
    monkeypatch.setattr(job, "choose", lambda requested, device, probe: probes.append(probe)
                        or PrecisionChoice("fp32", requested, "stand-in"))
    rc = validate(compose(["algo=sac", "precision=auto", "actor.hidden_sizes=[8,8]", "critic.hidden_sizes=[8,8]",
                           "compile=false", "logger=none", "energy=none"]))
    learner = job.build_loop(rc, "unused").updates.learner
    monkeypatch.setattr(base.Learner, "update", lambda self, batch, lead=(): timed.append(self))
    monkeypatch.setattr(base.Learner, "explore", lambda self, obs: None)
    probes[0].ratio()
    assert {type(t).__name__ for t in timed} == {"SAC"} and learner not in timed  # copies, not the run's own
    assert {t.precision.mode for t in timed} == {"fp32", "bf16"}
    assert all(t.actor is not learner.actor for t in timed)


def test_a_run_records_the_precision_it_asked_for_and_the_one_it_got(tiny_run, monkeypatch):
    """The run's own probe (its update and action at its batch size) says how fast bf16 is; here it
    reports a known ratio on either side of AUTO_BF16_MARGIN, and the run takes and records the choice."""
    from spikerl import job
    from spikerl.runtime import precision
    from spikerl.runtime.precision import AUTO_BF16_MARGIN, Probe

    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)  # probed, on any CPU the test runs on
    real, ratios = job.update_probe, []
    monkeypatch.setattr(job, "update_probe", lambda *args, **kwargs: Probe(lambda: ratios[-1],
                                                                           real(*args, **kwargs).what))
    assert 0.8 < AUTO_BF16_MARGIN <= 1.5  # the two ratios below fall on either side of it

    for ratio, expected in ((1.5, "bf16"), (0.8, "fp32")):
        ratios.append(ratio)
        summary, _ = tiny_run("precision=auto", "train.total_steps=200", name=f"auto_{ratio}")
        reason = summary["precision_reason"]
        assert (summary["precision"], summary["precision_requested"]) == (expected, "auto"), reason
        assert reason.startswith("an update and an action at batch 100 on this CPU (")
        assert reason.endswith(f"runs {ratio:.2f}x as fast in bf16 as in fp32")
    fixed, _ = tiny_run("train.total_steps=200", name="fp32")
    assert (fixed["precision"], fixed["precision_requested"], fixed["precision_reason"]) == ("fp32", "fp32",
                                                                                            "as requested")
