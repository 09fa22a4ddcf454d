"""Data-parallel training over gloo on CPU: gradients really are averaged across ranks."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_learners import make_batch, make_learner

from conftest import TINY
from spikerl.runtime import distributed

UPDATES = 4


def build_learner(algo="td3", sync=None):
    """`td3-proxy`: TD3 with Proxy Target's proxy (two regression batches per update)."""
    if algo == "td3-proxy":
        return make_learner(spiking=True, algo="td3", sync=sync, target="proxy",
                            proxy={"hidden_sizes": [16, 16], "lr": 1e-3, "iters": 2})
    return make_learner(spiking=True, algo=algo, sync=sync)


def update(learner, batch):
    learner.update(batch, [batch] * (learner.batches_per_update - 1))


def rank_batches(rank):
    return [make_batch(32, seed=100 * rank + i) for i in range(UPDATES)]


def _worker(rank, world, port, out_dir, algo):
    torch.set_num_threads(1)
    info = distributed.init(distributed.DistInfo(rank, world, rank, world), "gloo", "127.0.0.1", port, 60)
    torch.manual_seed(rank)  # different target noise per rank, as in a real job
    learner = build_learner(algo, sync=distributed.GradientMean())
    for batch in rank_batches(info.rank):
        update(learner, batch)
    torch.save({name: net.state_dict() for name, net in learner.networks().items()},
               os.path.join(out_dir, f"rank{rank}.pt"))
    distributed.shutdown()


@pytest.mark.parametrize("algo", ["td3", "sac", "td3-proxy"])
def test_two_gloo_ranks_hold_identical_weights_that_differ_from_one_rank_alone(tmp_path, algo):
    """The ranks average the gradients of every network a loss trains (SAC's log-std network too, which
    the actor's optimizer steps, and Proxy Target's proxy, which its own does): they stay equal, and
    differ from a rank alone."""
    mp.start_processes(_worker, args=(2, distributed.free_port(), str(tmp_path), algo), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert set(r0) == set(build_learner(algo).networks())
    for part in r0:
        for key in r0[part]:
            assert torch.equal(r0[part][key], r1[part][key]), f"{part}.{key} differs between ranks"

    torch.manual_seed(0)
    alone = build_learner(algo)
    for batch in rank_batches(0):
        update(alone, batch)
    start = build_learner(algo)
    changed = [k for k, v in alone.critic.state_dict().items() if not torch.equal(v, start.critic.state_dict()[k])]
    assert changed  # the updates did move the weights ...
    differs = [k for k in changed if not torch.allclose(alone.critic.state_dict()[k], r0["critic"][k], atol=1e-7)]
    assert differs  # ... and rank 1's data changed where they moved to: gradients were averaged
    for part, net in alone.networks().items():
        if part in ("actor", "log_std", "proxy"):
            assert [k for k, v in net.state_dict().items() if not torch.allclose(v, r0[part][k], atol=1e-7)], part
    assert not dist.is_initialized()


def _mean_worker(rank, world, port, out_dir):
    torch.set_num_threads(1)
    distributed.init(distributed.DistInfo(rank, world, rank, world), "gloo", "127.0.0.1", port, 60)
    torch.manual_seed(rank)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    sync = distributed.GradientMean()
    sync.broadcast(net)
    weights = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for p, value in zip(net.parameters(), (1.0, 2.0, 3.0)):  # the last layer's bias keeps no gradient
        p.grad = torch.full_like(p, value * (rank + 1))
    sync(opt)
    grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    # a non-finite gradient on one rank only: after averaging, every rank sees it and skips the step
    from spikerl.runtime.precision import Precision
    loss = net(torch.ones(1, 3)).sum() * (float("inf") if rank == 1 else 1.0)
    skipped = Precision("fp32").step(loss, opt, sync)
    torch.save({"weights": weights, "grads": grads, "skipped": skipped.item(),
                "after": [p.detach().clone() for p in net.parameters()]}, os.path.join(out_dir, f"rank{rank}.pt"))
    distributed.shutdown()


def test_gradient_mean_averages_each_gradient_over_the_ranks_and_broadcasts_rank_0s_weights(tmp_path):
    mp.start_processes(_mean_worker, args=(2, distributed.free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.manual_seed(0)
    rank0_net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    for w0, w1, own in zip(r0["weights"], r1["weights"], rank0_net.parameters()):
        assert torch.equal(w0, own) and torch.equal(w1, own)  # rank 1 seeded 1 now holds rank 0's weights
    for rank in (r0, r1):
        assert [None if g is None else g.unique().tolist() for g in rank["grads"]] == [[1.5], [3.0], [4.5], None]
        assert rank["skipped"] == 1.0  # rank 0's own gradients were finite
        assert all(torch.equal(a, w) for a, w in zip(rank["after"], r0["weights"]))


def test_backend_choice():
    assert distributed.resolve_backend("auto") == "gloo"  # CPU networks
    assert distributed.resolve_backend("gloo") == "gloo"
    with pytest.raises(ValueError, match="nccl needs networks on CUDA GPUs"):
        distributed.resolve_backend("nccl")
    with pytest.raises(ValueError, match="dist.backend must be one of"):
        distributed.resolve_backend("tcp")
    if not dist.is_mpi_available():
        with pytest.raises(ValueError, match="built from source with MPI"):
            distributed.resolve_backend("mpi")


def test_threads_per_rank_share_the_cores_up_to_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert distributed.threads_per_rank(1) == cores
    assert distributed.threads_per_rank(cores * 4) == 1
    monkeypatch.setattr(distributed, "available_cores", lambda: 8)
    assert distributed.threads_per_rank(2) == 4
    assert distributed.threads_per_rank(1, jobs_at_once=8) == 1 and distributed.threads_per_rank(2, jobs_at_once=2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's cap
    assert distributed.threads_per_rank(1) == 3 and distributed.threads_per_rank(4) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # unset in all but name: no cap
    assert distributed.threads_per_rank(1) == 8


def test_a_single_cpu_run_takes_one_thread_unless_asked_for_more(monkeypatch, tmp_path):
    """A run on every core collapsed 20x beside a process busy on one of them (bench_threads); one thread
    never does. OMP_NUM_THREADS asks for more, up to the cores; a GPU run's host keeps its share."""
    from spikerl.config import compose, validate
    from spikerl.launch import launch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    summary = launch(validate(compose([*TINY, "train.total_steps=300"])), tmp_path / "run", "popsan")
    assert summary["machine_threads"] == 1
    monkeypatch.setattr(distributed, "available_cores", lambda: 8)
    assert distributed.single_run_threads("cpu") == 1 and distributed.single_run_threads("cuda") == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert distributed.single_run_threads("cpu") == 4 and distributed.single_run_threads("cpu", jobs_at_once=4) == 2


def test_world_size_two_from_the_command_line_writes_one_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "spikerl.run", *TINY, "dist.world_size=2", "hydra.run.dir=out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("SpikeRL run summary") == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert summary["total_env_steps"] == 600  # global steps: 300 per rank
    assert summary["eval_episodes"] == 2
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [100, 200, 300, 400, 500, 600]  # rank 0 alone


def test_a_failing_rank_ends_the_whole_job_quickly_with_its_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "spikerl.run", *TINY, "dist.world_size=2", "dist.timeout_s=30",
         "env.id=faulty_env:FaultyPendulum-v0", "hydra.run.dir=out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode != 0
    assert time.monotonic() - start < 120  # no rank waits in a collective for the dead one
    assert "simulated crash of this rank's environment" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("spikerl: error: a rank failed: ") and "(rank 1): RuntimeError: simulated crash" in last


def test_ranks_started_by_torchrun_join_instead_of_spawning(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", str(distributed.free_port()), "-m", "spikerl.run",
         *TINY, "dist.world_size=2", "hydra.run.dir=out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("SpikeRL run summary") == 1  # rank 0 alone reports
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["total_env_steps"] == 600
