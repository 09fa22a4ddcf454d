"""Every config composes and builds; every user mistake gets a one-line error and exit code 2."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from spikerl import job, run
from spikerl.config import CONF_DIR, ConfigError, compose, expand_overrides, validate

ENVS = ["inverted_pendulum", "halfcheetah", "ant", "hopper", "walker2d", "humanoid"]
EXPERIMENTS = [None, "popsan", "spikerl", "dsrl", "td3"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("env", ENVS)
def test_every_env_and_experiment_composes_and_builds(env, experiment):
    overrides = [f"env={env}"] + ([f"experiment={experiment}"] if experiment else [])
    rc = validate(compose(overrides))
    job.check(rc)
    if env != "inverted_pendulum":  # the paper's protocol comes with the task
        assert rc.train.total_steps == 1_000_000 and rc.env.id.endswith("-v4")
        assert rc.train.start_steps == (1000 if experiment == "dsrl" else 10_000)


def test_presets_set_published_hyperparameters():
    popsan = validate(compose(["experiment=popsan", "env=hopper"]))
    assert (popsan.algo["actor_lr"], popsan.algo["critic_lr"], popsan.train.batch_size) == (1e-4, 1e-3, 100)
    assert popsan.actor["hidden_sizes"] == [256, 256] and popsan.actor["timesteps"] == 5
    assert popsan.encoder["spikes"] == "poisson"  # PopSAN's choice for Hopper
    assert popsan.actor["neuron"] == {"current_decay": 0.5, "voltage_decay": 0.75, "threshold": 0.5}
    dsrl = validate(compose(["experiment=dsrl", "env=halfcheetah"]))
    assert dsrl.actor["hidden_sizes"] == [400, 300] and dsrl.critic["hidden_sizes"] == [400, 300]
    # the published Agent's batch of 100 on every task (its HalfCheetah notebook's 128 never reaches it)
    assert dsrl.actor["neuron"]["threshold"] == 0.8 and dsrl.train.batch_size == 100
    assert dsrl.replay.size == 200_000 and validate(compose(["experiment=dsrl", "env=hopper"])).replay.size == 1_000_000
    assert dsrl.normalizer.kind == "maxabs" and dsrl.algo["actor_lr"] == 1e-3 and dsrl.algo["shared_noise"]
    assert (dsrl.train.update_every, dsrl.train.gradient_steps, dsrl.train.start_actions) == (1, 1, "normal")
    assert dsrl.critic["split_sign"] and dsrl.actor["timesteps"] == 4
    assert validate(compose(["experiment=dsrl", "env=ant"])).actor["neuron"]["threshold"] == 2.5
    assert validate(compose(["experiment=spikerl"])).precision.mode == "auto"  # bf16 where it pays
    assert validate(compose(["experiment=td3"])).actor["_target_"].endswith("MLPActor")
    assert validate(compose(["env=halfcheetah"])).encoder["spikes"] == "regular"


def test_default_run_and_every_preset_have_distinct_method_names():
    # a comparison report groups runs by method: the default run must not be averaged into a preset's
    presets = sorted(f.stem for f in (Path(__file__).resolve().parent.parent / "conf" / "experiment").glob("*.yaml"))
    assert set(presets) >= {"popsan", "spikerl", "dsrl", "td3"}
    names = [validate(compose([f"experiment={e}"] if e else [])).method for e in [None, *presets]]
    assert len(set(names)) == len(names), names


def test_published_per_task_values_live_with_the_method_and_the_command_line_wins():
    """conf/published/<method>/<task>.yaml holds a method's per-task values; the env group holds none."""
    assert validate(compose(["experiment=spikerl", "env=walker2d"])).encoder["spikes"] == "poisson"
    assert validate(compose(["experiment=popsan", "env=ant"])).encoder["spikes"] == "regular"
    dsrl = validate(compose(["experiment=dsrl", "env=halfcheetah", "replay.size=6400",
                             "actor.neuron.threshold=0.3"]))
    assert dsrl.replay.size == 6400 and dsrl.actor["neuron"]["threshold"] == 0.3
    assert validate(compose(["experiment=dsrl", "env=walker2d"])).actor["neuron"]["threshold"] == 1.0  # unpublished
    popsan = validate(compose(["experiment=popsan", "env=hopper", "encoder.spikes=regular"]))
    assert popsan.encoder["spikes"] == "regular"
    env_keys = set(compose(["env=hopper"]).env.keys())
    assert env_keys == {"name", "id", "num_envs", "max_episode_steps"}


@pytest.mark.parametrize("env", ["hopper", "walker2d", "halfcheetah"])
def test_a_preset_derived_from_another_takes_its_per_task_values(env):
    """Per-task values follow `published_as`, not the preset's name: popsan_sac is popsan with SAC for TD3
    and nothing else, on every task (it took the regular encoder on Hopper while popsan took Poisson);
    spikerl shares PopSAN's values; ILC-SAN and MDC-SAN, derived from popsan, keep their own encoding."""
    def plain(rc):
        return {k: v for k, v in vars(rc).items() if k not in ("algo", "algo_name", "method")}

    popsan = validate(compose(["experiment=popsan", f"env={env}"]))
    assert plain(validate(compose(["experiment=popsan_sac", f"env={env}"]))) == plain(
        validate(compose(["experiment=popsan", "algo=sac", f"env={env}"])))
    assert validate(compose(["experiment=popsan_sac", f"env={env}"])).encoder == popsan.encoder
    assert validate(compose(["experiment=spikerl", f"env={env}"])).encoder == popsan.encoder
    assert validate(compose(["experiment=ilcsan", f"env={env}"])).encoder["spikes"] == "regular"
    assert validate(compose(["experiment=mdcsan", f"env={env}"])).encoder["spikes"] == "real"
    assert popsan.encoder["spikes"] == ("regular" if env == "halfcheetah" else "poisson")


def test_allowed_values_are_one_list_for_the_schema_and_the_code_that_uses_them():
    from spikerl.config import SCHEMAS
    from spikerl.rl import normalizer
    from spikerl.runtime import distributed, precision
    from spikerl.telemetry import energy

    assert SCHEMAS["normalizer"].CHOICES["kind"] is normalizer.NORMALIZER_KINDS
    assert set(SCHEMAS["precision"].CHOICES["mode"]) == {*precision.PRECISION_MODES, "auto"}
    assert SCHEMAS["dist"].CHOICES["backend"] is distributed.BACKENDS
    assert SCHEMAS["energy"].CHOICES["kind"] is energy.KINDS
    # each schema in its package, in a module that imports no torch (test below)
    assert all(SCHEMAS[name].__module__ in ("spikerl.rl.sections", "spikerl.runtime.sections",
                                            "spikerl.telemetry.sections", "spikerl.telemetry.energy")
               for name in SCHEMAS)


def test_sweeps_expand_into_jobs():
    jobs = expand_overrides(["env=hopper,ant", "seed=0,1,2", "train.total_steps=10"])
    assert len(jobs) == 6 and ["env=ant", "seed=2", "train.total_steps=10"] in jobs


def test_the_paper_preset_sweeps_three_tasks_six_methods_three_seeds():
    """benchmark=paper_100k is issue 23's grid; PopSAN-SAC is one value of the experiment axis, the same
    config as `experiment=popsan algo=sac`, so its runs carry that label."""
    jobs = expand_overrides(["benchmark=paper_100k"])
    assert len(jobs) == 54 and ["env=ant", "experiment=popsan_sac", "seed=2", "benchmark=paper_100k"] in jobs
    assert len(expand_overrides(["benchmark=paper_100k", "env=hopper", "seed=0"])) == 6
    sac = compose(["experiment=popsan_sac"])
    assert OmegaConf.to_container(sac) == OmegaConf.to_container(compose(["experiment=popsan", "algo=sac"]))
    rc = validate(compose(["benchmark=paper_100k", "experiment=popsan_sac", "env=ant"]))
    assert (rc.method, rc.train.total_steps, rc.train.eval_every) == ("popsan-sac", 100000, 5000)


def test_every_job_of_a_large_sweep_is_checked_before_the_first_starts():
    """A mistake in the 141st job of a sweep is found before any job runs, not after hours of the others."""
    args = ["seed=range(0,70)", "algo.gamma=0.99,1.5"]
    jobs = expand_overrides(args)
    assert len(jobs) == 140 and jobs[-1] == ["seed=69", "algo.gamma=1.5"]
    with pytest.raises(ConfigError, match="algo.gamma must be in"):
        run.preflight(["-m", "seed=range(0,70)", "algo.gamma=0.99,1.5"])
    run.preflight(["-m", "seed=range(0,70)", "algo.gamma=0.98,0.99"])  # fine: nothing raised
    with pytest.raises(ConfigError, match="requires --multirun"):  # without -m: one job, which Hydra refuses
        run.preflight(["seed=range(0,70)", "algo.gamma=0.98,0.99"])


BAD_INPUTS = [
    (["train.foo=1"], "unknown key 'train.foo' (valid keys of train: total_steps,"),
    (["+train.foo=1"], "unknown key 'train.foo'"),
    (["+foo=1"], "unknown top-level key"),
    (["train.total_steps=abc"], "train.total_steps"),
    (["train.progress=maybe"], "train.progress"),
    (["seed=1.5"], "seed must be an integer"),
    (["compile=sometimes"], "compile must be true, false or auto"),
    (["compile_mode=fastest"], "compile_mode must be one of default, reduce-overhead, max-autotune-no-cudagraphs"),
    (["env=pong"], "choose one of: ant, halfcheetah, hopper, humanoid, inverted_pendulum, walker2d"),
    (["actor=transformer"], "choose one of: carebn, dsrl, ilcsan, mdcsan, mlp, popsan, proxytarget"),
    (["experiment=ppo"], "choose one of: carebn, dsrl, ilcsan, mdcsan, popsan, popsan_sac, proxytarget, "
                         "proxytarget_ann, proxytarget_vanilla, spikerl, td3"),
    (["experiment=mdcsan", "actor.neuron.model=izhikevich"], "unknown neuron model 'izhikevich'; choose one of"),
    (["experiment=ilcsan", "actor.connections=[bias,sideways]"], "unknown connection 'sideways'; choose from"),
    (["experiment=ilcsan", "actor.decoder.readout=median"], "decoder readout must be one of ['last', 'max', 'mean']"),
    (["experiment=ilcsan", "actor.decoder.decay=1.5"], "decoder decay must be in [0, 1], got 1.5"),
    (["experiment=carebn", "actor.normalization.momentum=1.5"], "normalization momentum must be in [0, 1), got 1.5"),
    (["experiment=carebn", "encoder.squash=sigmoid"], "encoder squash must be 'none' or 'tanh'"),
    (["experiment=carebn", "dist.world_size=2"], "actor.normalization (CaRe-BN) keeps its statistics per process"),
    (["env.id=NoSuchTask-v0"], "unknown gymnasium task 'NoSuchTask-v0'"),
    (["train.total_steps=0"], "train.total_steps must be positive"),
    (["train.total_steps=-5"], "train.total_steps must be positive"),
    (["train.eval_episodes=0"], "train.eval_episodes must be positive"),
    (["train.batch_size=2000000"], "larger than replay.size"),
    (["algo.gamma=1.5"], "algo.gamma must be in [0, 1]"),
    (["normalizer.kind=minmax"], "normalizer.kind must be one of"),
    (["replay.size=0"], "replay.size must be positive"),
    (["algo=ppo"], "choose one of: ddpg, sac, td3"),
    (["algo.name=sac"], "unknown key 'algo.name' for algo=td3 (valid keys: gamma, polyak, actor_lr,"),
    (["algo=sac", "algo.target_noise=0.1"], "unknown key 'algo.target_noise' for algo=sac (did you mean "
                                              "algo.shared_noise?) (valid keys: gamma,"),
    (["algo=ddpg", "+algo.policy_delay=2"], "unknown key 'algo.policy_delay' for algo=ddpg"),
    (["algo=ddpg", "algo.shared_noise=true"], "algo.shared_noise: an argument of DDPG that its config (conf/algo/) "
                                              "leaves at its default; add it with +algo.shared_noise=..."),
    (["~algo.gamma"], "algo.gamma is missing (algo=td3 needs gamma)"),
    (["algo._target_=torch.nn.Linear"], "algo._target_: 'torch.nn.Linear' is not a SpikeRL learner"),
    (["algo=sac", "algo.alpha=-0.5"], "algo.alpha must not be negative, got -0.5"),
    (["algo=ddpg", "algo.actor_lr=0"], "algo.actor_lr must be positive, got 0"),
    (["+critic.n=3"], "critic.n: the algorithm sets how many Q-networks the critic has (td3: 2)"),
    (["actor.hidden_sizes=abc"], "cannot build actor"),
    (["encoder.spikes=bursty"], "cannot build actor"),
    (["precision=fp16"], "needs a CUDA GPU"),
    (["device=tpu"], "device must be one of auto, cpu, cuda"),
    (["precision.mode=fp8"], "precision.mode must be one of"),
    (["dist.world_size=0"], "dist.world_size must be positive"),
    (["dist.backend=nccl"], "dist.backend=nccl needs networks on CUDA GPUs"),
    (["dist.backend=tcp"], "dist.backend must be one of auto, gloo, nccl, mpi"),
    (["dist.world_size=3", "dist.nnodes=2"], "must be a positive multiple of dist.nnodes"),
    (["-m", "env=hopper,pong"], "choose one of"),  # a sweep is checked job by job before any starts
    (["train.total_steps=[1,2"], "cannot parse overrides"),
    (["resume=/nonexistent/last.pt"], "resume: no checkpoint at /nonexistent/last.pt"),
    (["energy=solar"], "choose one of: codecarbon, none"),
    (["energy.country=France"], "energy.country must be a 3-letter ISO code"),
    (["logger.kind=slack"], "logger.kind must be one of wandb, tensorboard, jsonl, none; got 'slack'"),
    (["logger.mode=cloud"], "logger.mode must be one of offline, online, disabled"),
    (["env.num_envs=0"], "env.num_envs must be positive"),
    (["energy.measure_power_secs=0"], "energy.measure_power_secs must be positive"),
    (["dist.timeout_s=0"], "dist.timeout_s must be positive"),
    # a mistyped name gets the nearest one; Hydra's own hints are kept
    (["expriment=popsan"], "unknown key 'expriment' (did you mean experiment?)"),
    (["env=hoper"], "(did you mean hopper?)"),
    (["train.batchsize=5"], "(did you mean train.batch_size?)"),
    (["experiment=popsan", "actor.hiden_sizes=[8]"], "(did you mean actor.hidden_sizes?)"),
    (["+actr.x=1"], "(did you mean actor?)"),
    (["env=hopper,walker2d"], "to sweep over it, add --multirun"),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append((["device=cuda"], "device=cuda needs a CUDA GPU"))
    BAD_INPUTS.append((["compile_mode=reduce-overhead"], "compile_mode=reduce-overhead records CUDA graphs and needs"))


@pytest.mark.parametrize("args,expected", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gets_one_line_error(args, expected, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["spikerl.run", *args])
    with pytest.raises(SystemExit) as exit_info:
        run.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("spikerl: error: ") and expected in err


# answered from the composed config and the sections' schemas alone, before torch is imported (a second or
# more of a user's wait): spikerl/*/sections.py hold the schemas, apart from the code that needs torch
ANSWERED_WITHOUT_TORCH = [
    ["expriment=popsan"], ["train.total_stepz=5"], ["train.batch_size=-1"],
    ["train.batch_size=2048", "replay.size=1024"],
    ["logger.kind=slack"], ["dist.world_size=0"], ["precision.mode=bf17"], ["normalizer.kind=x"], ["env.num_envs=0"],
    ["energy.country=France"], ["-m", "seed=0,1", "train.eval_episodes=0"],
    ["algo.actor_lrr=1e-3"], ["algo=sac", "algo.target=proxy"], ["algo=ddpg", "algo.shared_noise=true"],
]


@pytest.mark.parametrize("algo", sorted(p.stem for p in (Path(CONF_DIR) / "algo").glob("*.yaml")))
def test_learner_keys_read_from_the_source_are_the_classes_own(algo):
    import inspect

    from spikerl.config import learner_class, learner_defaults, learner_keywords

    target = OmegaConf.load(Path(CONF_DIR) / "algo" / f"{algo}.yaml")["_target_"]
    cls = learner_class({"_target_": target})
    assert learner_keywords(target) == cls.hyperparameters()
    params = inspect.signature(cls.__init__).parameters.values()
    assert learner_defaults(target) == {p.name: p.default for p in params
                                        if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
    assert learner_keywords("spikerl.rl.learners.td3.Nothing") is None  # then the class itself answers
    assert learner_keywords("torch.nn.Linear") is None


def test_mistakes_in_the_sections_are_answered_before_torch_is_imported(tmp_path):
    script = (
        "import sys\n"
        "from spikerl import run\n"
        f"for args in {ANSWERED_WITHOUT_TORCH!r}:\n"
        "    sys.argv = ['spikerl.run', *args]\n"
        "    try:\n"
        "        run.main()\n"
        "    except SystemExit as exc:\n"
        "        print(exc.code, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split("\n")[:-1] == ["2 False"] * len(ANSWERED_WITHOUT_TORCH), proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == len(ANSWERED_WITHOUT_TORCH)  # one line each
    assert list(tmp_path.iterdir()) == []


def test_bad_input_on_the_command_line_exits_without_traceback_or_run_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", "env=pong"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder was created


def test_inspecting_a_multirun_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", "-m", "experiment=popsan,dsrl", "--cfg", "job"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("spikerl: error: --cfg shows one job's config: leave out -m/--multirun and give "
                                   "one value per swept key")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_leaves_an_existing_run_folder_untouched(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"previous")
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "spikerl.run", "hydra.run.dir=run", "train.batch_size=0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "train.batch_size must be positive" in proc.stderr
    assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*")) == before


def test_foreign_or_corrupt_checkpoint_on_the_command_line_is_refused_before_the_run(tmp_path, tiny_run,
                                                                                     monkeypatch, capsys):
    _, run_dir = tiny_run("train.total_steps=200")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((run_dir / "checkpoints" / "last.pt").read_bytes()[:500])
    cases = [
        ([f"resume={run_dir}", "env.id=InvertedDoublePendulum-v5"], "does not fit this run: it has env_id="),
        ([f"resume={run_dir}", "actor=dsrl"], "does not fit this run: its actor differs"),
        ([f"resume={corrupt}"], "cannot read checkpoint"),
    ]
    for args, expected in cases:
        monkeypatch.setattr(sys, "argv", ["spikerl.run", *args])
        with pytest.raises(SystemExit) as exit_info:
            run.main()
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err


def test_execution_settings_are_top_level_and_reach_the_actor_as_it_is_built():
    """`neuron_backend` and `compile` say how the actor computes, not what: they are not in its spec (a
    checkpoint's spec names the model alone), and the run's actor is built with them."""
    from spikerl.snn.through_time import run_through_time_fused

    rc = validate(compose(["experiment=popsan", "neuron_backend=fused", "compile=false"]))
    assert rc.neuron_backend == "fused" and "neuron_backend" not in rc.actor and "compile" not in rc.actor
    actor, _ = job.build_components(rc, 3, 2)
    assert actor.snn.run is run_through_time_fused
    compiled, _ = job.build_components(validate(compose(["experiment=popsan", "compile=true"])), 3, 2)
    assert getattr(compiled.snn.run, "keywords", {}).get("compiled") is True
    mlp, _ = job.build_components(validate(compose(["experiment=td3", "neuron_backend=fused"])), 3, 2)
    assert mlp.spiking is False  # an actor that takes no such setting is built without it
    with pytest.raises(ConfigError, match="neuron_backend must be one of bptt, fused, snntorch|neuron_backend must"):
        validate(compose(["neuron_backend=loihi"]))
    with pytest.raises(ConfigError, match="top-level `neuron_backend`"):
        validate(compose(["actor.neuron_backend=fused"]))
    with pytest.raises(ConfigError, match="top-level `compile`"):
        validate(compose(["+actor.compile=true"]))
