"""Quantised export (`--quantize int8 --target loihi|float`): Loihi's fixed-point neuron and synapse rules
against values computed by hand (rounding toward zero, the floor of a negative weight exponent, the
current's wrap, the voltage's clip, the strict threshold), the quantised PopSAN and ILC-SAN graphs against
their float ones, the written bundle read back, and the command's options and gate."""

import json

import nir
import numpy as np
import pytest
import torch
from test_export import DSRL_SPEC, actor_of, ilcsan_spec, make_checkpoint, popsan_spec, recorded_observations

from spikerl.export import read_bundle
from spikerl.export.__main__ import keeps_return
from spikerl.export.__main__ import main as export_main
from spikerl.export.energy import FIGURES, spiking_energy
from spikerl.export.nir_graph import build_bundle, quantized_bundle
from spikerl.export.quantize import (
    STATE_MAX,
    FixedNeurons,
    QuantizeError,
    graded_spikes,
    loihi_mantissas,
    quantize,
    shift,
    wrap24,
)
from spikerl.export.simulate import simulate
from spikerl.runtime import checkpoint


def run_neuron(neuron: FixedNeurons, a_in: list[int]) -> tuple[list[int], list[int], list[int]]:
    state, out, us, vs = {}, [], [], []
    for a in a_in:
        out.append(int(neuron.step(state, torch.tensor([a], dtype=torch.int64))[0]))
        us.append(int(state["u"][0]))
        vs.append(int(state["v"][0]))
    return out, us, vs


def test_loihi_neuron_steps_as_lavas_bit_accurate_lif_by_hand():
    # du = 2047: u keeps (4096 - 2048) / 4096 = 1/2; dv = 1024: v keeps 3/4; vth = 3 -> spikes above 3 << 6 = 192
    spikes, u, v = run_neuron(FixedNeurons(du=2047, dv=1024, vth=3, unit=1.0), [-1, 0, 2, 0, 4])
    # t1: u = -1 << 6 = -64, v = -64; t2: u = -32, v = -48 - 32 = -80; t3: u = -16 + 128 = 112, v = -60 + 112 = 52;
    # t4: u = 56, v = 39 + 56 = 95; t5: u = 28 + 256 = 284, v = 71 + 284 = 355 > 192: spike, v <- 0
    assert u == [-64, -32, 112, 56, 284] and v == [-64, -80, 52, 95, 0] and spikes == [0, 0, 0, 0, 1]

    # du = 4095: no current memory (u = a_in << 6); dv = 1: v keeps 4095/4096, rounded toward zero
    spikes, u, v = run_neuron(FixedNeurons(du=4095, dv=1, vth=1, unit=1.0), [-1, 0, 2, 1, 0])
    # t2: -64 * 4095 / 4096 = -63.98 -> -63 (a floor would give -64); t3: -62.98 -> -62, + 128 = 66 > 64: spike;
    # t4: 0 + 64 = 64, not above 64 (the comparison is strict): no spike; t5: 64 * 4095 / 4096 = 63.98 -> 63
    assert u == [-64, 0, 128, 64, 0] and v == [-64, -63, 0, 64, 63] and spikes == [0, 0, 1, 0, 0]


def test_loihi_current_wraps_and_voltage_saturates_as_lava_does():
    readout = FixedNeurons(du=4095, dv=0, vth=None, unit=1.0)  # v integrates u, no threshold
    _, u, v = run_neuron(readout, [2**17, 2**17 + 1, 0])
    # t1: u = 2^23 (Lava keeps 2^23 itself), v clips to 2^23 - 1; t2: u = 2^23 + 64 wraps to -2^23 + 64,
    # v = 2^23 - 1 - 2^23 + 64 = 63; t3: u = 0, v = 63
    assert u == [2**23, -(2**23) + 64, 0] and v == [STATE_MAX, 63, 63]
    assert wrap24(torch.tensor([-(2**23), -(2**23) - 5, 2**23 + 1])).tolist() == [2**23, 2**23 - 5, -(2**23) + 1]


def test_loihi_weights_are_even_8_bit_mantissas_and_a_negative_exponent_floors_the_sum():
    x = np.array([1.0, 3.0, -255.0, 300.0, -300.0, 2.9])
    assert loihi_mantissas(x, 0).tolist() == [0, 4, -256, 254, -256, 2]  # nearest even (ties to even), clipped
    assert loihi_mantissas(x, 1).tolist() == [0, 2, -128, 150, -150, 2]
    assert shift(torch.tensor([-3, 3, -4, 5]), -1).tolist() == [-2, 1, -2, 2]  # arithmetic shift: floor
    assert shift(torch.tensor([-3, 3]), 2).tolist() == [-12, 12]


def tiny_graph(node, weight, bias=None):
    syn = nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)
    n_out, n_in = weight.shape
    return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n_in])}), "fc": syn, "n": node,
                               "output": nir.Output(output_type={"output": np.array([n_out])})},
                        edges=[("input", "fc"), ("fc", "n"), ("n", "output")], metadata={"dt": 1e-3, "timesteps": 5})


def cubalif(n, alpha=0.5, beta=0.75, threshold=0.5, dt=1e-3, **changes):
    tau_syn, tau_mem = dt / (1 - alpha), dt / (1 - beta)
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    params = {"tau_syn": full(tau_syn), "tau_mem": full(tau_mem), "r": full(tau_mem / dt), "v_leak": full(0.0),
              "w_in": full(tau_syn / dt), "v_threshold": full(threshold), "v_reset": full(0.0), **changes}
    return nir.CubaLIF(**params)


def test_decays_threshold_and_weights_map_to_loihi_registers():
    w = np.array([[0.3, -0.1], [0.05, 0.2]])
    q = quantize(tiny_graph(cubalif(2), w, np.array([0.01, -0.02])), "loihi")
    neu, syn = q.neurons["n"], q.synapses["fc"]
    assert (neu.du, neu.dv) == (2047, 1024)  # 4096 - du - 1 = 0.5 * 4096; 4096 - dv = 0.75 * 4096
    assert neu.vth * neu.unit == pytest.approx(0.5, rel=1e-12) and neu.vth <= 2**17 - 1
    # the finest unit whose u and v cannot leave 24 bits in T = 5 steps from zero: |I| <= (0.3 + 0.1 + 0.01) (1 +
    # 0.5 + ... + 0.5^4), |v| <= |I| (1 + 0.75 + ... + 0.75^4)
    finest = 64 * 0.41 * (1 - 0.5**5) / 0.5 * (1 - 0.75**5) / 0.25 / STATE_MAX
    assert finest <= neu.unit < 1.001 * finest
    assert syn.unit == neu.unit and np.abs(syn.mant).max() <= 254 and np.all(syn.mant % 2 == 0)
    dequantized = syn.mant * 2.0**syn.exp * syn.unit
    assert np.abs(dequantized - w).max() <= 2.0**syn.exp * syn.unit  # within one mantissa step
    assert np.array_equal(np.asarray(q.graph.nodes["fc"].weight), dequantized.astype(np.float32))
    assert quantize(tiny_graph(cubalif(2, alpha=0.0), w), "loihi").neurons["n"].du == 4095  # u = a_in << 6


@pytest.mark.parametrize(("node", "fragment"), [
    (cubalif(2, beta=0.0), "12-bit"),
    (cubalif(2, v_leak=np.array([0.0, 0.1])), "v_leak"),
    (cubalif(2, v_threshold=np.array([0.5, 0.6])), "per-neuron thresholds"),
    (cubalif(2, v_reset=np.full(2, -0.1)), "v_reset"),
    (cubalif(2, w_in=np.full(2, 3.0)), "unit input gains"),
])
def test_what_loihi_cannot_hold_is_refused_in_one_line(node, fragment):
    with pytest.raises(QuantizeError, match=fragment) as info:
        quantize(tiny_graph(node, np.array([[0.3, -0.1], [0.05, 0.2]])), "loihi")
    assert "\n" not in str(info.value)
    with pytest.raises(QuantizeError, match="unknown target 'tpu'"):
        quantize(tiny_graph(cubalif(2), np.eye(2)), "tpu")


def test_real_valued_input_goes_as_8_bit_graded_spikes():
    assert graded_spikes(torch.tensor([0.0, 0.5, 1.0, 1.7, -0.2, 0.002]), 1 / 255).tolist() == [0, 128, 255, 255, 0, 1]
    w = np.array([[0.3, -0.1], [0.05, 0.2]])
    q = quantize(tiny_graph(cubalif(2, alpha=0.0), w), "loihi", input_range=1.0)
    syn, step = q.synapses["fc"], 1 / 255
    assert q.input_step == step and q.rules()["graded_input"] == {"bits": 8, "step": step}
    # the weights are in units per graded step; the written graph keeps them per unit of the float input
    assert np.abs(syn.mant * 2.0**syn.exp * syn.unit / step - w).max() <= 2.0**syn.exp * syn.unit / step
    x = torch.tensor([[[0.5, 1.0]]])  # one step: 128 and 255 graded steps
    a_in = syn(graded_spikes(x[0], step))
    assert torch.equal(a_in, shift(torch.from_numpy(syn.mant) @ torch.tensor([128, 255]), syn.exp).view(1, 2))


def test_dsrl_quantised_for_loihi_takes_its_input_as_graded_spikes(tmp_path):
    from spikerl.export import write_bundle

    # z-scored input clipped to +-3: the graded spikes' range holds every value (a maxabs normaliser's range is
    # what training saw; a larger observation saturates at 255 steps)
    path = make_checkpoint(tmp_path / "dsrl.pt", DSRL_SPEC, obs_norm="zscore", method="dsrl")
    actor, normalizer = actor_of(path)
    bundle = build_bundle(checkpoint.load(path), "", actor, normalizer)
    q = quantized_bundle(bundle, "loihi")
    assert q.quant.input_step == 3 / 255 and q.quant.neurons["integrator"].vth is None
    raw = recorded_observations(lambda o: actor(normalizer(o)).detach(), steps=10)
    x = bundle.host.encode(bundle.host.normalise(raw))
    ran, (_, float_trace) = q.run(raw, encoder_input=x, record=True), simulate(bundle.graph, x, record=True)
    assert ran["trace"]["fc1"][0].dtype == torch.float32 and (ran["trace"]["fc1"][0] > 1).any()  # graded steps
    for name in ("lif1", "lif2"):
        assert (float_trace[name][1] == ran["trace"][name][1]).float().mean() > 0.97, name
    write_bundle(q, tmp_path / "b")
    assert torch.equal(read_bundle(tmp_path / "b").run(raw, encoder_input=x)["action"], ran["action"])


@pytest.fixture(scope="module")
def popsan(tmp_path_factory):
    path = make_checkpoint(tmp_path_factory.mktemp("q") / "popsan.pt", popsan_spec())
    state = checkpoint.load(path)
    actor, normalizer = actor_of(path)
    raw = recorded_observations(lambda o: actor(normalizer(o)).detach())
    return path, state, build_bundle(state, "", actor, normalizer), raw


@pytest.mark.parametrize("target", ["loihi", "float"])
def test_quantised_popsan_stays_close_to_the_float_graph_and_reads_back_the_same(popsan, target, tmp_path):
    from spikerl.export import write_bundle

    _, _, bundle, raw = popsan
    q = quantized_bundle(bundle, target)
    x = bundle.host.encode(bundle.host.normalise(raw))
    _, float_trace = simulate(bundle.graph, x, record=True)
    ran = q.run(raw, encoder_input=x, record=True)
    for name in bundle.neurons:  # at HalfCheetah sizes, with 8-bit weights: a few spikes in a hundred move
        agree = (float_trace[name][1] == ran["trace"][name][1]).float().mean()
        assert agree > 0.97, (name, float(agree))
    assert not torch.equal(ran["action"], bundle.run(raw, encoder_input=x)["action"])  # it is quantised
    write_bundle(q, tmp_path / "b")
    back = read_bundle(tmp_path / "b")
    assert back.quant.target == target and torch.equal(back.run(raw, encoder_input=x)["action"], ran["action"])
    if target == "loihi":
        assert back.quant.synapses.keys() == q.quant.synapses.keys() == {"fc1", "fc2", "fc3"}
        assert all(np.array_equal(back.quant.synapses[k].mant, q.quant.synapses[k].mant) for k in q.quant.synapses)


def test_quantised_ilcsan_keeps_its_recurrent_edge_and_decoder_neurons():
    path = make_checkpoint_in_tmp(ilcsan_spec("max", 0.7, "intra"), "ilcsan")
    state = checkpoint.load(path)
    actor, normalizer = actor_of(path)
    bundle = build_bundle(state, "", actor, normalizer)
    q = quantized_bundle(bundle, "loihi")
    assert {"fc1", "fc2", "fc3", "intra", "decoder"} <= q.quant.synapses.keys()
    assert q.quant.neurons["decoder_membrane"].vth is None and q.quant.neurons["decoder_membrane"].dv == 1229
    raw = recorded_observations(lambda o: actor(normalizer(o)).detach(), steps=10)
    x = bundle.host.encode(bundle.host.normalise(raw))
    ran, (_, float_trace) = q.run(raw, encoder_input=x, record=True), simulate(bundle.graph, x, record=True)
    for name in ("lif1", "lif2", "lif3"):
        assert (float_trace[name][1] == ran["trace"][name][1]).float().mean() > 0.97, name
    diff = (ran["action"] - bundle.run(raw, encoder_input=x)["action"]).abs()
    assert float(diff.mean()) < 0.02, float(diff.mean())  # the max read-out jumps where one spike moves
    # cutting the recurrent edge changes the integer simulation too
    q.quant.synapses["intra"].mant[:] = 0
    assert not torch.equal(q.run(raw, encoder_input=x)["action"], bundle.run(raw, encoder_input=x)["action"])


def make_checkpoint_in_tmp(spec, method, _counter=[0]):  # noqa: B006
    import tempfile

    _counter[0] += 1
    return make_checkpoint(f"{tempfile.mkdtemp()}/{method}{_counter[0]}.pt", spec, method=method)


def test_loihi_energy_prices_integer_ops(popsan):
    _, state, bundle, _ = popsan
    result, _ = spiking_energy(state, quantized_bundle(bundle, "loihi"), episodes=1, max_episode_steps=5)
    t, add, mult = result["totals"], FIGURES["int32_add"].pj, FIGURES["int32_mult"].pj
    # synaptic ops are integer adds; a CubaLIF update 2 mults + 3 adds, plus 1 add for the bias
    expected = t["synaptic_ops"] * add + t["neuron_updates"] * (2 * mult + 3 * add + add)
    assert result["arithmetic"] == "int32" and result["energy_pj"]["45nm"] == pytest.approx(expected)


def test_keeps_return_compares_against_the_size_of_the_float_return():
    assert keeps_return(1000.0, 950.0, 0.95) and not keeps_return(1000.0, 949.0, 0.95)
    assert keeps_return(-100.0, -105.0, 0.95) and not keeps_return(-100.0, -106.0, 0.95)


def test_quantised_export_writes_the_rules_and_the_closed_loop_result(popsan, tmp_path, capsys):
    path = popsan[0]
    out = tmp_path / "q"
    argv = [str(path), "--quantize", "int8", "--out", str(out), "--episodes", "1", "--max-episode-steps", "20"]
    assert export_main(argv + ["--min-return-ratio", "0.01", "--force"]) == 0
    printed = capsys.readouterr().out
    assert "quantised int8 for loihi" in printed and "closed loop over 1 episodes" in printed
    info = json.loads((out / "bundle.json").read_text())
    closed = info["quantization"]["closed_loop"]
    assert info["quantization"]["target"] == "loihi" and closed["read_back_equal"] is True
    assert set(info["quantization"]["nodes"]) == {"fc1", "lif1", "fc2", "lif2", "fc3", "lif3"}
    assert len(closed["quantized_returns"]) == 1 and 0.0 <= closed["actions_equal_fraction"] <= 1.0
    schedule = info["quantization"]["schedule"]  # T = 5 through three one-step synapse layers
    assert schedule["steps_per_action"] == 8 and schedule["read"] == {"node": "lif3", "steps": [3, 8]}
    assert closed["pipelined"]["ok"] and "pipelined (one-step synapses" in printed
    with np.load(out / "host.npz") as npz:
        assert npz["q_fc1_weight_mant"].dtype == np.int64 and "q_fc2_bias_mant" in npz.files


def test_a_quantised_actor_below_the_return_ratio_is_not_written_unless_forced(popsan, tmp_path, capsys,
                                                                                monkeypatch):
    import spikerl.export.__main__ as cli

    monkeypatch.setattr(cli, "keeps_return", lambda f, q, ratio: False)
    argv = [str(popsan[0]), "--quantize", "int8", "--target", "float", "--episodes", "1",
            "--max-episode-steps", "10", "--out"]
    assert export_main(argv + [str(tmp_path / "no")]) == 1
    err = capsys.readouterr().err.strip()
    assert "below 0.95 of the float actor's" in err and "nothing written" in err and "\n" not in err
    assert not (tmp_path / "no").exists() and not list(tmp_path.iterdir())
    assert export_main(argv + [str(tmp_path / "yes"), "--force"]) == 0
    assert json.loads((tmp_path / "yes" / "bundle.json").read_text())["quantization"]["closed_loop"]["kept"] is False


def test_bad_quantisation_options_are_one_line_and_write_nothing(popsan, tmp_path, capsys):
    path = str(popsan[0])

    def refused(argv, fragment):
        assert export_main([path, "--out", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("spikerl.export: error: ") and "\n" not in err and fragment in err, err
        assert not (tmp_path / "x").exists()

    refused(["--target", "loihi"], "--target apply to a quantised export")
    refused(["--min-return-ratio", "0.9"], "--min-return-ratio apply to a quantised export")
    refused(["--quantize", "int4"], "unknown --quantize 'int4' (choose one of: int8)")
    refused(["--quantize", "int8", "--target", "tpu"], "unknown --target 'tpu' (choose one of: loihi, float)")
    refused(["--quantize", "int8", "--min-return-ratio", "0"], "must be in (0, 1]")
    refused(["--quantize", "int8", "--min-return-ratio", "1.5"], "must be in (0, 1]")
    refused(["--quantize", "int8", "--min-return-ratio", "most"], "must be a number")
    refused(["--quantize", "int8", "--energy-only"], "--energy-only")
    dsrl = make_checkpoint(tmp_path / "dsrl.pt", DSRL_SPEC, obs_norm="none", method="dsrl")
    assert export_main([str(dsrl), "--quantize", "int8", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot quantise for loihi" in err and "needs a bounded normaliser" in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_a_quantised_export_goes_beside_the_float_one_by_default(tmp_path, capsys):
    """Without --out, `--quantize` used to write into the float export's `nir/` and fail there."""
    run = tmp_path / "run"
    make_checkpoint(run / "checkpoints" / "last.pt", popsan_spec())
    args = [str(run), "--episodes", "1", "--max-episode-steps", "20"]
    assert export_main(args) == 0 and (run / "nir" / "bundle.json").is_file()
    assert export_main([*args, "--quantize", "int8", "--min-return-ratio", "0.01", "--force"]) == 0
    assert json.loads((run / "nir_loihi_int8" / "bundle.json").read_text())["quantization"]["target"] == "loihi"
    assert "quantization" not in json.loads((run / "nir" / "bundle.json").read_text())
    assert "ratio" in capsys.readouterr().out


@pytest.mark.parametrize("float_return,judged", [(100.0, "(ratio 0.900, minimum 0.95: NOT kept"),
                                                  (-50.0, "(no ratio: the float return is not positive; kept at "
                                                          "or above -52.5)")])
def test_the_closed_loop_line_says_how_a_negative_float_return_is_judged(float_return, judged):
    """A negative float return has no ratio: the line says what the quantised return had to reach
    instead of 'ratio -'."""
    from spikerl.export.__main__ import closed_loop_line

    closed = {"float_return": float_return, "quantized_return": 0.9 * float_return, "seed": 3,
              "ratio": 0.9 if float_return > 0 else None, "kept": keeps_return(float_return, 0.9 * float_return, 0.95)}
    assert judged in closed_loop_line(closed, 2, 0.95)


def naive_schedule(schedule: dict) -> dict:
    """The deployment docs/neuromorphic.md described before the schedule: every bias input spiking at every
    step, all states zero at the action's start only."""
    naive = json.loads(json.dumps(schedule))
    for node in naive["nodes"].values():
        if node["bias_input_steps"] is not None:
            node["bias_input_steps"] = [0, naive["steps_per_action"]]
        node["reset_before_step"] = 0
    return naive


def test_the_pipeline_schedule_of_popsan_and_ilcsan_by_hand():
    path = make_checkpoint_in_tmp(ilcsan_spec("max", 0.7, "intra"), "ilcsan")
    actor, normalizer = actor_of(path)
    s = quantized_bundle(build_bundle(checkpoint.load(path), "", actor, normalizer), "loihi").quant.schedule()
    # T = 5; fc1, fc2, fc3 and the decoder are four one-step synapse layers: the decoder membranes are read at 4..8
    assert s["steps_per_action"] == 9 and s["read"] == {"node": "decoder_membrane", "steps": [4, 9]}
    assert [s["nodes"][n]["first_step"] for n in ("lif1", "lif2", "lif3", "decoder_membrane")] == [1, 2, 3, 4]
    assert s["nodes"]["lif2"]["bias_input_steps"] == [1, 6]  # delivered one step later: at lif2's steps 2..6
    assert s["nodes"]["lif3"]["synapse_groups"] == {"fc3": "lif2", "intra": "lif3"}
    assert s["back_to_back_period"] is None  # the recurrent synapse would carry spikes into the next action


@pytest.mark.parametrize("actor_kind", ["popsan", "ilcsan"])
def test_a_pipelined_run_on_the_schedule_computes_the_integer_simulation(popsan, actor_kind):
    """With one-step synapses (Lava's Dense), the schedule gives every layer the integer simulation's spikes;
    the bias on at every step does not (layers 2 and 3 take extra bias steps while the pipeline fills)."""
    from spikerl.export.quantize import pipeline_check, realign, simulate_pipelined

    if actor_kind == "popsan":
        bundle, raw = popsan[2], popsan[3]
    else:
        path = make_checkpoint_in_tmp(ilcsan_spec("max", 0.7, "intra"), "ilcsan")
        actor, normalizer = actor_of(path)
        bundle = build_bundle(checkpoint.load(path), "", actor, normalizer)
        raw = recorded_observations(lambda o: actor(normalizer(o)).detach(), steps=10)
    q = quantized_bundle(bundle, "loihi").quant
    x = bundle.host.encode(bundle.host.normalise(raw))
    check = pipeline_check(q, x)
    assert check["ok"] and check["observations_equal_fraction"] == 1.0, check
    pipelined = simulate_pipelined(q, x)
    assert pipelined["lif1"].shape[0] == q.schedule()["steps_per_action"]
    assert not pipelined["lif1"][0].any()  # nothing has reached layer 1 at step 0
    naive = naive_schedule(q.schedule())
    wrong = pipeline_check(q, x, naive)
    assert wrong["nodes_equal"]["lif1"] and not wrong["nodes_equal"]["lif2"] and not wrong["ok"]
    assert not torch.equal(realign(naive, simulate_pipelined(q, x, naive))["lif3"],
                           realign(q.schedule(), pipelined)["lif3"])


def test_every_a_in_stays_where_lavas_single_wrap_of_u_is_a_full_wrap(popsan, monkeypatch):
    import spikerl.export.quantize as quantize_module

    q = quantized_bundle(popsan[2], "loihi").quant
    into = {"lif1": "fc1", "lif2": "fc2", "lif3": "fc3"}
    # the units keep u within 24 bits, so a_in << 6 cannot reach 2^24 either
    assert all(q.synapses[s].largest_a_in() < 2**17 for s in into.values())
    monkeypatch.setattr(quantize_module, "A_IN_WRAP_SAFE", 100)
    with pytest.raises(QuantizeError, match="single wrap of u") as info:
        quantize(popsan[2].graph, "loihi")
    assert "\n" not in str(info.value)


def test_bundle_formats_read_and_refused(popsan, tmp_path):
    from spikerl.export import ExportError, write_bundle

    write_bundle(popsan[2], tmp_path / "b")
    info_file = tmp_path / "b" / "bundle.json"
    info = json.loads(info_file.read_text())
    assert info["format"] == 3
    info_file.write_text(json.dumps({**info, "format": 2}))  # format 2 lacks only the loihi schedule
    assert read_bundle(tmp_path / "b").info["format"] == 2
    info_file.write_text(json.dumps({**info, "format": 1}))
    with pytest.raises(ExportError, match="bundle format 1; this SpikeRL reads 2 and 3: export it again") as caught:
        read_bundle(tmp_path / "b")
    assert "\n" not in str(caught.value)
