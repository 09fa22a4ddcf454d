"""CUDA paths: NCCL data-parallel training, every tensor on its rank's GPU, bf16 and fp16 autocast with
the gradient scaler's skip accounting, compiled neuron kernels on CUDA, CodeCarbon's NVML measurement.
Marked `gpu`: `make test-gpu` runs them on a machine with a CUDA GPU (and a CUDA build of torch); without
one they are skipped. CI does not run them."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import TINY
from spikerl.rl.learners import TD3
from spikerl.rl.networks import QEnsemble
from spikerl.rl.replay import Batch
from spikerl.runtime import checkpoint, distributed
from spikerl.runtime.precision import Precision
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

OBS, ACT = 4, 2
GPU_RUN = [o for o in TINY if o != "compile=false"] + ["device=cuda"]


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def learner(device, precision="fp32", compile=False, sync=None, compile_mode="default") -> TD3:
    torch.manual_seed(0)
    actor = PopSpikingActor(OBS, ACT, encoder=PopulationEncoder, hidden_sizes=(32, 32), compile=compile).to(device)
    critic = QEnsemble(OBS, ACT, hidden_sizes=(32, 32)).to(device)
    return TD3(actor, critic, OBS, ACT, act_noise=0.1, actor_lr=1e-3, critic_lr=1e-3, gamma=0.99, polyak=0.995,
               policy_delay=2, target_noise=0.2, noise_clip=0.5, precision=Precision(precision, device), sync=sync,
               compile=compile, compile_mode=compile_mode)


def batch(device, n=64, seed=0, reward=None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    rew = torch.randn(n, generator=g) if reward is None else torch.full((n,), reward)
    obs, act = torch.randn(n, OBS, generator=g), torch.rand(n, ACT, generator=g) * 2 - 1
    return Batch(obs=obs.to(device), act=act.to(device), rew=rew.to(device),
                 next_obs=torch.randn(n, OBS, generator=g).to(device), terminated=torch.zeros(n, device=device))


def tensors_of(td3: TD3):
    for module in (td3.actor, td3.critic, td3.actor_target, td3.critic_target):
        yield from module.parameters()
    for opt in (td3.actor_opt, td3.critic_opt):
        for state in opt.state.values():
            yield from (v for v in state.values() if torch.is_tensor(v) and v.dim() > 0)


def run_cli(tmp_path, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "spikerl.run", *args, "hydra.run.dir=out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_a_gpu_run_keeps_every_tensor_on_the_ranks_device(tmp_path):
    from spikerl.config import compose, validate
    from spikerl.job import build_loop

    loop = build_loop(validate(compose(GPU_RUN)), tmp_path, "popsan")
    loop.run()
    td3 = loop.updates.learner
    assert td3.updates > 0
    assert {t.device.type for t in tensors_of(td3)} == {"cuda"}
    sample = loop.updates.replay.sample(8, lambda x: x, torch.Generator().manual_seed(0))
    assert all(t.device.type == "cuda" for t in vars(sample).values())


def test_nccl_group_of_one_reduces_and_trains_on_its_gpu():
    info = distributed.init(distributed.DistInfo(0, 1, 0, 1), "nccl", "127.0.0.1", distributed.free_port(), 60)
    try:
        assert info.backend == "nccl"
        values = torch.tensor([1.5, -2.0])
        assert torch.equal(distributed.all_reduce_(values.clone()), values) and values.device.type == "cpu"
        device = torch.device("cuda", 0)
        td3 = learner(device, sync=distributed.GradientMean())
        for i in range(4):
            td3.update(batch(device, seed=i))
        assert {t.device for t in tensors_of(td3)} == {device} and td3.skipped == 0
    finally:
        distributed.shutdown()


@pytest.mark.skipif(gpu_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpu_ranks_over_nccl_hold_identical_weights(tmp_path):
    proc = run_cli(tmp_path, *GPU_RUN, "dist.world_size=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["backend"] == "nccl" and summary["device"] == "cuda" and summary["total_env_steps"] == 600
    rank0 = checkpoint.load(tmp_path / "out" / "checkpoints" / "last.pt")
    rank1 = checkpoint.load(tmp_path / "out" / "checkpoints" / "last.rank1.pt")
    for part in ("actor", "critic"):
        for key, value in rank0["learner"][part].items():
            assert torch.equal(value, rank1["learner"][part][key]), f"{part}.{key}"


@pytest.mark.skipif(gpu_count() == 0 or not torch.cuda.is_bf16_supported(), reason="needs a GPU that computes bf16")
def test_bf16_autocast_on_cuda_keeps_fp32_state_and_finite_updates():
    device = torch.device("cuda", 0)
    td3 = learner(device, "bf16")
    metrics = {}
    for i in range(4):
        metrics.update(td3.update(batch(device, seed=i)))
    assert td3.skipped == 0 and all(torch.isfinite(v) for v in metrics.values())
    assert all(t.dtype == torch.float32 for t in tensors_of(td3))  # weights, targets, optimizer state
    with td3.precision.autocast():
        assert torch.nn.functional.linear(torch.randn(3, 8, device=device), torch.randn(5, 8, device=device)).dtype \
            == torch.bfloat16


def test_fp16_on_cuda_skips_a_non_finite_step_and_backs_the_scale_off():
    device = torch.device("cuda", 0)
    td3 = learner(device, "fp16")
    scaler = td3.precision.scaler
    assert scaler is not None and scaler.is_enabled()
    for i in range(6):  # the first steps may overflow at the initial scale; the scaler finds its level
        td3.update(batch(device, seed=i))
    skipped, scale = td3.skipped, scaler.get_scale()
    before = [p.detach().clone() for p in td3.critic.parameters()]
    td3.update(batch(device, seed=99, reward=float("inf")))  # an infinite TD target: non-finite gradients
    assert td3.skipped == skipped + 1
    assert scaler.get_scale() == scale * scaler.get_backoff_factor()
    assert all(torch.equal(b, p) for b, p in zip(before, td3.critic.parameters()))  # the step did not happen
    td3.update(batch(device, seed=100))
    assert all(torch.isfinite(p).all() for p in td3.critic.parameters())


def test_compiled_neuron_kernels_on_cuda_match_eager():
    device = torch.device("cuda", 0)
    eager, compiled = learner(device), learner(device, compile=True)
    compiled.actor.load_state_dict(eager.actor.state_dict())
    obs = torch.randn(32, OBS, device=device) * 2
    torch.testing.assert_close(compiled.actor(obs), eager.actor(obs), rtol=1e-5, atol=1e-5)
    loss_e, loss_c = eager.actor(obs).square().sum(), compiled.actor(obs).square().sum()
    loss_e.backward()
    loss_c.backward()
    for pe, pc in zip(eager.actor.parameters(), compiled.actor.parameters()):
        torch.testing.assert_close(pc.grad, pe.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_whole_update_compiled_on_cuda_matches_eager(mode):
    """The compiled update (and with CUDA graphs, `reduce-overhead`) computes the eager update's weights."""
    device = torch.device("cuda", 0)
    eager, compiled = learner(device), learner(device, compile=True, compile_mode=mode)
    batches = [batch(device, seed=i) for i in range(6)]
    for i, b in enumerate(batches):
        for td3 in (eager, compiled):
            torch.manual_seed(i)  # the same target-smoothing noise
            td3.update(b)
    assert compiled.critic_objective.failed is None and compiled.actor_objective.failed is None
    for a, b in ((eager.actor, compiled.actor), (eager.critic, compiled.critic),
                 (eager.critic_target, compiled.critic_target)):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("compile_mode", [None, "default", "reduce-overhead"])
def test_an_update_on_cuda_never_synchronises(compile_mode):
    """CUDA's sync-debug mode raises on any operation that makes the host wait for the GPU: none happens
    inside an update, with a non-finite batch (skipped on the device) among them."""
    device = torch.device("cuda", 0)
    td3 = learner(device, compile=compile_mode is not None, compile_mode=compile_mode or "default")
    batches = [batch(device, seed=i) for i in range(4)] + [batch(device, seed=9, reward=float("nan"))]
    for b in batches[:4]:
        td3.update(b)  # compiling and recording happen here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for b in batches:
            td3.update(b)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert td3.skipped == 1 and td3.consecutive_skips == 1


def test_cuda_graphs_run_from_the_command_line(tmp_path):
    proc = run_cli(tmp_path, *GPU_RUN, "compile_mode=reduce-overhead")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["device"] == "cuda" and summary["total_env_steps"] == 600


def test_codecarbon_records_nvml_on_a_gpu_run(tmp_path):
    proc = run_cli(tmp_path, *GPU_RUN, "train.total_steps=200", "energy=codecarbon", "energy.measure_power_secs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["device"] == "cuda"
    assert summary["energy_source"].startswith("nvml+"), summary["energy_source"]
    assert summary["gpu_energy_kwh"] >= 0 and summary["energy_kwh"] > 0
