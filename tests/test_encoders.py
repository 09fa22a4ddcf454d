"""Population and two-neuron encoders."""

import math

import torch

from spikerl.snn.encoders import PopulationEncoder, TwoNeuronEncoder


def test_receptive_fields_initialised_as_popsan():
    enc = PopulationEncoder(obs_dim=3)
    assert enc.mean.shape == (1, 3, 10)
    torch.testing.assert_close(enc.mean[0, 1], torch.linspace(-3, 3, 10))
    torch.testing.assert_close(enc.std, torch.full((1, 3, 10), math.sqrt(0.15)))
    assert enc.mean.requires_grad and enc.std.requires_grad
    assert enc.num_outputs == 30


def test_gaussian_activation_values():
    enc = PopulationEncoder(obs_dim=1, pop_dim=2, mean_range=(0.0, 1.0), std=0.5)
    act = enc.activation(torch.tensor([[0.0]]))
    # at the first mean: 1; one std (0.5) ... here distance 1 = two stds from the second: exp(-2)
    torch.testing.assert_close(act, torch.tensor([[1.0, math.exp(-2.0)]]))


def encoder_with_activation(a: float) -> tuple[PopulationEncoder, torch.Tensor]:
    """An encoder and an observation whose single receptive field has activation `a`."""
    enc = PopulationEncoder(obs_dim=1, pop_dim=2, mean_range=(0.0, 100.0), std=1.0)
    obs = torch.tensor([[math.sqrt(-2.0 * math.log(a))]])
    return enc, obs


def test_regular_spikes_integrate_and_subtract_threshold():
    # a = 0.4: volt 0.4, 0.8, 1.2 -> spike, 0.201 -> 0.601, 1.001 -> spike
    enc, obs = encoder_with_activation(0.4)
    spikes = enc(obs, timesteps=5)
    assert spikes.shape == (5, 1, 2)
    assert spikes[:, 0, 0].tolist() == [0, 0, 1, 0, 1]
    assert spikes[:, 0, 1].sum() == 0  # the far field never fires


def test_regular_spikes_pass_gradient_to_means_and_stds():
    enc = PopulationEncoder(obs_dim=2)
    enc(torch.randn(4, 2), timesteps=5).sum().backward()
    assert enc.mean.grad.abs().sum() > 0 and enc.std.grad.abs().sum() > 0


def test_poisson_spike_rate_follows_activation():
    torch.manual_seed(0)
    enc, obs = encoder_with_activation(0.3)
    enc.spikes = "poisson"
    rate = enc(obs.expand(20000, 1), timesteps=5)[:, :, 0].mean().item()
    assert abs(rate - 0.3) < 0.01


def test_two_neuron_encoder_splits_sign_and_repeats_over_time():
    enc = TwoNeuronEncoder(obs_dim=2)
    out = enc(torch.tensor([[0.5, -0.25]]), timesteps=3)
    assert out.shape == (3, 1, 4)
    for t in range(3):
        assert out[t, 0].tolist() == [0.5, 0.0, 0.0, 0.25]
