"""The snnTorch neurons reproduce PopSAN's and DSRL's recurrences exactly, spikes and gradients."""

import pytest
import torch

from reference import popsan_neuron_reference
from spikerl.snn.neurons import FastSigmoid, LIFSpec, Rectangular, current_lif, run_snntorch
from spikerl.snn.through_time import run_through_time_bptt, run_through_time_fused


def run_through_time(neuron, current):
    return run_snntorch(LIFSpec.of(neuron), current)


def popsan_neuron():
    return current_lif(current_decay=0.5, voltage_decay=0.75, threshold=0.5, surrogate=Rectangular(0.5))


def test_popsan_recurrence_matches_hand_computed_values():
    # c = 0.5 c + I;  v = 0.75 v (1 - s_prev) + c;  s = v > 0.5
    # I = 0.3:  c = 0.3                          v = 0.3                           s = 0
    # I = 0.4:  c = 0.15 + 0.4   = 0.55          v = 0.225 + 0.55     = 0.775     s = 1
    # I = 0.2:  c = 0.275 + 0.2  = 0.475         v = 0 (reset) + 0.475 = 0.475    s = 0
    # I = 0.6:  c = 0.2375 + 0.6 = 0.8375        v = 0.35625 + 0.8375 = 1.19375   s = 1
    # I = 0.1:  c = 0.41875 + 0.1 = 0.51875      v = 0 (reset) + 0.51875          s = 1
    current = torch.tensor([0.3, 0.4, 0.2, 0.6, 0.1]).view(5, 1, 1)
    neuron = popsan_neuron()
    syn = mem = torch.zeros(1, 1)
    syns, spikes = [], []
    for t in range(5):
        spk, syn, mem = neuron(current[t], syn, mem)
        syns.append(syn.item())
        spikes.append(spk.item())
    assert spikes == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert syns == pytest.approx([0.3, 0.55, 0.475, 0.8375, 0.51875])
    # the returned membrane is the post-reset value: 0 after the last spike
    assert mem.item() == 0.0


def test_popsan_spikes_and_gradients_match_reference_over_many_inputs():
    torch.manual_seed(0)
    x = (torch.rand(5, 64, 32) * 1.2 - 0.2).requires_grad_(True)
    weights = torch.randn(5, 64, 32)
    spikes, _ = run_through_time(popsan_neuron(), x)
    (spikes * weights).sum().backward()
    grad_snntorch = x.grad.clone()

    x.grad = None
    ref = popsan_neuron_reference(x)
    (ref * weights).sum().backward()
    assert torch.equal(spikes, ref)
    assert spikes.sum() > 100  # the inputs really make the neurons fire
    torch.testing.assert_close(grad_snntorch, x.grad, rtol=0, atol=1e-6)


def test_rectangular_surrogate_window():
    x = torch.tensor([-0.6, -0.5, -0.49, 0.0, 0.49, 0.5, 0.6], requires_grad=True)
    out = Rectangular(0.5)(x)
    assert out.tolist() == [0, 0, 0, 0, 1, 1, 1]
    out.sum().backward()
    assert x.grad.tolist() == [0, 0, 1, 1, 1, 0, 0]


def test_fast_sigmoid_surrogate_gradient():
    x = torch.tensor([-0.1, 0.0, 0.02], requires_grad=True)
    out = FastSigmoid(100.0)(x)
    assert out.tolist() == [0, 0, 1]
    out.sum().backward()
    torch.testing.assert_close(x.grad, 1.0 / (1.0 + 100.0 * x.detach().abs()) ** 2)


def test_dsrl_neuron_recurrence_matches_hand_computed_values():
    # syn = 0.5 syn + I;  mem = 0.5 mem + syn;  spike at mem > 0.8, membrane reset to 0
    # I = 0.4: syn 0.4,   mem 0.4                   no spike
    # I = 0.4: syn 0.6,   mem 0.2 + 0.6  = 0.8      no spike (not above threshold)
    # I = 0.4: syn 0.7,   mem 0.4 + 0.7  = 1.1      spike, mem -> 0
    # I = 0.0: syn 0.35,  mem 0 + 0.35   = 0.35     no spike
    neuron = current_lif(current_decay=0.5, voltage_decay=0.5, threshold=0.8, surrogate=FastSigmoid(100.0))
    syn = mem = torch.zeros(1)
    trace = []
    for i in [0.4, 0.4, 0.4, 0.0]:
        spk, syn, mem = neuron(torch.tensor([i]), syn, mem)
        trace.append((spk.item(), round(syn.item(), 6), round(mem.item(), 6)))
    assert trace == [(0, 0.4, 0.4), (0, 0.6, 0.8), (1, 0.7, 0.0), (0, 0.35, 0.35)]


def test_non_spiking_readout_integrates_without_reset():
    neuron = current_lif(current_decay=0.5, voltage_decay=0.5, threshold=0.1, surrogate=FastSigmoid(), spiking=False)
    _, mem = run_through_time(neuron, torch.ones(3, 1, 1))
    # syn: 1, 1.5, 1.75; mem: 1, 2, 2.75 (no reset although far above threshold)
    assert mem.item() == pytest.approx(2.75)


NEURONS = {
    "popsan": lambda: popsan_neuron(),
    "dsrl": lambda: current_lif(current_decay=0.5, voltage_decay=0.5, threshold=0.8, surrogate=FastSigmoid()),
    "readout": lambda: current_lif(current_decay=0.5, voltage_decay=0.5, threshold=0.8, surrogate=FastSigmoid(),
                                   spiking=False),
}


@pytest.mark.parametrize("backend", [run_through_time_fused, run_through_time_bptt])
@pytest.mark.parametrize("kind", NEURONS)
def test_backends_equal_snntorch_forward(kind, backend):
    """The fused step and the hand-written backpropagation through time compute what snnTorch's
    forward computes: the same spikes, final membrane, and gradients with respect to the input
    current (from spikes and membrane both, as the PopSAN and DSRL actors use them)."""
    torch.manual_seed(0)
    x = (torch.rand(5, 32, 64) * 1.5 - 0.3).requires_grad_(True)
    weights = torch.randn(5, 32, 64)
    results = []
    for run in (run_snntorch, backend):
        x.grad = None
        spikes, mem = run(LIFSpec.of(NEURONS[kind]()), x)
        ((spikes * weights).sum() + (mem * weights[0]).sum()).backward()
        results.append((spikes.detach(), mem.detach(), x.grad.clone()))
    (s1, m1, g1), (s2, m2, g2) = results
    assert torch.equal(s1, s2) and 0 < s1.mean() < 1
    torch.testing.assert_close(m1, m2, rtol=0, atol=1e-6)
    torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-6)
    assert g1.abs().max() > 0


def test_bptt_gradient_matches_a_hand_computed_two_step_case():
    """One PopSAN neuron, two steps, input 0.6 then 0.1 (threshold 0.5, reset to zero m = u - z u,
    rectangular slope g = 1 where |u - 0.5| < 0.5). Step 1: c = 0.6, u = 0.6, spike, m = 0.
    Step 2: c = 0.3 + 0.1 = 0.4, u = 0.4, no spike, m = 0.4. Both u lie in the window, so g = 1, and
    dm/du = 1 - z - u g: 1 - 1 - 0.6 = -0.6 at step 1, 1 - 0 - 0.4 = 0.6 at step 2. For L = z_1 + z_2 + m_2:
    dL/du_2 = 0.6 + 1 = 1.6;  dL/dm_1 = 0.75 * 1.6 = 1.2;  dL/du_1 = 1 + 1.2 * (-0.6) = 0.28;
    dL/dI_2 = dL/dc_2 = 1.6;  dL/dI_1 = dL/dc_1 = 0.28 + 0.5 * 1.6 = 1.08."""
    x = torch.tensor([[[0.6]], [[0.1]]], requires_grad=True)
    spikes, mem = run_through_time_bptt(LIFSpec.of(popsan_neuron()), x)
    assert spikes.flatten().tolist() == [1.0, 0.0] and mem.item() == pytest.approx(0.4)
    (spikes.sum() + mem.sum()).backward()
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([1.08, 1.6]))


def test_neurons_pickle_and_deepcopy_with_their_surrogates():
    import copy
    import pickle

    for make in NEURONS.values():
        neuron = make()
        for clone in (pickle.loads(pickle.dumps(neuron)), copy.deepcopy(neuron)):
            x = torch.rand(5, 4, 8) * 1.5
            torch.testing.assert_close(run_through_time_fused(LIFSpec.of(clone), x)[0],
                                       run_through_time_fused(LIFSpec.of(neuron), x)[0])


def test_spec_reads_the_snntorch_constants_once():
    spec = LIFSpec.of(popsan_neuron())
    assert (spec.alpha, spec.beta, spec.threshold, spec.spiking) == (0.5, 0.75, 0.5, True)
    assert isinstance(spec.surrogate, Rectangular) and spec.surrogate.half_width == 0.5
    readout = LIFSpec.of(NEURONS["readout"]())
    assert readout.spiking is False and readout.threshold == pytest.approx(0.8)


@pytest.mark.parametrize("change", [
    {"reset_mechanism": "subtract"}, {"reset_delay": True}, {"learn_beta": True}, {"learn_threshold": True},
])
def test_spec_refuses_neurons_the_kernels_do_not_compute(change):
    """A subtract or delayed reset or a learned constant would be computed wrongly by the kernels:
    refused by name instead."""
    import snntorch

    kwargs = {"alpha": 0.5, "beta": 0.75, "threshold": 0.5, "spike_grad": Rectangular(0.5),
              "reset_mechanism": "zero", "reset_delay": False, **change}
    with pytest.raises(ValueError, match="reset_delay=False"):
        LIFSpec.of(snntorch.Synaptic(**kwargs))


@pytest.mark.parametrize("backend", ["snntorch", "fused", "bptt"])
def test_actors_deepcopy_after_a_forward_with_gradients(backend):
    """TD3 deep-copies the actor for its target after it has run: no backend may leave autograd state
    in the modules (snnTorch keeps its last state in buffers unless told otherwise)."""
    import copy

    from spikerl.snn.actors import DSRLSpikingActor
    from spikerl.snn.encoders import TwoNeuronEncoder

    actor = DSRLSpikingActor(3, 2, encoder=TwoNeuronEncoder, hidden_sizes=(8, 8), neuron_backend=backend)
    actor(torch.randn(4, 3)).sum().backward()
    clone = copy.deepcopy(actor)
    obs = torch.randn(4, 3)
    torch.testing.assert_close(clone(obs), actor(obs))
    assert clone.snn.specs[0].module is clone.snn.neurons[0]  # the spec follows its copied module
