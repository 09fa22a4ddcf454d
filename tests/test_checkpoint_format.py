"""Checkpoint format: every checkpoint records its format; a format-1 checkpoint (class paths from
before the package was reorganised) is migrated on load, and a newer format is refused in one line."""

from pathlib import Path

import pytest
import torch
from hydra.utils import get_class

from conftest import TINY
from spikerl import evaluate, job
from spikerl.config import compose, validate
from spikerl.runtime import checkpoint

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "checkpoint_v1_popsan.pt"  # written by the old code
FIXTURE_OVERRIDES = [*TINY, "actor.hidden_sizes=[8,8]", "critic.hidden_sizes=[8,8]"]


def targets(spec) -> list[str]:
    """Every `_target_` in a spec, nested ones included."""
    if isinstance(spec, dict):
        own = [spec["_target_"]] if "_target_" in spec else []
        return own + [t for v in spec.values() for t in targets(v)]
    if isinstance(spec, list):
        return [t for v in spec for t in targets(v)]
    return []


def test_the_fixture_is_a_format_1_checkpoint():
    meta = torch.load(FIXTURE, weights_only=True)["meta"]
    assert "format" not in meta and meta["actor_spec"]["_target_"] == "spikerl.actors.PopSpikingActor"


def test_format_1_checkpoint_is_migrated_to_the_current_class_paths():
    meta = checkpoint.load(FIXTURE)["meta"]
    assert meta["format"] == checkpoint.FORMAT_VERSION == 6
    assert meta["actor_spec"]["_target_"] == "spikerl.snn.actors.PopSpikingActor"
    assert meta["actor_spec"]["encoder"]["_target_"] == "spikerl.snn.encoders.PopulationEncoder"
    assert meta["critic_spec"]["_target_"] == "spikerl.rl.networks.QEnsemble" and meta["algo"] == "td3"
    for target in targets(meta["actor_spec"]) + targets(meta["critic_spec"]):
        get_class(target)  # each one names a class of this SpikeRL


@pytest.mark.parametrize("old,new", [
    ("spikerl.actors.PopSpikingActor", "spikerl.snn.actors.PopSpikingActor"),
    ("spikerl.actors.DSRLSpikingActor", "spikerl.snn.actors.DSRLSpikingActor"),
    ("spikerl.actors.MLPActor", "spikerl.rl.networks.MLPActor"),
    ("spikerl.critics.TwinQ", "spikerl.rl.networks.QEnsemble"),
    ("spikerl.encoders.TwoNeuronEncoder", "spikerl.snn.encoders.TwoNeuronEncoder"),
    ("spikerl.encoders.PopulationEncoder", "spikerl.snn.encoders.PopulationEncoder"),
])
def test_every_moved_class_path_is_migrated(tmp_path, old, new):
    path = tmp_path / "old.pt"
    torch.save({"meta": {"actor_spec": {"_target_": "spikerl.actors.MLPActor", "encoder": {"_target_": old}},
                         "critic_spec": {"_target_": old, "hidden_sizes": [8]}}}, path)  # format 1: no key
    meta = checkpoint.load(path)["meta"]
    assert meta["actor_spec"]["encoder"]["_target_"] == new and meta["critic_spec"]["_target_"] == new
    assert meta["critic_spec"]["hidden_sizes"] == [8]
    get_class(new)


def test_new_checkpoints_record_the_format(tmp_path):
    state = {"meta": {"env_id": "x"}, "value": torch.tensor(1)}
    checkpoint.save_atomic(state, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["meta"]["format"] == checkpoint.FORMAT_VERSION
    assert state["meta"] == {"env_id": "x"}  # the caller's meta is left as it was


def test_evaluating_the_format_1_fixture_reproduces_its_last_evaluation(capsys):
    _, mean, std = torch.load(FIXTURE, weights_only=True)["eval_history"][-1].tolist()
    assert evaluate.main([str(FIXTURE), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert f"return {mean:.1f} +- {std:.1f} over 2 episodes (seed 10000)" in out, out


def test_a_newer_format_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "future.pt"
    state = torch.load(FIXTURE, weights_only=True)
    state["meta"]["format"] = 99
    torch.save(state, path)
    message = f"checkpoint {path} has format 99; this SpikeRL reads formats up to 6: upgrade SpikeRL"
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load(path)
    assert str(info.value) == message
    assert evaluate.main([str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"spikerl.evaluate: error: {message}"


def test_the_format_1_fixture_can_be_resumed(tmp_path):
    rc = validate(compose(FIXTURE_OVERRIDES))
    expected = job.expected_meta(rc, *job.env_dims(rc.env.id), rc.dist.world_size)
    checkpoint.check_compatible(checkpoint.load(FIXTURE)["meta"], expected, FIXTURE)
    job.check(validate(compose([*FIXTURE_OVERRIDES, f"resume={FIXTURE}"])))  # the check a run makes first
    rc = validate(compose([*FIXTURE_OVERRIDES, f"resume={FIXTURE}", "train.total_steps=400"]))
    summary = job.train_run(rc, tmp_path / "resumed", "popsan")
    assert summary["total_env_steps"] == 400


def test_a_format_2_checkpoint_is_a_td3_run_with_a_twin_critic(tmp_path):
    """Format 2 predates the choice of algorithm: its runs were TD3, with TwinQ, now a QEnsemble of two
    holding the same weights under the same names."""
    path = tmp_path / "v2.pt"
    torch.save({"meta": {"format": 2, "critic_spec": {"_target_": "spikerl.rl.networks.TwinQ", "hidden_sizes": [8]}},
                "learner": {"critic": {"q1.0.weight": torch.ones(8, 3)}}}, path)
    state = checkpoint.load(path)
    assert state["meta"]["algo"] == "td3" and state["meta"]["format"] == checkpoint.FORMAT_VERSION
    assert state["meta"]["critic_spec"] == {"_target_": "spikerl.rl.networks.QEnsemble", "hidden_sizes": [8]}
    from spikerl.rl.networks import QEnsemble

    assert "q1.0.weight" in QEnsemble(2, 1, hidden_sizes=(8,), n=2).state_dict()


def test_a_format_3_dsrl_actor_keeps_the_one_neuron_it_was_trained_with(tmp_path):
    """Format 3's DSRL actor ran its `neuron` in every layer (the readout too, without a threshold) and
    differentiated the reset; the migrated spec says so explicitly, so the rebuilt actor computes that."""
    from hydra.utils import instantiate

    spec = {"_target_": "spikerl.snn.actors.DSRLSpikingActor", "hidden_sizes": [8, 6], "timesteps": 5,
            "encoder": {"_target_": "spikerl.snn.encoders.TwoNeuronEncoder", "_partial_": True},
            "neuron": {"current_decay": 0.5, "voltage_decay": 0.5, "threshold": 0.8}}
    path = tmp_path / "v3.pt"
    torch.save({"meta": {"format": 3, "actor_spec": spec}}, path)
    migrated = checkpoint.load(path)["meta"]["actor_spec"]
    uniform = {"current_decay": 0.5, "voltage_decay": 0.5}
    assert migrated["neuron"] == {**uniform, "threshold": 0.8, "reset_gradient": True}
    assert migrated["first_layer"] == migrated["readout"] == uniform and migrated["timesteps"] == 5
    actor = instantiate(migrated, obs_dim=3, act_dim=2)
    for lif in (*actor.snn.specs, actor.readout_spec):
        assert (lif.alpha, lif.beta, lif.reset_gradient) == (0.5, 0.5, True)
    assert [s.spiking for s in actor.snn.specs] == [True, True] and not actor.readout_spec.spiking
    mlp = {"_target_": "spikerl.rl.networks.MLPActor", "hidden_sizes": [8]}
    torch.save({"meta": {"format": 3, "actor_spec": mlp}}, path)
    assert checkpoint.load(path)["meta"]["actor_spec"] == mlp  # other actors are left as they were


def test_a_format_4_popsan_actor_is_rebuilt_without_connections_and_with_the_rate_decoder(tmp_path):
    """Format 5 names the output population's connections and the decoder; a format-4 PopSAN actor had
    neither connections nor any decoder but the rate one, and its spec must still equal a PopSAN config's
    (resume compares them)."""
    from hydra.utils import instantiate

    from spikerl.snn.decoders import PopulationDecoder

    spec = {"_target_": "spikerl.snn.actors.PopSpikingActor", "hidden_sizes": [8],
            "encoder": {"_target_": "spikerl.snn.encoders.PopulationEncoder", "_partial_": True}}
    path = tmp_path / "v4.pt"
    torch.save({"meta": {"format": 4, "actor_spec": spec}}, path)
    migrated = checkpoint.load(path)["meta"]["actor_spec"]
    assert migrated["connections"] == "none"
    assert migrated["decoder"] == {"_target_": "spikerl.snn.decoders.PopulationDecoder", "_partial_": True}
    actor = instantiate(migrated, obs_dim=3, act_dim=2)
    assert actor.snn.connections is None and type(actor.decoder) is PopulationDecoder


def test_a_format_5_actor_spec_loses_its_execution_settings_and_still_resumes(tmp_path):
    """Format 5's specs held `neuron_backend` and `compile`, now top-level settings given to the class as
    it is built: migrated, a popsan checkpoint's spec equals today's popsan config's, so it resumes."""
    from spikerl.config import compose, validate

    rc = validate(compose(["experiment=popsan", "env=hopper"]))
    assert "neuron_backend" not in rc.actor and "compile" not in rc.actor
    old = {**rc.actor, "neuron_backend": "fused", "compile": True}
    path = tmp_path / "v5.pt"
    torch.save({"meta": {"format": 5, "actor_spec": old, "env_id": rc.env.id}}, path)
    meta = checkpoint.load(path)["meta"]
    assert meta["actor_spec"] == rc.actor
    checkpoint.check_compatible(meta, {"actor_spec": rc.actor, "env_id": rc.env.id}, path)
    with pytest.raises(checkpoint.CheckpointError, match="its actor differs"):
        checkpoint.check_compatible(meta, {"actor_spec": {**rc.actor, "timesteps": 4}}, path)
