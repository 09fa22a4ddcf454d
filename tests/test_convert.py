"""ANN-to-SNN conversion (spikerl/convert.py): the integrate-and-fire neuron by hand, the rate bound the
conversion rests on, the weights it sets, the export of a converted actor (NIR round trip for both resets,
int8 under both targets), the command's results and refusals, and, where SpikingJelly is importable
(`make spikingjelly`, which `make test-slow` runs, or `SPIKERL_SPIKINGJELLY=<a folder with it installed>`),
the same scales and outputs as SpikingJelly's rate-coding converter."""

import json
import os
import sys

import nir
import numpy as np
import pytest
import torch
from test_export import ENV, MLP_SPEC, OBS, make_checkpoint, recorded_observations

from spikerl.convert import activation_scales, ann_layers, converted_actor
from spikerl.convert import main as convert_main
from spikerl.export import inference_energy, read_bundle
from spikerl.export.__main__ import main as export_main
from spikerl.rl.networks import MLPActor
from spikerl.runtime import checkpoint
from spikerl.snn.neurons import IFSpec, make_surrogate

SMALL_MLP = {**MLP_SPEC, "hidden_sizes": [64, 48]}


def if_spikes(inputs, reset, threshold=1.0):
    spec = IFSpec(threshold, reset, make_surrogate("fast_sigmoid"))
    spikes, mem = spec.run(torch.tensor(inputs, dtype=torch.float32).reshape(-1, 1, 1))
    return spikes.flatten().tolist(), float(mem)


def test_integrate_and_fire_by_hand_in_both_resets():
    # 0.75 a step into threshold 1: by subtraction u = 0.75, 1.5 (spike, keeps 0.5), 1.25 (spike, 0.25), 1.0 (not
    # above), 1.75 (spike): the residual carries on; to zero it restarts: 0.75, 1.5 (spike), 0.75, 1.5 (spike), 0.75
    assert if_spikes([0.75] * 5, "subtract") == ([0, 1, 1, 0, 1], 0.75)
    assert if_spikes([0.75] * 5, "zero") == ([0, 1, 0, 1, 0], 0.75)
    # a negative input pulls the membrane down (no floor): -0.5, 0.4, 1.3 (spike, 0.3), 1.2 (spike, 0.2)
    spikes, mem = if_spikes([-0.5, 0.9, 0.9, 0.9], "subtract")
    assert spikes == [0, 0, 1, 1] and mem == pytest.approx(0.2)


def test_a_subtracting_neuron_fires_its_input_rate_to_within_one_spike():
    """The bound the conversion rests on: for a constant input I in [0, 1] a step, T steps give
    floor(T I) spikes or one more or fewer only by rounding, whatever T; resetting to zero loses the residual."""
    inputs = torch.rand(4000)
    for T in (8, 32, 128):
        spec = IFSpec(1.0, "subtract", make_surrogate("fast_sigmoid"))
        spikes, _ = spec.run(inputs.expand(T, 1, -1).contiguous())
        counts = spikes.sum(0).flatten()
        assert (counts - T * inputs).abs().max() <= 1.0 + 1e-4
        zero, _ = IFSpec(1.0, "zero", make_surrogate("fast_sigmoid")).run(inputs.expand(T, 1, -1).contiguous())
        assert (zero.sum(0).flatten() <= counts).all() and (zero.sum(0).flatten() < counts).any()


def small_ann(seed=0):
    torch.manual_seed(seed)
    return MLPActor(OBS, 6, (64, 48)).eval()


def test_scales_are_the_percentile_of_each_hidden_layers_relu_activations():
    ann, obs = small_ann(), torch.randn(300, OBS)
    linears = ann_layers(ann)
    h1 = torch.relu(linears[0](obs))
    h2 = torch.relu(linears[1](h1))
    expected = [np.percentile(h.detach().double().numpy(), 99.0) for h in (h1, h2)]
    assert activation_scales(linears, obs, 99.0) == pytest.approx(expected, rel=1e-12)


def test_the_converted_actor_tends_to_the_ann_as_its_timesteps_grow():
    """Every hidden rate is the ANN's activation over its scale (clipped at 1) to within 1/T in the first
    layer, where the input current is exact; the action error shrinks with T."""
    ann, obs = small_ann(), torch.randn(200, OBS)
    linears = ann_layers(ann)
    scales = activation_scales(linears, obs, 99.9)
    errors = []
    for T in (8, 64, 512):
        snn = converted_actor(linears, scales, T, "subtract")
        rates = snn.snn.layer(0, snn.encoder(obs, T)).mean(0)
        target = (torch.relu(linears[0](obs)) / scales[0]).clamp(max=1.0)
        assert (rates - target).abs().max() <= 1.0 / T + 1e-5
        with torch.no_grad():
            errors.append(float((snn.unsquashed(obs) - ann.unsquashed(obs)).abs().mean()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05 * float(ann.unsquashed(obs).detach().abs().mean())


def test_the_conversion_refuses_what_is_not_a_relu_mlp():
    from spikerl.convert import ConvertError
    from spikerl.snn.actors import ConvertedActor

    with pytest.raises(ConvertError, match="ANN run's actor"):
        ann_layers(ConvertedActor(OBS, 6, (8,), 4))
    tanh_mlp = MLPActor(OBS, 6, (8,))
    tanh_mlp.net[1] = torch.nn.Tanh()
    with pytest.raises(ConvertError, match="ReLU MLP"):
        ann_layers(tanh_mlp)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_converted_actor_exports_and_round_trips_exactly(tmp_path, reset, capsys):
    """Reset to zero is NIR's IF node; reset by subtraction, which NIR's IF cannot state, an I node into a
    Threshold node fed back through -threshold. Both read back to the converted actor's actions exactly;
    each neuron updates once a step in the energy count, its reset synapse counted apart."""
    ann_ckpt = make_checkpoint(tmp_path / "ann.pt", SMALL_MLP, obs_norm="maxabs", method="td3")
    out = tmp_path / "converted"
    assert convert_main([str(ann_ckpt), "--timesteps", "8", "--reset", reset, "--episodes", "1",
                         "--calibration-episodes", "1", "--energy-episodes", "1", "--out", str(out)]) == 0
    converted = out / f"T8_{reset}.pt"
    bundle = tmp_path / "bundle"
    assert export_main([str(converted), "--out", str(bundle), "--episodes", "1"]) == 0
    assert json.loads((bundle / "bundle.json").read_text())["round_trip"]["layer_spikes_equal"] == [True, True]
    graph = nir.read(bundle / "actor.nir")
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    if reset == "zero":
        assert kinds["lif1"] == kinds["lif2"] == "IF" and kinds["integrator"] == "I"
    else:
        assert [kinds[n] for n in ("lif1_v", "lif1", "lif1_reset")] == ["I", "Threshold", "Linear"]
        assert ("lif1_reset", "lif1_v") in graph.edges
    from spikerl import evaluate

    policy = evaluate.load_policy(checkpoint.load(converted))
    raw = recorded_observations(policy)
    assert torch.equal(read_bundle(bundle).run(raw)["action"], policy(raw))
    energy = inference_energy(converted, episodes=1)
    assert energy["totals"]["neuron_updates"] == 8 * (64 + 48 + 6)
    resets = [layer for layer in energy["layers"] if "_reset" in layer["name"]]
    assert len(resets) == (2 if reset == "subtract" else 0)
    for layer in resets:  # one synaptic op per spike: the subtraction
        assert layer["synaptic_ops"] == pytest.approx(layer["input_rate"] * 8 * layer["fan_in"])
    # int8: both resets under float weights; only reset to zero on Loihi, whose compartments reset to zero
    assert export_main([str(converted), "--quantize", "int8", "--target", "float", "--episodes", "1", "--force",
                        "--min-return-ratio", "0.01", "--out", str(tmp_path / "float8")]) == 0
    code = export_main([str(converted), "--quantize", "int8", "--episodes", "1", "--force", "--min-return-ratio",
                        "0.01", "--out", str(tmp_path / "loihi8")])
    if reset == "zero":
        assert code == 0 and json.loads((tmp_path / "loihi8" / "bundle.json").read_text())["quantization"]["schedule"]
    else:
        assert code == 2 and not (tmp_path / "loihi8").exists()
        assert "reset by subtraction" in capsys.readouterr().err.strip().splitlines()[-1]


def test_convert_reports_every_timestep_and_writes_checkpoints_that_evaluate(tmp_path):
    ann_ckpt = make_checkpoint(tmp_path / "ann.pt", SMALL_MLP, method="td3")
    out = tmp_path / "conv"
    assert convert_main([str(ann_ckpt), "--timesteps", "4,16", "--episodes", "2", "--calibration-episodes", "1",
                         "--energy-episodes", "1", "--out", str(out)]) == 0
    result = json.loads((out / "convert.json").read_text())
    assert [row["timesteps"] for row in result["converted"]] == [4, 16]
    assert all(len(row["firing_rates"]) == 2 for row in result["converted"])  # each hidden layer once
    assert result["calibration"]["source"] == "episodes acted by the ANN" and len(result["scales"]) == 2
    assert result["command"].startswith("python -m spikerl.convert ") and result["env_id"] == ENV
    state = checkpoint.load(out / "T16_subtract.pt")
    assert state["meta"]["method"] == "td3+convert" and state["meta"]["converted_from"]["scales"] == result["scales"]
    from spikerl import evaluate
    from spikerl.rl.evaluation import evaluate_policy

    returns = evaluate_policy(evaluate.load_policy(state), ENV, 2, result["seed"], state["meta"]["max_episode_steps"])
    assert returns.tolist() == result["converted"][1]["returns"]


def test_calibration_takes_the_replay_when_the_checkpoint_holds_it(tmp_path):
    path = make_checkpoint(tmp_path / "ann.pt", SMALL_MLP, method="td3")
    state = checkpoint.load(path)
    state["replay"] = {"size": 50, "obs": torch.randn(60, OBS) * 3, "ptr": 50, "capacity": 60}
    checkpoint.save_atomic(state, path)
    out = tmp_path / "conv"
    assert convert_main([str(path), "--timesteps", "4", "--episodes", "1", "--energy-episodes", "1",
                         "--calibration-samples", "20", "--out", str(out)]) == 0
    calibration = json.loads((out / "convert.json").read_text())["calibration"]
    assert calibration["source"] == "replay" and calibration["observations"] == 20


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    ann_ckpt = make_checkpoint(tmp_path / "ann.pt", SMALL_MLP, method="td3")
    from test_export import DSRL_SPEC

    spiking = make_checkpoint(tmp_path / "dsrl.pt", DSRL_SPEC, obs_norm="maxabs", method="dsrl")
    (tmp_path / "taken").mkdir()
    cases = [
        ([str(spiking)], "the conversion takes an ANN run's actor"),
        ([str(ann_ckpt), "--timesteps", "8,x"], "--timesteps takes positive integers"),
        ([str(ann_ckpt), "--timesteps", "0"], "--timesteps takes positive integers"),
        ([str(ann_ckpt), "--percentile", "0"], "--percentile must be in (0, 100]"),
        ([str(ann_ckpt), "--episodes", "0"], "--episodes must be positive"),
        ([str(ann_ckpt), "--out", str(tmp_path / "taken")], "exists; pass --force"),
        ([str(tmp_path / "missing.pt")], "no checkpoint at"),
    ]
    for argv, fragment in cases:
        assert convert_main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("spikerl.convert: error: ") and fragment in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.pt", "dsrl.pt", "taken"]
    assert not any((tmp_path / "taken").iterdir())


SPIKINGJELLY = os.environ.get("SPIKERL_SPIKINGJELLY")


@pytest.mark.slow  # `make test-slow` installs SpikingJelly (`make spikingjelly`) and points this at it
@pytest.mark.skipif(not SPIKINGJELLY or not os.path.isdir(os.path.join(SPIKINGJELLY, "spikingjelly")),
                    reason="set SPIKERL_SPIKINGJELLY to a folder with spikingjelly 2.0 installed (make spikingjelly)")
def test_same_scales_and_outputs_as_spikingjellys_rate_coding_converter():
    """SpikingJelly's RateCodingRecipe on the same ANN and calibration batch: its scales (the VoltageScaler
    pairs around each IFNode) are ours, and its network's outputs, stepped T times and averaged, are our
    converted actor's readout to float rounding (it splits no input, scales currents where we scale
    weights, and spikes at v >= 1 where we spike at v > 1, so the spikes agree but for ties)."""
    sys.path.insert(0, SPIKINGJELLY)
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.ann2snn import Converter
    from spikingjelly.activation_based.ann2snn.recipes import RateCodingRecipe

    ann, obs = small_ann(3), torch.randn(500, OBS)
    theirs = Converter(RateCodingRecipe([obs], mode="99.9%")).convert(ann.net)
    their_scales = [float(m.scaler1.scale) for name, m in theirs.named_children() if name.startswith("spiking_")]
    linears = ann_layers(ann)
    ours = activation_scales(linears, obs, 99.9)
    assert ours == pytest.approx(their_scales, rel=1e-4)  # their quantile interpolates in float32, ours in float64
    T = 32
    snn = converted_actor(linears, their_scales, T, "subtract")
    functional.reset_net(theirs)
    with torch.no_grad():
        their_mean = torch.stack([theirs(obs) for _ in range(T)]).mean(0)
        assert torch.allclose(snn.unsquashed(obs), their_mean, atol=1e-4, rtol=1e-4)
