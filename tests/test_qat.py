"""Quantisation-aware fine-tuning (spikerl/export/qat.py, `--qat-updates`): the fake-quantised weights
are the export's own dequantised weights, gradients pass straight through to the float weights, the
command fine-tunes the checkpoint's learner and exports the result as the plain export would, judged
against the original float return, and bad input is refused in one line."""

import copy
import json

import numpy as np
import pytest
import torch
from test_export import DSRL_SPEC, MLP_SPEC, actor_of, ilcsan_spec, make_checkpoint, popsan_spec

from spikerl.export import ExportError
from spikerl.export.__main__ import main as export_main
from spikerl.export.nir_graph import build_bundle, graph_input_range, quantized_bundle
from spikerl.export.qat import FakeQuantizer
from spikerl.runtime import checkpoint

CASES = [("popsan", popsan_spec(), "zscore"), ("dsrl", DSRL_SPEC, "maxabs")]


def chip_params(actor) -> list[torch.Tensor]:
    """Every chip layer's weight and bias, as the actor's forward sees them now, in chip-layer order."""
    return [t for layer in actor.chip_layers() for t in (layer.weight, layer.bias) if t is not None]


def chip_weights(actor) -> list[torch.Tensor]:
    return [t.detach().clone() for t in chip_params(actor)]


def exported_weights(state, actor, normalizer, target) -> list[torch.Tensor]:
    """The weights and biases the plain quantised export writes into actor.nir, in chip-layer order."""
    graph = quantized_bundle(build_bundle(state, "", actor, normalizer), target).graph
    out = []
    for node in graph.nodes.values():
        if hasattr(node, "weight"):
            out += [torch.from_numpy(node.weight)] + ([torch.from_numpy(node.bias)] if hasattr(node, "bias") else [])
    return out


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("target", ["loihi", "float"])
@pytest.mark.parametrize(("method", "spec", "obs_norm"), CASES)
def test_fake_quantised_weights_are_the_exports_dequantised_weights(tmp_path, method, spec, obs_norm, target):
    """Before and after optimizer steps (fused Adam, as the learner's): scales, exponents and units move
    with the float weights."""
    path = make_checkpoint(tmp_path / f"{method}.pt", spec, obs_norm=obs_norm, method=method)
    state = checkpoint.load(path)
    actor, normalizer = actor_of(path)
    plain, _ = actor_of(path)  # an actor without the parametrizations, given the float weights to export
    quantizer = FakeQuantizer(actor, target, graph_input_range(actor.encoder, normalizer, target))
    quantizer.attach()
    opt = torch.optim.Adam(quantizer.originals, lr=0.05, fused=True)
    obs, previous = torch.rand(16, 17) * 2 - 1, None
    for _ in range(3):
        fake = chip_weights(actor)
        with torch.no_grad():
            for param, original in zip(chip_params(plain), quantizer.originals):
                param.copy_(original)
        assert same(fake, exported_weights(state, plain, normalizer, target))
        assert not same(fake, chip_weights(plain))  # quantised
        assert previous is None or not same(fake, previous)  # and moved with the float weights
        previous = fake
        opt.zero_grad()
        actor(obs).sum().backward()
        opt.step()
    floats = [original.detach().clone() for original in quantizer.originals]
    quantizer.detach()
    assert same(chip_weights(actor), floats)  # detached: the float weights, as fine-tuned


@pytest.mark.parametrize("target", ["loihi", "float"])
def test_gradients_pass_straight_through_to_the_float_weights(tmp_path, target):
    """The gradient reaching each float weight is the gradient at the quantised weights: what the same
    actor with the export's weights loaded computes."""
    path = make_checkpoint(tmp_path / "dsrl.pt", DSRL_SPEC, obs_norm="maxabs", method="dsrl")
    state = checkpoint.load(path)
    actor, normalizer = actor_of(path)
    obs = torch.rand(32, 17) * 2 - 1
    deployed = copy.deepcopy(actor)
    with torch.no_grad():
        for param, value in zip([p for layer in deployed.chip_layers() for p in (layer.weight, layer.bias)
                                 if p is not None], exported_weights(state, actor, normalizer, target)):
            param.copy_(value)
    quantizer = FakeQuantizer(actor, target, graph_input_range(actor.encoder, normalizer, target))
    float_grads = torch.autograd.grad(actor(obs).square().sum(), [layer.weight for layer in actor.chip_layers()])
    quantizer.attach()
    fake_grads = torch.autograd.grad(actor(obs).square().sum(), quantizer.originals)
    want = torch.autograd.grad(deployed(obs).square().sum(), [layer.weight for layer in deployed.chip_layers()])
    assert all(torch.equal(a, b) for a, b in zip(fake_grads, want))
    assert not all(torch.equal(a, b) for a, b in zip(fake_grads, float_grads))


def test_chip_weights_computed_from_several_parameters_are_refused(tmp_path):
    path = make_checkpoint(tmp_path / "ilcsan.pt", ilcsan_spec(), method="ilcsan")
    actor, _ = actor_of(path)
    with pytest.raises(ExportError, match="computed from several"):
        FakeQuantizer(actor, "loihi", None)


@pytest.fixture(scope="module")
def dsrl_run(tmp_path_factory):
    """A short DSRL run on InvertedPendulum-v5 that keeps its replay in its checkpoint (a low threshold: at
    DSRL's own, so short a run's actor does not spike, and every action is 0)."""
    from conftest import TINY
    from spikerl.api import train

    run = tmp_path_factory.mktemp("qat") / "dsrl"
    train([*TINY, "experiment=dsrl", "train.total_steps=300", "train.start_steps=100", "train.update_after=100",
           "train.gradient_steps=1", "train.eval_every=300", "train.eval_episodes=1", "train.checkpoint_every=300",
           "train.save_replay=true", "actor.neuron.threshold=0.1"], run)
    return run


SHORT = ["--episodes", "1", "--max-episode-steps", "20", "--min-return-ratio", "0.01", "--force", "--json"]


def exported(argv, capsys) -> dict:
    assert export_main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_the_fine_tuned_actor_is_exported_as_the_plain_export_would_and_judged_against_the_float_one(
        dsrl_run, tmp_path, capsys):
    plain = exported([str(dsrl_run), "--quantize", "int8", "--out", str(tmp_path / "ptq"), *SHORT], capsys)
    out = tmp_path / "qat"
    tuned = exported([str(dsrl_run), "--quantize", "int8", "--qat-updates", "40", "--out", str(out), *SHORT], capsys)
    record, closed = tuned["quantization"]["qat"], tuned["quantization"]["closed_loop"]
    # judged against the original float actor; the post-training return is the plain export's
    assert closed["float_return"] == plain["quantization"]["closed_loop"]["float_return"]
    assert record["post_training"]["quantized_return"] == plain["quantization"]["closed_loop"]["quantized_return"]
    assert record["updates"] == 40 and record["lr"] == pytest.approx(1e-4)  # the run's actor lr 1e-3, / 10
    assert record["learning_rates"]["critic_opt"] == [pytest.approx(1e-4)] and record["seconds"] > 0
    assert record["replay"]["source"] == "checkpoint" and record["replay"]["transitions"] == 300
    assert record["fake_quantized"] == ["fc1", "fc2", "readout"] and record["target_actor_fake_quantized"]
    info = json.loads((out / "bundle.json").read_text())
    assert info["quantization"]["qat"] == record
    # qat.pt holds the fine-tuned learner: its plain export is this bundle, and it differs from the run's
    again = exported([str(out / "qat.pt"), "--quantize", "int8", "--out", str(tmp_path / "again"), *SHORT], capsys)
    assert again["quantization"]["closed_loop"]["quantized_returns"] == closed["quantized_returns"]
    mantissas = {}
    for bundle in ("qat", "again", "ptq"):
        with np.load(tmp_path / bundle / "host.npz") as npz:
            mantissas[bundle] = [npz[f"q_{name}_weight_mant"] for name in ("fc1", "fc2", "readout")]
    assert all(np.array_equal(a, b) for a, b in zip(mantissas["qat"], mantissas["again"]))
    assert not all(np.array_equal(a, b) for a, b in zip(mantissas["qat"], mantissas["ptq"]))
    fine, run = checkpoint.load(out / "qat.pt"), checkpoint.load(dsrl_run)
    assert fine["meta"]["qat"]["updates"] == 40 and fine["learner"]["updates"] == run["learner"]["updates"] + 40


def test_the_gate_judges_the_fine_tuned_int8_actor_against_the_original_float_actor(dsrl_run, tmp_path, capsys,
                                                                                    monkeypatch):
    import spikerl.export.qat as qat_module

    fine_tune = qat_module.fine_tune

    def turned_around(*args, **kwargs):  # a fine-tuning that changed what the actor does
        tuned = fine_tune(*args, **kwargs)
        with torch.no_grad():
            tuned.actor.readout.weight.neg_()
        return tuned

    monkeypatch.setattr(qat_module, "fine_tune", turned_around)
    argv = ["--quantize", "int8", "--target", "float", "--episodes", "2", "--max-episode-steps", "100",
            "--min-return-ratio", "0.01", "--force", "--json"]
    plain = exported([str(dsrl_run), *argv, "--out", str(tmp_path / "ptq")], capsys)["quantization"]["closed_loop"]
    tuned = exported([str(dsrl_run), *argv, "--qat-updates", "2", "--out", str(tmp_path / "qat")], capsys)
    closed = tuned["quantization"]["closed_loop"]
    assert closed["quantized_returns"] != plain["quantized_returns"]  # the fine-tuned actor ran
    assert closed["float_returns"] == plain["float_returns"]  # judged against the original float actor


def test_without_a_saved_replay_or_with_qat_collect_the_replay_is_collected(dsrl_run, tmp_path, capsys):
    argv = [str(dsrl_run), "--quantize", "int8", "--target", "float", "--qat-updates", "5", "--qat-collect", "150",
            "--qat-lr", "3e-4", "--out", str(tmp_path / "b"), "--episodes", "1", "--max-episode-steps", "20",
            "--min-return-ratio", "0.01", "--force"]
    assert export_main(argv) == 0
    printed = capsys.readouterr().out
    assert "a replay of 150 env steps acted by the trained actor with its exploration noise" in printed
    record = json.loads((tmp_path / "b" / "bundle.json").read_text())["quantization"]["qat"]
    assert record["replay"]["source"] == "collected" and record["replay"]["transitions"] == 150
    assert record["replay"]["exploration"] == {"act_noise": 0.1, "shared_noise": True}
    assert record["lr"] == 3e-4 and record["learning_rates"]["critic_opt"] == [pytest.approx(3e-4)]
    assert record["not_modelled"].startswith("nothing")


def test_bad_fine_tuning_input_is_one_line_and_writes_nothing(dsrl_run, tmp_path, capsys):
    def refused(path, argv, fragment):
        out = tmp_path / "x"
        assert export_main([str(path), "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("spikerl.export: error: ") and "\n" not in err and fragment in err, err
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".x")]

    q = ["--quantize", "int8"]
    refused(dsrl_run, ["--qat-updates", "10"], "--qat-updates apply to a quantised export: add --quantize int8")
    for bad in ("0", "-5", "ten", "2.5"):
        refused(dsrl_run, [*q, "--qat-updates", bad], f"--qat-updates must be a positive integer, got {bad!r}")
    refused(dsrl_run, [*q, "--qat-updates", "5", "--qat-collect", "0"], "--qat-collect must be a positive integer")
    for bad in ("0", "-0.001", "fast", "inf", "nan"):
        refused(dsrl_run, [*q, "--qat-updates", "5", "--qat-lr", bad], "--qat-lr must be a positive number")
    refused(dsrl_run, [*q, "--qat-lr", "1e-4"], "--qat-lr apply to quantisation-aware fine-tuning: add --qat-updates")
    mlp = make_checkpoint(tmp_path / "td3.pt", MLP_SPEC, method="td3")
    refused(mlp, [*q, "--qat-updates", "5"], "(an ANN) has no spiking part")
    alone = make_checkpoint(tmp_path / "dsrl.pt", DSRL_SPEC, obs_norm="maxabs", method="dsrl")
    refused(alone, [*q, "--qat-updates", "5"], "holds the actor alone")
    lone = tmp_path / "lone" / "last.pt"  # a training checkpoint away from its run folder's config.yaml
    lone.parent.mkdir()
    lone.write_bytes((dsrl_run / "checkpoints" / "last.pt").read_bytes())
    refused(lone, [*q, "--qat-updates", "5"], "config.yaml")
