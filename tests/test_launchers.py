"""Launchers as config: SLURM's rendered submission, parallel sweeps through submitit's local executor and
joblib (real subprocesses), requeue on preemption, two nodes on one machine, and bad input refused before
anything is submitted. No cluster here: SLURM's `sbatch` is replaced by a script that keeps what it is
given; everything else (Hydra, the plugins, submitit, torch.distributed) runs for real."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY
from spikerl import launchers
from spikerl.config import ConfigError
from spikerl.launchers import FAILURE_MARKER
from spikerl.run import preflight
from spikerl.runtime import checkpoint, distributed

HERE = Path(__file__).parent
QUIET = ["hydra.callbacks.comparison.enabled=false"]


def spikerl_cli(*args, cwd, env=None, timeout=300):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "spikerl.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def fake_slurm(tmp_path, sbatch: str = 'cp "$1" "$SBATCH_RECORD"\necho "sbatch: kept $1; nothing submitted" >&2\n'
               'exit 1\n') -> dict:
    """`sbatch` running the shell lines `sbatch` (by default: keep the script it is given and submit
    nothing; it fails, so submitit stops), and an `srun` that submitit only looks for."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\n{sbatch}")
    (bin_dir / "srun").write_text('#!/bin/sh\necho "srun: no cluster here" >&2\nexit 1\n')
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_RECORD": str(tmp_path / "submitted.sh")}


# -- configuration: what each launcher is given ------------------------------------------------------------
def test_launcher_resources_follow_dist():
    slurm = launchers.master_config(["-m", "hydra/launcher=slurm", "dist.world_size=8", "dist.nnodes=2", "device=cuda",
                                     "seed=0,1"])
    assert launchers.launcher_of(slurm)[0] == "slurm"
    assert (slurm.hydra.launcher.nodes, slurm.hydra.launcher.tasks_per_node, slurm.hydra.launcher.gpus_per_node) \
        == (2, 4, 4)
    assert slurm.hydra.launcher.signal_delay_s > 0 and slurm.hydra.launcher.max_num_timeout > 0
    assert launchers.master_config(["-m", "hydra/launcher=slurm", "dist.world_size=2"]).hydra.launcher.gpus_per_node \
        is None  # device=auto/cpu asks SLURM for no GPU

    cores = distributed.available_cores()
    local = launchers.master_config(["-m", "hydra/launcher=local", "dist.world_size=2"])
    assert launchers.launcher_of(local)[0] == "local"
    assert local.hydra.launcher.tasks_per_node == 1  # the job spawns its ranks
    assert local.hydra.sweeper.max_batch_size == max(1, cores // 2)
    joblib = launchers.master_config(["-m", "hydra/launcher=joblib", "dist.world_size=2"])
    assert launchers.launcher_of(joblib)[0] == "joblib" and joblib.hydra.launcher.n_jobs == max(1, cores // 2)
    basic = launchers.master_config(["-m", "seed=0,1"])
    assert launchers.launcher_of(basic)[0] == "basic" and basic.hydra.sweeper.max_batch_size is None


def test_a_sweep_knows_how_many_jobs_run_side_by_side():  # (how they share the cores: test_distributed)
    joblib = launchers.master_config(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]).hydra
    assert launchers.jobs_beside(joblib) == 3
    assert launchers.jobs_beside(launchers.master_config(["-m", "hydra/launcher=slurm"]).hydra) == 1
    assert launchers.jobs_beside(launchers.master_config(["-m"]).hydra) == 1


def test_slurm_submission_holds_the_resources_derived_from_dist(tmp_path):
    proc = spikerl_cli("-m", "hydra/launcher=slurm", *TINY, "dist.world_size=4", "dist.nnodes=2", "device=cuda",
                       "seed=0,1", "hydra.launcher.partition=gpu", "hydra.launcher.account=rl",
                       "hydra.launcher.qos=high", "hydra.launcher.timeout_min=90", "hydra.sweep.dir=sweep",
                       cwd=tmp_path, env=fake_slurm(tmp_path))
    assert "nothing submitted" in proc.stderr, proc.stderr[-3000:]
    lines = (tmp_path / "submitted.sh").read_text().splitlines()
    for flag in ("--nodes=2", "--ntasks-per-node=2", "--gpus-per-node=2", "--cpus-per-task=8", "--partition=gpu",
                 "--account=rl", "--qos=high", "--time=90", "--signal=USR2@120", "--array=0-1%2"):
        assert f"#SBATCH {flag}" in lines, flag
    srun = next(line for line in lines if line.startswith("srun "))
    assert srun.endswith(f"-m submitit.core._submit {tmp_path / 'sweep' / '.submitit' / '%j'}")  # every task: a rank


def test_slurm_without_slurm_is_one_line_and_leaves_no_sweep_folder(tmp_path):
    """On a machine without SLURM's tools, the SLURM launcher is refused before Hydra makes the sweep
    folder (submitit would raise 'Could not detect "srun"' after it)."""
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"}  # no sbatch, no srun
    assert shutil.which("srun", path=env["PATH"]) is None
    proc = spikerl_cli("-m", "hydra/launcher=slurm", *TINY, "seed=0,1", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("spikerl: error: hydra/launcher=slurm submits with SLURM's sbatch and srun, not on "
                                   "this machine's PATH: run the command on the cluster's login node "
                                   "(hydra/launcher=local runs the same jobs here; hydra.launcher.dry_run=true writes "
                                   "the sbatch script)")
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_writes_the_sbatch_script_and_submits_nothing_without_slurm(tmp_path):
    """hydra.launcher.dry_run=true: every job is checked, the array's sbatch script (as submitit renders it
    for sbatch) is written into the sweep folder and its path printed; no SLURM tools are needed, nothing
    is submitted and no pickled jobs are left."""
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"}  # no sbatch, no srun
    proc = spikerl_cli("-m", "hydra/launcher=slurm", "hydra.launcher.dry_run=true", *TINY, "dist.world_size=4",
                       "dist.nnodes=2", "seed=0,1,2", "hydra.launcher.partition=gpu", "hydra.sweep.dir=sweep",
                       cwd=tmp_path, env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == ("spikerl: dry run: the sbatch script for 3 job(s) is "
                                                    "sweep/sbatch_0.sh; nothing was submitted")
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["multirun.yaml", "sbatch_0.sh"]
    lines = (tmp_path / "sweep" / "sbatch_0.sh").read_text().splitlines()
    for flag in ("--nodes=2", "--ntasks-per-node=2", "--partition=gpu", "--signal=USR2@120", "--array=0-2%3",
                 "--mem=24GB", "--requeue"):
        assert f"#SBATCH {flag}" in lines, flag
    # a job that would fail is refused before anything is written, dry run or not
    bad = spikerl_cli("-m", "hydra/launcher=slurm", "hydra.launcher.dry_run=true", *TINY, "seed=0,1", "algo.gamma=2",
                      "hydra.sweep.dir=bad", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_a_refused_submission_is_one_line_and_leaves_no_sweep_folder(tmp_path):
    """sbatch refuses the array (a wrong partition, say): its message is quoted in one line of ours (no
    submitit traceback), exit 1, and the sweep folder Hydra made for it is gone."""
    env = fake_slurm(tmp_path, 'echo "sbatch: error: Batch job submission failed: Invalid partition name '
                               'specified" >&2\nexit 1\n')
    work = tmp_path / "work"
    work.mkdir()
    proc = spikerl_cli("-m", "hydra/launcher=slurm", *TINY, "seed=0,1", "hydra.launcher.partition=gpux", cwd=work,
                       env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "spikerl: error: sbatch refused the job array (sbatch: error: Batch job submission failed: Invalid "
        "partition name specified); nothing was submitted")
    assert list(work.iterdir()) == []  # no multirun/<date>/ left behind


@pytest.mark.parametrize("args,expected", [
    (["hydra/launcher=slurm", "dist.world_size=3", "dist.nnodes=2"], "dist.world_size (3) must be a positive multiple "
                                                                     "of dist.nnodes (2)"),
    (["hydra/launcher=slurm", "dist.world_size=4", "hydra.launcher.tasks_per_node=1"],
     "dist.world_size is 4 but hydra.launcher gives 1 node(s) x 1 task(s) = 1 ranks"),
    (["hydra/launcher=slurm", "dist.world_size=2,4"], "dist.world_size is 2 but hydra.launcher gives"),
    (["hydra/launcher=slurm", "dist.world_size=2", "device=cuda", "hydra.launcher.gpus_per_node=1"],
     "hydra.launcher.gpus_per_node is 1 for 2 tasks per node"),
    (["hydra/launcher=local", "dist.world_size=2", "dist.nnodes=2", "dist.master_port=29999"],
     "dist.nnodes is 2 but hydra/launcher=local runs every job on this machine"),
    (["hydra/launcher=joblib", "dist.world_size=2", f"hydra.launcher.n_jobs={distributed.available_cores() + 1}"],
     "ranks need"),
    (["hydra/launcher=local", "hydra.launcher.tasks_per_node=2"], "hydra.launcher.tasks_per_node must be 1"),
])
def test_bad_launcher_input_is_refused_before_anything_is_submitted(args, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        preflight(["-m", *TINY, *args])


def test_a_launcher_whose_plugin_is_not_installed_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_submitit_launcher", None)  # import fails as if absent
    with pytest.raises(ConfigError, match=r"hydra/launcher=slurm needs the hydra-submitit-launcher package"):
        preflight(["-m", *TINY, "hydra/launcher=slurm"])
    monkeypatch.setitem(sys.modules, "joblib", None)
    with pytest.raises(ConfigError, match=r"hydra/launcher=joblib needs the hydra-joblib-launcher package"):
        preflight(["-m", *TINY, "hydra/launcher=joblib"])


def test_bad_input_from_the_command_line_is_one_line_and_submits_nothing(tmp_path):
    proc = spikerl_cli("-m", "hydra/launcher=slurm", *TINY, "dist.world_size=4", "hydra.launcher.tasks_per_node=3",
                       "hydra.sweep.dir=sweep", cwd=tmp_path, env=fake_slurm(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["spikerl: error: dist.world_size is 4 but hydra.launcher gives 1 "
                                                "node(s) x 3 task(s) = 3 ranks (hydra.launcher.tasks_per_node; one "
                                                "rank per SLURM task)"]
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "submitted.sh").exists()


# -- parallel sweeps on this machine ----------------------------------------------------------------------
@pytest.mark.slow  # six ranks in three processes, about a minute on one core (make test-slow runs it)
def test_a_local_sweep_of_three_two_rank_jobs_ends_with_the_comparison_report(tmp_path):
    proc = spikerl_cli("-m", "hydra/launcher=local", *TINY, "dist.world_size=2", "experiment=popsan,dsrl,td3",
                       "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.parent for p in (tmp_path / "sweep").glob("*/summary.json"))
    assert len(runs) == 3
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["total_env_steps"] == 600
    logs = list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert len({log.parent.name for log in logs}) == 3  # three submitit jobs: processes of their own
    assert (tmp_path / "sweep" / "comparison" / "report.md").is_file()
    assert "comparison of 3 run(s) written" in proc.stderr


def test_a_failed_job_in_a_worker_process_makes_the_multirun_exit_1_after_its_report(tmp_path):
    env = {"PYTHONPATH": str(HERE), "FAULTY_ENV_MODE": "raise"}
    proc = spikerl_cli("-m", "hydra/launcher=joblib", *TINY, "experiment=popsan", "seed=1",  # an odd seed: it faults
                       "env.id=InvertedPendulum-v5,faulty_env:FaultyPendulum-v0", "hydra.sweep.dir=sweep",
                       cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = [p.parent for p in (tmp_path / "sweep").glob(f"*/{FAILURE_MARKER}")]
    assert len(failed) == 1 and "raised at env step" in (failed[0] / FAILURE_MARKER).read_text()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("spikerl: error: 1 job(s) of the multirun failed: ") and failed[0].name in last
    assert (tmp_path / "sweep" / "comparison" / "report.md").is_file()  # the report still ends the multirun


# -- requeue on preemption --------------------------------------------------------------------------------
def submitit_task_pids(root: Path) -> list[int]:
    """The processes running submitit jobs of a sweep under `root` (submitit.core._submit <root>/...)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"submitit.core._submit" in cmdline and any(str(root).encode() in part for part in cmdline):
            pids.append(int(proc.name))
    return pids


def wait_for(condition, proc, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def last_step(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return json.loads(lines[-1])["step"] if lines else 0


@pytest.mark.parametrize("world_size", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_preempted_job_is_requeued_and_finishes_its_full_step_count(tmp_path, world_size):
    proc = subprocess.Popen(
        [sys.executable, "-m", "spikerl.run", "-m", "hydra/launcher=local", *TINY, *QUIET, "train.total_steps=2400",
         "train.eval_every=1200", "train.checkpoint_every=1000000", f"dist.world_size={world_size}",
         "hydra.sweep.dir=sweep"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        run = wait_for(lambda: next((tmp_path / "sweep").glob("0_*/metrics.jsonl"), None), proc, what="job").parent
        wait_for(lambda: last_step(run) >= 400, proc, what="step 400")
        (task,) = submitit_task_pids(tmp_path)
        os.kill(task, signal.SIGUSR2)  # what SLURM sends (through submitit's --signal) on preemption
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["total_env_steps"] == 2400 and summary["segments"] == 2 and summary["world_size"] == world_size
    assert summary["wall_seconds"] > summary["segment_wall_seconds"]  # both segments counted
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.*"))
    assert "stopped by signal 12" in logs and "handing the job to submitit" in logs
    assert "Requeued job" in logs and "requeued job: continuing" in logs and "resumed from" in logs
    in_sweep = sorted(p.name for p in (tmp_path / "sweep").iterdir() if not p.name.startswith("."))
    assert in_sweep == sorted([run.name, "multirun.yaml"])  # the same run folder, no other
    assert not (run / "checkpoints" / "requeued.json").exists()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 2400


# -- multi-node on one machine ---------------------------------------------------------------------------
@pytest.mark.slow  # two node processes training side by side (make test-slow runs it)
def test_two_nodes_on_one_machine_rendezvous_and_hold_identical_weights(tmp_path):
    port = distributed.free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "spikerl.run", *TINY, "dist.world_size=2", "dist.nnodes=2", f"dist.node_rank={rank}",
         "dist.master_addr=127.0.0.1", f"dist.master_port={port}", "dist.timeout_s=120", "hydra.run.dir=run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"}) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    assert outputs[0][0].count("SpikeRL run summary") == 1 and "SpikeRL run summary" not in outputs[1][0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["total_env_steps"] == 600
    rank0 = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    rank1 = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.rank1.pt")
    assert rank0["counters"]["rank"] == 0 and rank1["counters"]["rank"] == 1
    for part in ("actor", "critic", "actor_target", "critic_target"):
        for key, value in rank0["learner"][part].items():
            assert torch.equal(value, rank1["learner"][part][key]), f"{part}.{key} differs between the nodes' ranks"
    assert rank0["learner"]["updates"] == rank1["learner"]["updates"] > 0


def test_the_tasks_of_a_slurm_job_join_as_its_ranks_without_spawning(tmp_path):
    """Two processes with the environment srun gives the tasks of a submitit job (no SLURM here; the node
    list is this machine, 127.0.0.1): submitit's own job environment turns them into ranks 0 and 1."""
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1",
             "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "127.0.0.1", "SLURM_STEP_ID": "0", "SLURM_CPUS_PER_TASK": "1",
             "MASTER_PORT": str(distributed.free_port()), "PYTHONWARNINGS": "ignore"}
    tasks = [subprocess.Popen(
        [sys.executable, "-m", "spikerl.run", *TINY, "dist.world_size=2", "hydra.run.dir=run"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **slurm, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}) for rank in (0, 1)]
    outputs = [task.communicate(timeout=300) for task in tasks]
    for task, (_, err) in zip(tasks, outputs):
        assert task.returncode == 0, err[-3000:]
    assert outputs[0][0].count("SpikeRL run summary") == 1 and "SpikeRL run summary" not in outputs[1][0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["total_env_steps"] == 600 and summary["backend"] == "gloo"
    rank0 = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    rank1 = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.rank1.pt")
    assert all(torch.equal(v, rank1["learner"]["actor"][k]) for k, v in rank0["learner"]["actor"].items())


def test_a_node_that_cannot_reach_master_addr_fails_in_one_line_without_hanging(tmp_path):
    start = time.monotonic()
    proc = spikerl_cli(*TINY, "dist.world_size=2", "dist.nnodes=2", "dist.node_rank=1", "dist.master_addr=127.0.0.1",
                       f"dist.master_port={distributed.free_port()}", "dist.timeout_s=3", "hydra.run.dir=run",
                       cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert time.monotonic() - start < 90
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("spikerl: error: rank 1 of 2 could not meet the others at dist.master_addr:dist.master_port"
                           " = 127.0.0.1:") and "within dist.timeout_s = 3 s" in line, line
