"""Notices that used to repeat once per env copy, rank and job (drowning the progress bar) come once per
process and once per sweep."""

import os
import subprocess
import sys
import warnings

# One process as a rank sees it: the task checked with gym.make (spikerl.job.env_dims), the collection
# vector env of 2 copies, the warning filters changed in between (as importing torch's dependencies
# does), then an evaluation vector env.
RANK_LIKE = """
import warnings
import gymnasium as gym
from spikerl.rl.envs import make_vec_env
gym.make("HalfCheetah-v4")
make_vec_env("HalfCheetah-v4", 2, 50)
warnings.filterwarnings("ignore", message="something unrelated")
make_vec_env("HalfCheetah-v4", 2, 50)
print("done")
"""


def test_out_of_date_and_settotalmass_are_shown_once_per_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-c", RANK_LIKE], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    out_of_date = [line for line in lines if "HalfCheetah-v4 is out of date" in line]
    settotalmass = [line for line in lines if "settotalmass" in line]
    assert len(out_of_date) == 1, proc.stderr  # once: the user still learns of it
    assert len(settotalmass) == 1, proc.stderr
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # MuJoCo's own handler would have written it here


def test_a_distributed_job_shows_the_notice_once(tmp_path):
    """Every rank used to print gymnasium's v4 notice (8 times, 16 lines, in an 8-rank Ant run)."""
    from conftest import TINY

    proc = subprocess.run([sys.executable, "-m", "spikerl.run", *TINY, "env=hopper", "dist.world_size=2",
                           "train.total_steps=200", "hydra.run.dir=run"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("Hopper-v4 is out of date") == 1, proc.stderr


def test_the_jobs_of_a_sweep_show_each_notice_once(tmp_path):
    """Jobs in processes of their own (a local launcher's) share the sweep's ledger of notices shown."""
    from spikerl.rl.envs import NOTICE_LEDGER

    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}, NOTICE_LEDGER: str(tmp_path / "n")}
    outputs = []
    for _ in range(2):  # two jobs of one sweep, one after the other
        proc = subprocess.run([sys.executable, "-c", RANK_LIKE], capture_output=True, text=True, cwd=tmp_path,
                              env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    assert [out.count("HalfCheetah-v4 is out of date") for out in outputs] == [1, 0]
    assert [out.count("settotalmass") for out in outputs] == [1, 0]
    assert len(list((tmp_path / "n").iterdir())) == 2  # one mark per notice


def test_quiet_repeats_is_idempotent():
    from spikerl.rl import envs

    with warnings.catch_warnings():
        envs._quiet_repeats()
        before = list(warnings.filters)
        envs._quiet_repeats()
        assert warnings.filters == before
