"""The host side of an exported actor (normaliser, encoder, decoder, action scaling) computes what the
actor's own parts compute, for every encoder and decoder option and every exportable preset: the same
encoder output, bit for bit, and the same action through the bundle. `inference_energy` and the export
both act through this host, so a part the host gets wrong gives wrong energy figures without a word."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from spikerl.config import compose, validate
from spikerl.export import ExportError, inference_energy, read_bundle, write_bundle
from spikerl.export.nir_graph import build_bundle
from spikerl.rl.normalizer import ObsNormalizer

ENV, OBS, ACT = "HalfCheetah-v4", 17, 6
POP = {"_target_": "spikerl.snn.encoders.PopulationEncoder", "_partial_": True, "pop_dim": 10,
       "mean_range": [-3.0, 3.0], "std": 0.3872983346207417, "threshold": 0.999}


def popsan(encoder=None, decoder=None, **extra):
    return {"_target_": "spikerl.snn.actors.PopSpikingActor", "encoder": encoder or {**POP, "spikes": "regular"},
            "hidden_sizes": [64, 48], "out_pop_dim": 10, "timesteps": 5,
            "neuron": {"current_decay": 0.5, "voltage_decay": 0.75, "threshold": 0.5},
            "surrogate": {"name": "rectangular", "half_width": 0.5},
            **({"decoder": decoder} if decoder else {}), **extra}


def membrane(readout, decay=1.0):
    return {"_target_": "spikerl.snn.decoders.MembraneDecoder", "_partial_": True, "decay": decay, "readout": readout}


OPTIONS = {
    **{f"population-{spikes}-{squash}": popsan({**POP, "spikes": spikes, "squash": squash})
       for spikes in ("regular", "poisson", "real") for squash in ("none", "tanh")},
    "raw (ILC-SAN --encode layer)": popsan({"_target_": "spikerl.snn.encoders.RawEncoder", "_partial_": True}),
    **{f"membrane-{readout}": popsan(decoder=membrane(readout), connections="intra")
       for readout in ("last", "mean", "max")},
    "membrane-leaky": popsan(decoder=membrane("mean", 0.8)),
    "two-neuron (DSRL)": {"_target_": "spikerl.snn.actors.DSRLSpikingActor",
                          "encoder": {"_target_": "spikerl.snn.encoders.TwoNeuronEncoder", "_partial_": True},
                          "hidden_sizes": [64, 48], "timesteps": 4,
                          "neuron": {"threshold": 0.2}},
}
PRESETS = ["popsan", "spikerl", "dsrl", "ilcsan", "popsan_sac"]


def preset_spec(experiment: str) -> tuple[dict, str]:
    rc = validate(compose([f"experiment={experiment}", "env=halfcheetah", "compile=false"]))
    return rc.actor, rc.normalizer.kind


def trained_looking(spec: dict, norm_kind: str, seed: int = 0):
    """An actor of `spec` with perturbed encoder and decoder parameters and a fitted normaliser."""
    torch.manual_seed(seed)
    actor = instantiate(spec, obs_dim=OBS, act_dim=ACT).eval()
    with torch.no_grad():
        for name, p in actor.named_parameters():
            if name.startswith(("encoder.", "decoder.")):
                p.add_(0.2 * torch.randn_like(p))
            elif name.startswith("snn.linears"):  # enough spikes at these small widths
                p.mul_(2.0)
    rng = np.random.default_rng(seed)
    normalizer = ObsNormalizer(OBS, norm_kind)
    normalizer.update(rng.normal(size=(500, OBS)) * rng.uniform(0.5, 5, OBS) + rng.normal(size=OBS))
    normalizer.sync()
    meta = {"actor_spec": spec, "obs_dim": OBS, "act_dim": ACT, "env_id": ENV, "precision": "fp32", "seed": seed,
            "method": "test", "actor_name": "test", "max_episode_steps": 20}
    state = {"meta": meta, "learner": {"actor": actor.state_dict()}, "normalizer": normalizer.state_dict(),
             "counters": {"env_steps": 0}}
    return actor, normalizer, state


def raw_observations(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, OBS, generator=g) * 3.0


def check_host_equals_actor(spec, norm_kind, tmp_path=None):
    actor, normalizer, state = trained_looking(spec, norm_kind)
    bundle = build_bundle(state, actor=actor, normalizer=normalizer)
    if tmp_path is not None:  # and as written to disk and read back
        write_bundle(bundle, tmp_path / "bundle")
        bundle = read_bundle(tmp_path / "bundle")
    raw = raw_observations()
    host = bundle.host
    obs = normalizer(raw)
    assert torch.equal(host.normalise(raw), obs)
    torch.manual_seed(7)  # Poisson spikes: the same draws from the same generator state
    from_host = host.encode(obs)
    torch.manual_seed(7)
    from_actor = actor.encoder(obs, actor.timesteps)
    assert torch.equal(from_host, from_actor)
    assert from_actor.abs().sum() > 0
    torch.manual_seed(7)
    action = bundle.run(raw)["action"]
    torch.manual_seed(7)
    with torch.inference_mode():
        expected = actor(obs)
    assert torch.equal(action, expected)
    assert action.std() > 0  # not saturated or constant: the comparison means something


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_host_computes_what_the_actor_computes_for_every_part_option(option):
    check_host_equals_actor(OPTIONS[option], "zscore")


@pytest.mark.parametrize("experiment", PRESETS)
def test_host_computes_what_the_actor_computes_for_every_exportable_preset(experiment, tmp_path):
    check_host_equals_actor(*preset_spec(experiment), tmp_path)


@pytest.mark.parametrize("experiment", ["mdcsan", "carebn", "td3"])
def test_presets_without_a_nir_form_are_refused_in_one_line(experiment):
    actor, normalizer, state = trained_looking(*preset_spec(experiment))
    with pytest.raises(ExportError) as err:
        build_bundle(state, actor=actor, normalizer=normalizer)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("norm_kind", ["zscore", "maxabs", "none"])
def test_every_normaliser_kind_round_trips(norm_kind, tmp_path):
    check_host_equals_actor(OPTIONS["population-regular-tanh"], norm_kind, tmp_path)


def test_host_operation_counts_follow_the_parts():
    """The host's float operations per action are each part's own: the tanh squash adds an exp-like
    tanh per observation dim, real-valued population input needs no spike generation."""
    def ops(spec):
        actor, normalizer, state = trained_looking(spec, "zscore")
        return build_bundle(state, actor=actor, normalizer=normalizer).host.ops()

    regular, real = ops(OPTIONS["population-regular-none"]), ops(OPTIONS["population-real-none"])
    squashed = ops(OPTIONS["population-regular-tanh"])
    cells, T = OBS * 10, 5
    assert regular["adds"] - real["adds"] == 3 * cells * T and regular["mults"] - real["mults"] == cells * T
    assert squashed["tanhs"] - regular["tanhs"] == OBS
    assert regular["tanhs"] == ACT and regular["randoms"] == 0


def test_inference_energy_acts_through_the_actors_own_encoding(tmp_path):
    """With the real-valued encoder the host feeds activations, not spikes: the first layer's input is
    real (dense MACs), where the old host's regular spikes made it binary."""
    from spikerl.runtime import checkpoint

    _, _, state = trained_looking(OPTIONS["population-real-none"], "zscore")
    path = checkpoint.save_atomic(state, tmp_path / "last.pt")
    result = inference_energy(path, episodes=1)
    first = result["layers"][0]
    assert first["input"] == "real" and first["macs"] > 0 and first["input_rate"] is None


# ---- a worked example: a new encoder and a new decoder, written only here ---------------------------------
# Each implements the part protocol in its own class (here, its own test module) and is named by its
# `_target_`; the export, the host and the energy count take them with no change anywhere else.

class ThermometerEncoder(torch.nn.Module):
    """Each observation dim drives `levels` neurons with thresholds evenly over [-2, 2]: neuron k spikes
    at every step while o_d > threshold_k (a deterministic, binary code)."""

    deterministic = True

    def __init__(self, obs_dim: int, levels: int = 8):
        super().__init__()
        self.obs_dim, self.levels = obs_dim, levels
        self.register_buffer("thresholds", torch.linspace(-2.0, 2.0, levels))

    @property
    def num_outputs(self) -> int:
        return self.obs_dim * self.levels

    def forward(self, obs, timesteps, generator=None):
        spikes = (obs.unsqueeze(-1) > self.thresholds).to(obs.dtype).flatten(1)
        return spikes.unsqueeze(0).expand(timesteps, *spikes.shape)

    def input_range(self, obs_bound):
        return None

    def host_state(self):
        return {"obs_dim": self.obs_dim, "levels": self.levels}, {"thresholds": self.thresholds.numpy().copy()}

    @classmethod
    def from_host(cls, config, arrays):
        enc = cls(config["obs_dim"], config["levels"])
        enc.thresholds.copy_(torch.from_numpy(arrays["thresholds"]))
        return enc

    def host_ops(self, timesteps):
        return {"adds": self.num_outputs, "mults": 0, "exps": 0, "tanhs": 0, "randoms": 0}


class DenseCountDecoder(torch.nn.Module):
    """tanh(W c + b) of the output layer's spike counts c, one full linear map (not grouped by action)."""

    def __init__(self, act_dim: int, pop_dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(act_dim * pop_dim, act_dim)

    def unsquashed(self, spikes):
        return self.linear(spikes.sum(0))

    def forward(self, spikes):
        return torch.tanh(self.unsquashed(spikes))

    def chip_layers(self):
        return []

    def chip_output(self, spikes):
        return spikes

    def host_part(self):
        return self

    def host_state(self):
        return {}, {name: p.detach().numpy().copy() for name, p in self.linear.named_parameters()}

    @classmethod
    def from_host(cls, config, arrays):
        act_dim, n = arrays["weight"].shape
        dec = cls(act_dim, n // act_dim)
        with torch.no_grad():
            dec.linear.weight.copy_(torch.from_numpy(arrays["weight"]))
            dec.linear.bias.copy_(torch.from_numpy(arrays["bias"]))
        return dec

    def host_ops(self, timesteps):
        n = self.linear.in_features
        return {"adds": n * timesteps + n * self.linear.out_features, "mults": n * self.linear.out_features,
                "exps": 0, "tanhs": self.linear.out_features, "randoms": 0}


def test_a_new_encoder_and_decoder_export_with_no_change_to_the_export(tmp_path):
    module = ThermometerEncoder.__module__
    spec = popsan({"_target_": f"{module}.ThermometerEncoder", "_partial_": True, "levels": 6},
                  {"_target_": f"{module}.DenseCountDecoder", "_partial_": True})
    check_host_equals_actor(spec, "zscore", tmp_path)  # and through bundle.json and host.npz
    info = read_bundle(tmp_path / "bundle").info
    assert info["host"]["encoder"]["class"] == f"{module}.ThermometerEncoder"
    assert info["host"]["decoder"]["class"] == f"{module}.DenseCountDecoder"
