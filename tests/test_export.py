"""Export to NIR: the simulator on its own, the exact round trip (PopSAN at HalfCheetah sizes, regular
and Poisson spikes; DSRL), refusals of bad input, and the energy counts."""

import json

import nir
import numpy as np
import pytest
import torch

from spikerl import evaluate
from spikerl.export import DT, SimulationError, inference_energy, read_bundle, simulate
from spikerl.export.__main__ import main as export_main
from spikerl.export.energy import FIGURES
from spikerl.export.snntorch_reader import run_with_snntorch, supports
from spikerl.rl.normalizer import ObsNormalizer
from spikerl.runtime import checkpoint

ENV, OBS, ACT, STEPS = "HalfCheetah-v4", 17, 6, 25


def popsan_spec(spikes="regular"):
    return {"_target_": "spikerl.snn.actors.PopSpikingActor",
            "encoder": {"_target_": "spikerl.snn.encoders.PopulationEncoder", "_partial_": True, "pop_dim": 10,
                        "mean_range": [-3.0, 3.0], "std": 0.3872983346207417, "spikes": spikes, "threshold": 0.999},
            "hidden_sizes": [256, 256], "out_pop_dim": 10, "timesteps": 5,
            "neuron": {"current_decay": 0.5, "voltage_decay": 0.75, "threshold": 0.5},
            "surrogate": {"name": "rectangular", "half_width": 0.5}}


DSRL_SPEC = {"_target_": "spikerl.snn.actors.DSRLSpikingActor",
             "encoder": {"_target_": "spikerl.snn.encoders.TwoNeuronEncoder", "_partial_": True},
             "hidden_sizes": [64, 48], "timesteps": 4,
             "neuron": {"current_decay": 0.5, "voltage_decay": 0.5, "threshold": 0.2, "reset_gradient": False},
             "first_layer": {"current_decay": 0.0}, "readout": {"current_decay": 0.0, "voltage_decay": 1.0},
             "surrogate": {"name": "fast_sigmoid", "slope": 100.0}}
MLP_SPEC = {"_target_": "spikerl.rl.networks.MLPActor", "hidden_sizes": [256, 256]}


def make_checkpoint(path, spec, obs_norm="zscore", method="popsan", seed=0):
    """A checkpoint with the layout of a run's (random weights, a fitted normaliser), no training."""
    from hydra.utils import instantiate

    torch.manual_seed(seed)
    actor = instantiate(spec, obs_dim=OBS, act_dim=ACT)
    with torch.no_grad():  # trained-looking encoder and decoder parameters, not the initial ones
        if hasattr(getattr(actor, "encoder", None), "mean"):
            actor.encoder.mean.add_(0.2 * torch.randn_like(actor.encoder.mean))
            actor.encoder.std.mul_(1 + 0.2 * torch.rand_like(actor.encoder.std))
    rng = np.random.default_rng(seed)
    normalizer = ObsNormalizer(OBS, obs_norm)
    normalizer.update(rng.normal(size=(500, OBS)) * rng.uniform(0.5, 5, OBS) + rng.normal(size=OBS))
    normalizer.sync()
    meta = {"actor_spec": spec, "obs_dim": OBS, "act_dim": ACT, "env_id": ENV, "precision": "fp32", "seed": seed,
            "method": method, "actor_name": method, "max_episode_steps": STEPS, "obs_norm": obs_norm}
    state = {"meta": meta, "learner": {"actor": actor.state_dict()}, "normalizer": normalizer.state_dict(),
             "counters": {"env_steps": 0}}
    return checkpoint.save_atomic(state, path)


def recorded_observations(policy, steps=STEPS, seed=3):
    """Raw observations of a short HalfCheetah episode acted by `policy`."""
    from spikerl.rl.envs import ActionScaler, make_vec_env

    envs = make_vec_env(ENV, 1, steps)
    scale = ActionScaler(envs.single_action_space)
    obs, _ = envs.reset(seed=seed)
    seen = []
    for _ in range(steps):
        raw = torch.as_tensor(obs, dtype=torch.float32)
        seen.append(raw)
        obs, *_ = envs.step(scale(policy(raw).numpy()))
    envs.close()
    return torch.cat(seen)


def actor_of(path):
    from spikerl.rl.evaluation import trained_actor as load_actor

    return load_actor(checkpoint.load(path))


# ---- the simulator, on its own ----------------------------------------------------------------------

def one_node_graph(node, n):
    return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n])}), "n": node,
                               "output": nir.Output(output_type={"output": np.array([n])})},
                        edges=[("input", "n"), ("n", "output")], metadata={"dt": 1e-3})


def test_simulator_follows_the_cubalif_equations_in_both_update_orders():
    tau_syn, tau_mem, w_in, r, v_leak, thr = 2e-3, 5e-3, 1.5, 2.0, 0.05, 0.4
    node = nir.CubaLIF(tau_syn=np.array([tau_syn]), tau_mem=np.array([tau_mem]), r=np.array([r]),
                       v_leak=np.array([v_leak]), v_threshold=np.array([thr]), v_reset=np.array([-0.1]),
                       w_in=np.array([w_in]))
    x = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64).view(-1, 1, 1)
    for order in ("current-first", "euler"):
        i = v = 0.0
        expected = []
        for s in x.flatten().tolist():  # the NIR ODEs, forward Euler at dt, written out by hand
            i_new = i + 1e-3 / tau_syn * (-i + w_in * s)
            v = v + 1e-3 / tau_mem * (v_leak - v + r * (i_new if order == "current-first" else i))
            i = i_new
            expected.append(float(v > thr))
            v = -0.1 if v > thr else v
        out = simulate(one_node_graph(node, 1), x, order=order)["output"]
        assert out.flatten().tolist() == expected, order
    first, euler = (simulate(one_node_graph(node, 1), x, order=o)["output"] for o in ("current-first", "euler"))
    assert not torch.equal(first, euler)  # the two discretisations differ: the order must be stated


def test_simulator_sums_incoming_edges_and_refuses_what_it_cannot_run():
    w = np.array([[1.0, 2.0]], dtype=np.float32)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                                "a": nir.Linear(weight=w), "b": nir.Affine(weight=w, bias=np.array([1.0], np.float32)),
                                "s": nir.Scale(scale=np.array([0.5], np.float32)),
                                "output": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("input", "a"), ("input", "b"), ("a", "s"), ("b", "s"), ("s", "output")],
                         metadata={"dt": 1e-3})
    x = torch.tensor([[[1.0, 1.0]]])
    assert simulate(graph, x)["output"].item() == pytest.approx(0.5 * (3.0 + 4.0))
    with pytest.raises(SimulationError, match="must be"):
        simulate(graph, torch.zeros(1, 1, 3))
    orphan = nir.NIRGraph(nodes={**graph.nodes, "c": nir.Scale(scale=np.array([1.0], np.float32))},
                          edges=[*graph.edges, ("c", "c")], type_check=False)
    orphan.metadata = {"dt": 1e-3}
    with pytest.raises(SimulationError, match="node 'c' has only recurrent input edges"):
        simulate(orphan, x)


def test_an_edge_that_closes_a_cycle_carries_the_previous_steps_output():
    """y_t = 0.5 (x_t + y_{t-1}), y_{-1} = 0: a recurrent edge is delayed by one step, the others are not."""
    half = nir.Scale(scale=np.array([0.5], np.float32))
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}), "s": half,
                                "output": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("input", "s"), ("s", "s"), ("s", "output")], metadata={"dt": 1e-3},
                         type_check=False)
    out, trace = simulate(graph, torch.tensor([1.0, 1.0, 1.0, 0.0]).view(-1, 1, 1), record=True)
    assert out["output"].flatten().tolist() == [0.5, 0.75, 0.875, 0.4375]
    assert trace["s"][0].flatten().tolist() == [1.0, 1.5, 1.75, 0.875]  # the node's input, x_t + y_{t-1}


def test_snntorch_reads_a_small_trained_actor_back_to_its_actions(tiny_run, capsys):
    """A PopSAN actor trained for a few hundred steps (InvertedPendulum), exported, read back by snnTorch's
    own NIR importer from actor.nir: its output spikes give the trained policy's actions exactly."""
    summary, run_dir = tiny_run()
    assert summary["updates"] > 0
    assert export_main([str(run_dir), "--episodes", "1", "--max-episode-steps", "20"]) == 0
    assert "snnTorch's NIR importer read actor.nir" in capsys.readouterr().out
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    policy = evaluate.load_policy(state)
    bundle = read_bundle(run_dir / "nir")
    raw = torch.as_tensor(np.random.default_rng(0).normal(size=(64, state["meta"]["obs_dim"])), dtype=torch.float32)
    x = bundle.host.encode(bundle.host.normalise(raw))
    ran = run_with_snntorch(nir.read(run_dir / "nir" / "actor.nir"), x)
    assert torch.equal(bundle.host.decode(ran["output"]), policy(raw)) and 0 < ran["output"].mean() < 1


def test_graphs_snntorchs_importer_would_compute_otherwise_are_not_given_to_it():
    """snnTorch 1.0's importer maps no I/LI/CubaLI node, miswires a recurrent edge and assumes dt = 1e-4 s."""
    lif = nir.LIF(tau=np.full(2, 2e-4), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2),
                  v_reset=np.zeros(2))
    graph = one_node_graph(lif, 2)
    assert supports(graph) == "snnTorch's importer assumes dt = 0.0001 s; the graph's is 0.001 s"
    graph.metadata["dt"] = DT
    assert supports(graph) is None
    loop = nir.NIRGraph(nodes={**graph.nodes, "rec": nir.Linear(weight=np.eye(2))},
                        edges=[*graph.edges, ("n", "rec"), ("rec", "n")], metadata={"dt": DT}, type_check=False)
    assert supports(loop) == "snnTorch's importer does not wire a recurrent edge as a one-step-delayed input"
    assert supports(one_node_graph(nir.I(r=np.ones(2)), 2)) == "snnTorch's importer maps no I node"


# ---- export and exact round trip ----------------------------------------------------------------------

def test_popsan_at_halfcheetah_sizes_round_trips_exactly(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "popsan.pt", popsan_spec())
    out = tmp_path / "bundle"
    assert export_main([str(ckpt), "--out", str(out), "--episodes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "equal the trained actor's" in printed and "snnTorch's NIR importer read actor.nir" in printed
    assert sorted(p.name for p in out.iterdir()) == ["actor.nir", "bundle.json", "host.npz"]
    info = json.loads((out / "bundle.json").read_text())
    assert info["round_trip"]["ok"] and info["round_trip"]["actor_forward_equal"]

    graph = nir.read(out / "actor.nir")  # NIR's own reader; the graph is built from NIR's own nodes
    assert [type(graph.nodes[n]).__name__ for n in ("input", "fc1", "lif1", "fc2", "lif2", "fc3", "lif3", "output")] \
        == ["Input", "Affine", "CubaLIF", "Affine", "CubaLIF", "Affine", "CubaLIF", "Output"]
    assert graph.nodes["fc1"].weight.shape == (256, 170) and graph.nodes["fc3"].weight.shape == (60, 256)
    lif = graph.nodes["lif2"]
    assert np.all(1 - DT / lif.tau_syn == 0.5) and np.all(1 - DT / lif.tau_mem == 0.75)
    assert np.all(lif.w_in * DT / lif.tau_syn == 1.0) and np.all(lif.r * DT / lif.tau_mem == 1.0)
    assert np.all(lif.v_threshold == 0.5) and np.all(lif.v_reset == 0) and np.all(lif.v_leak == 0)

    # independently of the export's own check: the trained actor, as `spikerl.evaluate` rebuilds it,
    # acts on an episode; the bundle read back gives the same actions and output spikes, bit for bit
    state = checkpoint.load(ckpt)
    policy = evaluate.load_policy(state)
    raw = recorded_observations(policy)
    bundle = read_bundle(out)
    ran = bundle.run(raw, record=True)
    assert torch.equal(ran["action"], policy(raw))
    actor, normalizer = actor_of(ckpt)
    with torch.no_grad():
        enc = actor.encoder(normalizer(raw), 5)
        spikes = actor.snn(enc)
    assert torch.equal(ran["encoder_input"], enc) and torch.equal(ran["output"], spikes)
    # a third-party reader: snnTorch's own NIR importer computes the same spikes and actions
    sn = run_with_snntorch(graph, enc)
    assert torch.equal(sn["output"], spikes) and torch.equal(bundle.host.decode(sn["output"]), policy(raw))
    assert all(torch.equal(sn[name], ran["trace"][name][1]) for name in ("lif1", "lif2", "lif3"))
    checked = info["round_trip"]["snntorch"]
    assert checked["checked"] and all(checked["layer_spikes_equal"]) and checked["actions_equal"]
    for name in ("lif1", "lif2", "lif3"):  # every layer fires, but not always: the test is not vacuous
        rate = ran["trace"][name][1].mean().item()
        assert 0.01 < rate < 0.99, (name, rate)
    # NIR's reference integrator's order (previous step's current) would not reproduce the actor
    lagged = simulate(bundle.graph, enc, order="euler")["output"]
    assert not torch.equal(lagged, spikes)
    # the host's action scaling is the env's
    scaler = bundle.host.action
    assert np.array_equal(scaler.low, -np.ones(ACT)) and np.array_equal(scaler.high, np.ones(ACT))


def test_poisson_round_trip_given_the_same_encoder_spikes(tmp_path):
    ckpt = make_checkpoint(tmp_path / "poisson.pt", popsan_spec("poisson"), seed=1)
    out = tmp_path / "bundle"
    assert export_main([str(ckpt), "--out", str(out), "--episodes", "1", "--json"]) == 0
    bundle = read_bundle(out)
    actor, normalizer = actor_of(ckpt)
    raw = torch.as_tensor(np.random.default_rng(0).normal(size=(64, OBS)) * 2, dtype=torch.float32)
    torch.manual_seed(5)
    with torch.no_grad():
        spikes_in = actor.encoder(normalizer(raw), 5)  # the actor's own Poisson spikes
        out_spikes = actor.snn(spikes_in)
        action = actor.decoder(out_spikes)
    ran = bundle.run(raw, encoder_input=spikes_in)
    assert torch.equal(ran["output"], out_spikes) and torch.equal(ran["action"], action)
    assert 0 < out_spikes.mean().item() < 1


def test_dsrl_exports_with_linear_synapses_a_lif_first_layer_and_an_integrator_readout(tmp_path):
    """DSRL's first layer has no synaptic current (a LIF node), its readout neither a current nor a leak
    (an I node); the round trip through the graph stays exact."""
    ckpt = make_checkpoint(tmp_path / "dsrl.pt", DSRL_SPEC, obs_norm="maxabs", method="dsrl")
    out = tmp_path / "bundle"
    assert export_main([str(ckpt), "--out", str(out), "--episodes", "1"]) == 0
    graph = nir.read(out / "actor.nir")
    assert [type(graph.nodes[n]).__name__ for n in ("fc1", "lif1", "fc2", "lif2", "readout", "integrator")] \
        == ["Linear", "LIF", "Linear", "CubaLIF", "Linear", "I"]
    skipped = json.loads((out / "bundle.json").read_text())["round_trip"]["snntorch"]
    assert skipped == {"checked": False, "why": "snnTorch's importer maps no I node"}
    policy = evaluate.load_policy(checkpoint.load(ckpt))
    raw = recorded_observations(policy)
    assert torch.equal(read_bundle(out).run(raw)["action"], policy(raw))
    # its real-valued input makes the first layer dense MACs; the readout does not spike
    first, second, readout = inference_energy(ckpt, episodes=1)["layers"]
    assert first["input"] == "real" and first["macs"] == 4 * 2 * OBS * 64 and first["synaptic_ops"] == 0
    assert second["input"] == "spikes" and second["synaptic_ops"] > 0 and readout["firing_rate"] is None
    assert [layer["neuron"] for layer in (first, second, readout)] == ["LIF", "CubaLIF", "I"]


def ilcsan_spec(readout="last", decay=1.0, connections="intra"):
    return {**popsan_spec(), "hidden_sizes": [64, 48], "connections": connections,
            "decoder": {"_target_": "spikerl.snn.decoders.MembraneDecoder", "_partial_": True, "decay": decay,
                        "readout": readout}}


@pytest.mark.parametrize(("readout", "decay", "connections", "membrane"), [
    ("last", 1.0, "intra", "I"), ("max", 0.7, ["self", "lateral"], "LI"), ("mean", 0.0, "self", "LI")])
def test_ilcsan_exports_a_recurrent_edge_and_decoder_neurons_and_round_trips_exactly(
        tmp_path, readout, decay, connections, membrane):
    """ILC-SAN's connections inside the output population are a Linear node on an edge back into that
    population (the simulator delays it one step), their bias joins the layer's Affine bias, and the
    membrane decoder is an Affine node into one I (no leak) or LI neuron per action; the host reads the
    membranes (last, max or mean) and takes tanh. Actions and every layer's spikes equal the actor's."""
    spec = ilcsan_spec(readout, decay, connections)
    ckpt = make_checkpoint(tmp_path / "ilcsan.pt", spec, method="ilcsan")
    out = tmp_path / "bundle"
    assert export_main([str(ckpt), "--out", str(out), "--episodes", "1"]) == 0
    info = json.loads((out / "bundle.json").read_text())
    assert info["round_trip"]["ok"] and info["host"]["decoder"]["readout"] == readout
    assert info["round_trip"]["snntorch"] == {"checked": False, "why": f"snnTorch's importer maps no {membrane} node"}
    graph = nir.read(out / "actor.nir")
    assert ("lif3", "decoder") in graph.edges and ("decoder", "decoder_membrane") in graph.edges
    assert type(graph.nodes["decoder_membrane"]).__name__ == membrane
    assert graph.nodes["decoder"].weight.shape == (ACT, ACT * 10)
    assert np.count_nonzero(graph.nodes["decoder"].weight) <= ACT * 10
    intra = graph.nodes["intra"].weight
    assert intra.shape == (60, 60) and ("lif3", "intra") in graph.edges and ("intra", "lif3") in graph.edges
    assert np.all(intra[:10, 10:] == 0) and (np.all(np.diag(intra) != 0) == ("self" in str(connections) or
                                                                            connections == "intra"))
    policy = evaluate.load_policy(checkpoint.load(ckpt))
    raw = recorded_observations(policy)
    ran = read_bundle(out).run(raw, record=True)
    assert torch.equal(ran["action"], policy(raw))
    actor, normalizer = actor_of(ckpt)
    with torch.no_grad():
        spikes = actor.snn(actor.encoder(normalizer(raw), 5))
        assert torch.equal(ran["trace"]["lif3"][1], spikes)
        assert torch.equal(ran["output"], actor.decoder.membranes(spikes))
    assert 0.01 < spikes.mean().item() < 0.99
    # the recurrent edge matters: without it the output layer's spikes differ
    cut = nir.NIRGraph(nodes=graph.nodes, edges=[e for e in graph.edges if e != ("intra", "lif3")],
                       metadata=graph.metadata, type_check=False)
    assert not torch.equal(simulate(cut, ran["encoder_input"])["output"], ran["output"])
    # energy: a spike of the output population reaches its own block only (10 neurons, not 60)
    layers = {layer["name"]: layer for layer in inference_energy(ckpt, episodes=1)["layers"]}
    assert layers["intra->lif3"]["nonzero_weights"] == np.count_nonzero(intra)
    assert layers["decoder->decoder_membrane"]["nonzero_weights"] == ACT * 10
    assert layers["decoder->decoder_membrane"]["synaptic_ops"] == pytest.approx(
        layers["intra->lif3"]["input_rate"] * 5 * 60)


# ---- bad input ----------------------------------------------------------------------------------------

class IdentityDecoder(torch.nn.Module):
    """A decoder the export has never heard of (its first action neuron's rate, for each action)."""

    def __init__(self, act_dim, pop_dim):
        super().__init__()
        self.act_dim, self.pop_dim = act_dim, pop_dim

    def unsquashed(self, spikes):
        return spikes.mean(0).unflatten(-1, (self.act_dim, self.pop_dim))[..., 0]

    def forward(self, spikes):
        return torch.tanh(self.unsquashed(spikes))


def test_bad_input_is_refused_in_one_line_and_nothing_is_overwritten(tmp_path, capsys):
    def refused(argv, fragment):
        assert export_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("spikerl.export: error: ") and "\n" not in err and fragment in err, err

    mlp = make_checkpoint(tmp_path / "td3.pt", MLP_SPEC, method="td3")
    refused([str(mlp), "--out", str(tmp_path / "a")], "MLP")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(mlp.read_bytes()[:2000])
    refused([str(truncated), "--out", str(tmp_path / "b")], "cannot read checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save([1, 2, 3], foreign)
    refused([str(foreign), "--out", str(tmp_path / "c")], "not a SpikeRL checkpoint")
    assert not any((tmp_path / name).exists() for name in "abc")

    dynamic = make_checkpoint(tmp_path / "mdcsan.pt", {**popsan_spec(), "neuron": {"model": "dynamic"}},
                              method="mdcsan")
    refused([str(dynamic), "--out", str(tmp_path / "d")], "NIR has no node for MDC-SAN's dynamic neuron")
    normalised = make_checkpoint(tmp_path / "carebn.pt", {**popsan_spec(), "normalization": {
        "_target_": "spikerl.snn.normalization.CareBN", "_partial_": True}}, method="carebn")
    refused([str(normalised), "--out", str(tmp_path / "e")], "does not write normalisation layers (CareBN")
    unknown = make_checkpoint(tmp_path / "identity.pt", {**popsan_spec(), "decoder": {
        "_target_": "tests.test_export.IdentityDecoder", "_partial_": True}})
    refused([str(unknown), "--out", str(tmp_path / "f")], "does not know the decoder IdentityDecoder")
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()

    ckpt = make_checkpoint(tmp_path / "popsan.pt", popsan_spec())
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    refused([str(ckpt), "--out", str(existing)], "--force")
    assert (existing / "keep.txt").read_text() == "mine" and len(list(existing.iterdir())) == 1
    assert export_main([str(ckpt), "--out", str(existing), "--force", "--episodes", "1"]) == 0
    assert sorted(p.name for p in existing.iterdir()) == ["actor.nir", "bundle.json", "host.npz"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".existing")]  # no temporary left


# ---- energy -------------------------------------------------------------------------------------------

def test_energy_counts_are_the_actors_spikes_times_fan_out(tmp_path):
    from spikerl.export.energy import spiking_energy
    from spikerl.export.nir_graph import build_bundle

    ckpt = make_checkpoint(tmp_path / "popsan.pt", popsan_spec())
    state = checkpoint.load(ckpt)
    actor, normalizer = actor_of(ckpt)
    result, raw = spiking_energy(state, build_bundle(state, str(ckpt), actor, normalizer), episodes=2,
                                 max_episode_steps=10)
    assert result["actions"] == raw.shape[0] == 20
    with torch.no_grad():
        x = actor.encoder(normalizer(raw), 5)
        for layer, linear, spec in zip(result["layers"], actor.snn.linears, actor.snn.specs):
            assert layer["input"] == "spikes" and layer["macs"] == 0
            assert layer["synaptic_ops"] == pytest.approx(x.sum().item() * linear.out_features / 20)
            assert layer["input_rate"] == pytest.approx(x.mean().item())
            x, _ = actor.snn.run(spec, linear(x))
            assert layer["firing_rate"] == pytest.approx(x.mean().item())
            assert layer["neuron_updates"] == 5 * linear.out_features
    t = result["totals"]
    e45 = t["synaptic_ops"] * 0.9 + sum(l["neuron_updates"] * (2 * 3.7 + 4 * 0.9) for l in result["layers"])
    assert result["energy_pj"]["45nm"] == pytest.approx(e45)
    assert result["energy_pj"]["loihi"] == pytest.approx(t["synaptic_ops"] * 23.6 + t["neuron_updates"] * 52)
    assert result["energy_uj"]["45nm"] == pytest.approx(e45 * 1e-6)
    json.dumps(result)  # the report can store it as it is


def test_ann_energy_is_its_macs_and_the_loihi_figures_are_flagged_unverified(tmp_path, capsys):
    mlp = make_checkpoint(tmp_path / "td3.pt", MLP_SPEC, method="td3")
    result = inference_energy(mlp)
    macs = OBS * 256 + 256 * 256 + 256 * ACT
    assert result["kind"] == "ann" and result["totals"]["macs"] == macs
    assert result["energy_pj"]["45nm"] == pytest.approx(macs * 4.6 + (256 + 256 + ACT) * 0.9)
    assert result["energy_pj"]["loihi"] is None
    assert export_main([str(mlp), "--energy-only", "--json"]) == 0  # the CLI's way to the ANN's figures
    assert json.loads(capsys.readouterr().out)["totals"]["macs"] == macs
    assert FIGURES["fp32_add"].pj == 0.9 and FIGURES["fp32_mult"].pj == 3.7 and FIGURES["fp32_mac"].pj == 4.6
    assert not FIGURES["loihi_synaptic_op"].checked and "Davies" in FIGURES["loihi_synaptic_op"].source


def test_evaluate_prints_energy_and_firing_rates_after_its_line(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "popsan.pt", popsan_spec())
    assert evaluate.main([str(ckpt), "--episodes", "1", "--energy-episodes", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "return" in lines[0] and lines[1].startswith("inference energy per action over 1 episodes")
    assert sum("firing rate" in line for line in lines) == 3
    mlp = make_checkpoint(tmp_path / "td3.pt", MLP_SPEC, method="td3")
    assert evaluate.main([str(mlp), "--episodes", "1"]) == 0
    assert "MACs" in capsys.readouterr().out.splitlines()[1]
