"""A run's name says what ran: a preset with a part, learner or trainer value changed is a variant with a
name of its own, every preset trains with every learner or is refused in one line, and a report never
pools runs composed differently under one name."""

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import make_run_folder
from spikerl import job
from spikerl.analysis.report import write_report
from spikerl.config import CONF_DIR, ConfigError, compose, validate
from spikerl.rl.replay import Batch

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
ALGOS = ["td3", "ddpg", "sac"]
# the preset x learner pairs refused, with what the one-line refusal says and the overrides that then train
REFUSED = {("dsrl", "sac"): ("algo.shared_noise=false", ["algo.shared_noise=false"]),
           ("proxytarget", "sac"): ("sac keeps no target actor", ["~algo.target"])}


def name(*overrides):
    """The run's name as the summary and the run folder each get it."""
    rc = validate(compose(list(overrides)), overrides=list(overrides))
    folder = str(compose(list(overrides), with_hydra=True).hydra.run.dir).split("/")[1]
    assert folder == rc.method
    return rc.method


@pytest.mark.parametrize("overrides,expected", [
    (["experiment=popsan"], "popsan"),
    (["experiment=popsan", "env=hopper", "seed=3", "train.total_steps=500", "logger=none"], "popsan"),
    (["experiment=popsan", "algo=sac"], "popsan-sac"),
    (["experiment=popsan_sac"], "popsan-sac"),
    (["experiment=ilcsan", "encoder=two_neuron"], "ilcsan+encoder=two_neuron"),
    (["experiment=popsan", "algo=sac", "algo.alpha=0.1"], "popsan-sac+algo.alpha=0.1"),
    (["experiment=spikerl", "precision=fp32"], "spikerl+precision=fp32"),
    (["experiment=popsan", "train.batch_size=256"], "popsan+train.batch_size=256"),
    (["experiment=popsan", "method=mine", "actor.timesteps=8"], "mine"),  # the user names it
    (["experiment=popsan", "algo.target=proxy"], "popsan+algo.target=proxy"),
    (["experiment=proxytarget", "algo.target=polyak"], "proxytarget+algo.target=polyak"),
    (["experiment=proxytarget", "algo.proxy.iters=1"], "proxytarget+algo.proxy.iters=1"),
])
def test_a_run_is_named_by_what_it_composes(overrides, expected):
    assert name(*overrides) == expected


def test_a_long_change_is_named_by_its_hash_and_the_summary_lists_it():
    overrides = ["experiment=mdcsan", "env=walker2d", "actor.decoder._target_=spikerl.snn.decoders.MembraneDecoder"]
    label = name(*overrides)
    assert label.startswith("mdcsan~") and len(label) == len("mdcsan~") + 8
    assert validate(compose(overrides), overrides=overrides).variant == [overrides[-1]]
    assert name(*overrides[:2], "actor.decoder._target_=spikerl.snn.decoders.PopulationDecoder") != label


def test_settings_an_actor_does_not_have_are_refused_not_ignored():
    with pytest.raises(ConfigError, match="takes no encoder"):
        validate(compose(["experiment=td3", "encoder.spikes=poisson"]),
                 overrides=["experiment=td3", "encoder.spikes=poisson"])


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_with_every_learner_or_is_refused_in_one_line(preset, algo):
    obs_dim, act_dim, n = 5, 2, 8

    def build(*overrides):
        rc = validate(compose(list(overrides)), overrides=list(overrides))
        actor, critic = job.build_components(rc, obs_dim, act_dim)
        return job.build_learner(rc, actor, critic, obs_dim, act_dim), critic

    overrides = [f"experiment={preset}", f"algo={algo}", "env=halfcheetah", "compile=false"]
    torch.manual_seed(0)
    try:
        learner, critic = build(*overrides)
    except ConfigError as exc:
        said, then = REFUSED[preset, algo]  # only these are refused, each in one line that says why
        assert "\n" not in str(exc) and said in str(exc)
        learner, critic = build(*overrides, *then)
    else:
        assert (preset, algo) not in REFUSED
    batch = Batch(obs=torch.randn(n, obs_dim), act=torch.rand(n, act_dim) * 2 - 1, rew=torch.randn(n),
                  next_obs=torch.randn(n, obs_dim), terminated=torch.zeros(n))
    before = [p.detach().clone() for p in critic.parameters()]
    for _ in range(2):  # TD3's actor steps every second update
        metrics = learner.update(batch, [batch] * (learner.batches_per_update - 1))
    assert torch.isfinite(metrics["loss/critic"]) and torch.isfinite(metrics["loss/actor"])
    assert any(not torch.equal(a, b) for a, b in zip(before, critic.parameters()))


def test_a_report_never_pools_runs_composed_differently_under_one_name(tmp_path):
    """Runs written under one name (before names said what ran, or a user's own `method=`) whose
    configs differ are kept apart in every table; runs that differ only in how they computed or in
    their own settings are pooled."""
    def run(folder, method, seed, final, **config):
        make_run_folder(tmp_path, folder, {"env_id": "Hopper-v4", "method": method, "seed": seed, "wall_seconds": 10.0,
                                           "eval_return_mean": final, "best_eval_return": final,
                                           "total_env_steps": 20, "eval_history": [[10, 1.0, 0], [20, final, 0]]})
        base = {"seed": seed, "actor": {"_target_": "A", "timesteps": 5, "encoder": {"spikes": "regular"}},
                "train": {"batch_size": 100, "total_steps": 20}}
        (tmp_path / folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.merge(base, config)))

    run("a", "popsan", 0, 10.0)
    run("b", "popsan", 1, 20.0, actor={"compile": True, "neuron_backend": "fused"}, train={"total_steps": 40})
    run("c", "popsan", 2, 90.0, actor={"encoder": {"spikes": "poisson"}})
    report = write_report([tmp_path], tmp_path / "out", inference_episodes=0, bootstrap_reps=0)
    with open(tmp_path / "out" / "final_returns.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert len(rows) == 2 and "popsan" in rows and any(m.startswith("popsan#") for m in rows)
    assert rows["popsan"]["runs"] == "2" and float(rows["popsan"]["final_return_mean"]) == 15.0
    assert any("composed differently under one name" in note for note in report.notes)


def test_a_learner_key_its_config_leaves_to_the_class_default_composes_as_that_default():
    """A key added to a conf/algo file at the class's default (DDPG's `shared_noise`, which ddpg.yaml
    leaves out) does not split the runs before it from those after it; another value does."""
    from spikerl.analysis.results import composition

    ddpg = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "algo" / "ddpg.yaml"))
    assert "shared_noise" not in ddpg
    assert composition({"algo": {**ddpg, "shared_noise": False}}) == composition({"algo": ddpg})
    assert composition({"algo": {**ddpg, "shared_noise": True}}) != composition({"algo": ddpg})


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_acts_through_one_compiled_graph(preset):
    """Each preset's acting (and SAC's exploring) compiles over a symbolic batch size, on Hopper, where
    PopSAN's encoder draws its spikes at random: one env (batch 1) and an evaluation's envs share the
    graph, and nothing falls back to eager. A draw torch.compile could not build once left PopSAN's
    Hopper acting eager behind a single warning."""
    from spikerl.runtime.compiler import CompiledOrEager

    rc = validate(compose([f"experiment={preset}", "env=hopper", "compile=true"]))
    obs_dim, act_dim = job.env_dims(rc.env.id)
    learner = job.build_learner(rc, *job.build_components(rc, obs_dim, act_dim), obs_dim, act_dim)
    for n in (1, 4, 1):
        obs = torch.randn(n, obs_dim)
        assert learner.act(obs).shape == learner.explore(obs).shape == (n, act_dim)
    acting = [f for f in vars(learner).values() if isinstance(f, CompiledOrEager)]
    assert acting and {f.name: f.failed for f in acting if f.failed} == {}
