"""Actors: shared interface, PopSAN equivalence, no state kept between calls."""

import copy
import functools

import pytest
import torch

from reference import popsan_neuron_step
from spikerl.rl.networks import MLPActor
from spikerl.snn.actors import DSRLSpikingActor, PopSpikingActor
from spikerl.snn.decoders import PopulationDecoder
from spikerl.snn.encoders import PopulationEncoder, TwoNeuronEncoder


def popsan_actor(obs_dim=3, act_dim=2, hidden=(32, 16)):
    return PopSpikingActor(obs_dim, act_dim, encoder=PopulationEncoder, hidden_sizes=hidden)


def dsrl_actor(obs_dim=3, act_dim=2):
    return DSRLSpikingActor(obs_dim, act_dim, encoder=TwoNeuronEncoder, hidden_sizes=(40, 30))


ACTORS = {
    "popsan": popsan_actor,
    "popsan_poisson": lambda: PopSpikingActor(
        3, 2, encoder=functools.partial(PopulationEncoder, spikes="poisson"), hidden_sizes=(32, 16)),
    "dsrl": dsrl_actor,
    "mlp": lambda: MLPActor(3, 2, hidden_sizes=(32, 16)),
}


@pytest.mark.parametrize("name", ACTORS)
def test_common_interface(name):
    torch.manual_seed(0)
    actor = ACTORS[name]()
    act = actor(torch.randn(7, 3) * 2)
    assert act.shape == (7, 2) and act.dtype == torch.float32
    assert act.abs().max() <= 1.0
    act.sum().backward()
    assert all(p.grad is not None for p in actor.parameters())


@pytest.mark.parametrize("name", ["popsan", "dsrl"])
def test_no_state_survives_between_calls(name):
    torch.manual_seed(0)
    actor = ACTORS[name]()
    fresh = copy.deepcopy(actor)
    big = torch.randn(256, 3)
    single = actor(big[:1] * 3)  # a batch-1 call first ...
    after = actor(big)  # ... does not change a later batch-256 call
    torch.testing.assert_close(after, fresh(big), rtol=0, atol=0)
    torch.testing.assert_close(actor(big[:1] * 3), single, rtol=0, atol=0)


def test_deepcopy_after_forward_with_grad():
    """A copy made after a forward and backward pass (the precision probe copies the run's networks so)
    acts as the original and owns its weights: no tensor storage is shared."""
    torch.manual_seed(0)
    actor = popsan_actor()
    obs = torch.randn(4, 3)
    actor(obs).sum().backward()
    twin = copy.deepcopy(actor)  # snnTorch buffers would hold a stale graph here if state were kept
    with torch.no_grad():
        torch.testing.assert_close(twin(obs), actor(obs), rtol=0, atol=0)
    storage = lambda m: {t.untyped_storage().data_ptr() for t in [*m.parameters(), *m.buffers()]  # noqa: E731
                         if t.numel()}
    assert storage(actor) and not storage(actor) & storage(twin)
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in actor.named_parameters()]


def test_decoder_is_rate_then_grouped_linear_then_tanh():
    dec = PopulationDecoder(act_dim=2, pop_dim=3)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
        dec.bias.copy_(torch.tensor([0.1, -0.2]))
    spikes = torch.zeros(5, 1, 6)
    spikes[:, 0, 0] = 1.0  # rate 1
    spikes[:2, 0, 2] = 1.0  # rate 0.4
    spikes[:4, 0, 3] = 1.0  # rate 0.8
    expected = torch.tanh(torch.tensor([[1.0 * 1 + 3.0 * 0.4 + 0.1, -1.0 * 0.8 - 0.2]]))
    torch.testing.assert_close(dec(spikes), expected)


def test_popsan_actor_matches_time_major_reference():
    """The layer-by-layer forward equals PopSAN's published time-major loop on the same weights,
    in actions and in gradients."""
    torch.manual_seed(1)
    actor = popsan_actor(hidden=(64, 48))
    obs = torch.randn(16, 3)

    def reference(obs):
        spikes_in = actor.encoder(obs, 5)
        lin = actor.snn.linears
        c = [torch.zeros(obs.shape[0], m.out_features) for m in lin]
        v = [torch.zeros_like(x) for x in c]
        s = [torch.zeros_like(x) for x in c]
        total = torch.zeros_like(c[-1])
        for t in range(5):
            x = spikes_in[t]
            for i, layer in enumerate(lin):
                c[i], v[i], s[i] = popsan_neuron_step(c[i], v[i], s[i], layer(x))
                x = s[i]
            total = total + x
        rate = (total / 5).view(-1, 2, 10)
        return torch.tanh((rate * actor.decoder.weight).sum(-1) + actor.decoder.bias)

    out = actor(obs)
    out.pow(2).sum().backward()
    grads = [p.grad.clone() for p in actor.parameters()]
    actor.zero_grad()
    ref = reference(obs)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    for g, p in zip(grads, actor.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


def test_dsrl_layers_are_bias_free_with_scaled_normal_init():
    torch.manual_seed(0)
    actor = DSRLSpikingActor(50, 4, encoder=TwoNeuronEncoder, hidden_sizes=(400, 300))
    assert all(lin.bias is None for lin in actor.snn.linears) and actor.readout.bias is None
    first = actor.snn.linears[0].weight
    assert first.std().item() == pytest.approx(1 / 100 ** 0.5, rel=0.05)  # fan_in = 2 * 50


@pytest.mark.parametrize(
    "actor_cls,encoder", [(PopSpikingActor, PopulationEncoder), (DSRLSpikingActor, TwoNeuronEncoder)]
)
def test_neuron_backends_give_the_same_actions_and_gradients(actor_cls, encoder):
    obs = torch.randn(32, 3)
    outputs = []
    for backend in ("snntorch", "fused", "bptt"):
        torch.manual_seed(0)
        actor = actor_cls(3, 2, encoder=encoder, hidden_sizes=(48, 32), neuron_backend=backend)
        out = actor(obs)
        out.pow(2).sum().backward()
        outputs.append((out.detach(), [p.grad for p in actor.parameters()]))
    (a1, g1), *others = outputs
    for a2, g2 in others:
        torch.testing.assert_close(a1, a2, rtol=0, atol=1e-6)
        for x, y in zip(g1, g2):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_unknown_neuron_backend_is_refused():
    with pytest.raises(ValueError, match="neuron_backend"):
        PopSpikingActor(3, 2, encoder=PopulationEncoder, neuron_backend="loihi")


@pytest.mark.parametrize(
    "actor_cls,encoder", [(PopSpikingActor, PopulationEncoder), (DSRLSpikingActor, TwoNeuronEncoder)]
)
def test_compiled_kernels_give_the_same_actions_and_gradients(actor_cls, encoder):
    """compile=true runs the bptt kernels through torch.compile: same spikes, so the same
    actions, and the same gradients up to rounding; batch 1 and the training batch both work."""
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        actor = actor_cls(3, 2, encoder=encoder, hidden_sizes=(48, 32), compile=compiled)
        out = actor(torch.randn(32, 3))
        out.pow(2).sum().backward()
        with torch.inference_mode():
            single = actor(torch.ones(1, 3))
        results.append((out.detach(), single, [p.grad for p in actor.parameters()]))
    (a1, s1, g1), (a2, s2, g2) = results
    assert torch.equal(a1, a2) and torch.equal(s1, s2)
    for x, y in zip(g1, g2):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_compile_applies_to_the_bptt_backend_only():
    from spikerl.snn.through_time import run_through_time_fused

    actor = PopSpikingActor(3, 2, encoder=PopulationEncoder, neuron_backend="fused", compile=True)
    assert actor.snn.run is run_through_time_fused  # the reference backends stay eager


def _compile_raising(make_error):
    """A torch.compile whose compiled functions raise `make_error()` when called."""
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise make_error()
        return run
    return broken_compile


def _no_compiler():
    from torch._inductor.exc import CppCompileError

    return CppCompileError(["g++"], "g++: not found")


def test_a_failing_compile_warns_once_and_that_kernel_falls_back_to_eager(monkeypatch):
    from spikerl.snn import through_time

    monkeypatch.setattr(through_time, "_compiled", {})
    monkeypatch.setattr(torch, "compile", _compile_raising(_no_compiler))
    torch.manual_seed(0)
    eager = PopSpikingActor(3, 2, encoder=PopulationEncoder, hidden_sizes=(16, 16))
    compiled = PopSpikingActor(3, 2, encoder=PopulationEncoder, hidden_sizes=(16, 16), compile=True)
    compiled.load_state_dict(eager.state_dict())
    obs = torch.randn(8, 3)
    with pytest.warns(UserWarning, match="compile of the forward kernel failed .CppCompileError"):
        out = compiled(obs)
    assert torch.equal(out, eager(obs))
    assert list(through_time.compile_failures()) == ["forward"]  # the backward kernel has not failed (yet)
    with pytest.warns(UserWarning, match="backward kernel failed"):
        out.sum().backward()
    assert set(through_time.compile_failures()) == {"forward", "backward"}


def test_a_compile_failure_of_one_kernel_leaves_the_other_compiled(monkeypatch):
    from spikerl.snn import through_time

    calls = []

    def compile_breaking_forward(fn, **kwargs):
        def run(*args):
            calls.append(fn.__name__)
            if fn is through_time.lif_forward:
                raise _no_compiler()
            return fn(*args)
        return run

    monkeypatch.setattr(through_time, "_compiled", {})
    monkeypatch.setattr(torch, "compile", compile_breaking_forward)
    actor = PopSpikingActor(3, 2, encoder=PopulationEncoder, hidden_sizes=(16, 16), compile=True)
    with pytest.warns(UserWarning, match="forward kernel failed"):
        actor(torch.randn(8, 3)).sum().backward()
    assert list(through_time.compile_failures()) == ["forward"]
    assert "lif_backward" in calls  # the backward still ran compiled


@pytest.mark.parametrize("error", [
    lambda: torch.OutOfMemoryError("CUDA out of memory"),
    lambda: RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
])
def test_an_error_of_the_computation_in_a_compiled_kernel_is_raised_not_hidden(monkeypatch, error):
    """Only compile failures fall back; out of memory or a shape error is the run's problem."""
    from spikerl.snn import through_time

    monkeypatch.setattr(through_time, "_compiled", {})
    monkeypatch.setattr(torch, "compile", _compile_raising(error))
    actor = PopSpikingActor(3, 2, encoder=PopulationEncoder, hidden_sizes=(16, 16), compile=True)
    with pytest.raises(type(error())):
        actor(torch.randn(8, 3))
    assert through_time.compile_failures() == {}


def test_a_tracing_error_that_eager_also_raises_is_the_computations(monkeypatch):
    """Dynamo reports a shape error met while tracing as its own exception; running eagerly then
    raises the real error, which is raised, and compile is not marked as failed."""
    from torch._dynamo.exc import TorchRuntimeError

    from spikerl.snn import through_time

    monkeypatch.setattr(through_time, "_compiled", {})
    monkeypatch.setattr(torch, "compile", _compile_raising(lambda: TorchRuntimeError("shape")))
    with pytest.raises(RuntimeError, match="size of tensor"):
        through_time._run_kernel("forward", True, torch.ones(2, 3, 4), 0.5, torch.ones(5), 0.5, 1.0, 1.0)
    assert through_time.compile_failures() == {}
