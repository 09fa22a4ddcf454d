"""PopSAN's actor computed the published way: the baseline the speed benchmarks measure ours against.

The maths of `spikerl.snn.actors.PopSpikingActor` with the regular population encoder and PopSAN's neurons,
computed step by step as PopSAN's published code computes it (written here from the equations):

    encoder   a = exp(-(o - mean)^2 / (2 std^2));  u = u + a;  e = u > 0.999;  u = u - 0.999 e
    neurons   c = 0.5 c + W x + b;  v = 0.75 v (1 - s) + c;  s = v > 0.5     (reset to zero)
    decoder   action = tanh(grouped linear(spike count / T))   (Conv1d with groups = act_dim)
    gradient  ds/dv = 1 where |v - 0.5| < 0.5 (rectangular); the encoder's spikes pass it straight

One Python loop over the T timesteps: at each timestep the encoder's spikes, then for every layer one
`nn.Linear` on that timestep's input and the neuron update, which returns new state tensors; output
spikes are summed over time, then decoded. Ours instead runs each layer's matmul once over all T
timesteps and steps the neurons of that layer through time (see `spikerl/snn/actors.py`).

Parameters carry PopSpikingActor's names and shapes (`encoder.mean`, `encoder.std`,
`snn.linears.<i>.weight|bias`, `decoder.weight|bias`), so `baseline_from(actor)` copies an actor's
weights with a strict `load_state_dict`, and `mismatches` checks that both give the same actions and
the same actor-loss gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spikerl.rl.learners.td3 import actor_loss
from spikerl.runtime.precision import Precision
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder
from spikerl.snn.neurons import Rectangular


class PseudoSpikeRect(torch.autograd.Function):
    """Spike when v > threshold; the backward pass lets the gradient through only within
    `half_width` of the threshold (PopSAN's rectangular pseudo-gradient)."""

    @staticmethod
    def forward(ctx, volt, threshold, half_width):
        ctx.save_for_backward(volt)
        ctx.threshold, ctx.half_width = threshold, half_width
        return volt.gt(threshold).to(volt.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (volt,) = ctx.saved_tensors
        near = (volt - ctx.threshold).abs() < ctx.half_width
        return grad_output * near.to(grad_output.dtype), None, None


class PseudoEncoderSpike(torch.autograd.Function):
    """The encoder's regular spike, u > threshold, with a straight-through gradient."""

    @staticmethod
    def forward(ctx, volt, threshold):
        return volt.gt(threshold).to(volt.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.clone(), None


def holder(**members) -> nn.Module:
    """A bare module holding parameters or submodules under the names PopSpikingActor uses."""
    module = nn.Module()
    for name, member in members.items():
        setattr(module, name, member)
    return module


class PopSANBaseline(nn.Module):
    """PopSAN's population-coded spiking actor with a per-timestep loop (see the module docstring)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        pop_dim: int = 10,
        out_pop_dim: int = 10,
        timesteps: int = 5,
        mean_range: tuple[float, float] = (-3.0, 3.0),
        std: float = math.sqrt(0.15),
        encoder_threshold: float = 0.999,
        current_decay: float = 0.5,
        voltage_decay: float = 0.75,
        threshold: float = 0.5,
        half_width: float = 0.5,
    ):
        super().__init__()
        self.act_dim, self.out_pop_dim, self.timesteps = act_dim, out_pop_dim, timesteps
        self.encoder_threshold = encoder_threshold
        self.current_decay, self.voltage_decay = current_decay, voltage_decay
        self.threshold, self.half_width = threshold, half_width
        means = torch.linspace(*mean_range, pop_dim).repeat(obs_dim, 1).unsqueeze(0)
        self.encoder = holder(mean=nn.Parameter(means), std=nn.Parameter(torch.full_like(means, std)))
        widths = [obs_dim * pop_dim, *hidden_sizes, act_dim * out_pop_dim]
        self.snn = holder(linears=nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:])))
        bound = 1.0 / math.sqrt(out_pop_dim)
        self.decoder = holder(
            weight=nn.Parameter(torch.empty(act_dim, out_pop_dim).uniform_(-bound, bound)),
            bias=nn.Parameter(torch.empty(act_dim).uniform_(-bound, bound)),
        )

    def receptive_fields(self, obs: torch.Tensor) -> torch.Tensor:
        """Gaussian receptive-field activation of each observation dim's population, [B, D * P]."""
        mean, std = self.encoder.mean, self.encoder.std
        return torch.exp(-0.5 * (obs.unsqueeze(-1) - mean) ** 2 / std**2).reshape(obs.shape[0], -1)

    def encoder_step(self, volt: torch.Tensor, fields: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One timestep of regular spikes: integrate the activation, spike above threshold, subtract it."""
        volt = volt + fields
        spikes = PseudoEncoderSpike.apply(volt, self.encoder_threshold)
        return volt - spikes * self.encoder_threshold, spikes

    def neuron_step(self, inp, current, volt, spikes):
        """One timestep of PopSAN's current-based LIF; returns new (current, volt, spikes) tensors."""
        current = self.current_decay * current + inp
        volt = self.voltage_decay * volt * (1.0 - spikes) + current
        return current, volt, PseudoSpikeRect.apply(volt, self.threshold, self.half_width)

    def decode(self, rate: torch.Tensor) -> torch.Tensor:
        """One linear map per action over its output population's firing rate, then tanh."""
        groups = rate.view(-1, self.act_dim, self.out_pop_dim)
        raw = F.conv1d(groups, self.decoder.weight.unsqueeze(1), self.decoder.bias, groups=self.act_dim)
        return torch.tanh(raw.view(-1, self.act_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch = obs.shape[0]
        fields = self.receptive_fields(obs)
        enc_volt = torch.zeros_like(fields)
        # per layer: current, voltage, spikes; fp32 state, so under autocast the recurrence stays fp32
        states = [tuple(obs.new_zeros(batch, linear.out_features) for _ in range(3)) for linear in self.snn.linears]
        spike_count = 0.0
        for _ in range(self.timesteps):
            enc_volt, x = self.encoder_step(enc_volt, fields)
            for i, linear in enumerate(self.snn.linears):
                states[i] = self.neuron_step(linear(x), *states[i])
                x = states[i][2]
            spike_count = spike_count + x
        return self.decode(spike_count / self.timesteps)


def baseline_from(actor: PopSpikingActor) -> PopSANBaseline:
    """A baseline with `actor`'s sizes, constants and (copied) weights. Only PopSAN's setting is
    covered: regular population encoder, rectangular surrogate, reset to zero."""
    encoder, neuron = actor.encoder, actor.snn.specs[0]
    if not (isinstance(encoder, PopulationEncoder) and encoder.spikes == "regular"):
        raise ValueError("the baseline covers the regular population encoder only")
    if not isinstance(neuron.surrogate, Rectangular) or not neuron.spiking:
        raise ValueError("the baseline covers PopSAN's neurons only: rectangular surrogate, immediate reset to zero")
    baseline = PopSANBaseline(
        encoder.obs_dim, actor.decoder.act_dim,
        hidden_sizes=[linear.out_features for linear in actor.snn.linears[:-1]],
        pop_dim=encoder.pop_dim, out_pop_dim=actor.decoder.pop_dim, timesteps=actor.timesteps,
        encoder_threshold=encoder.threshold, current_decay=neuron.alpha, voltage_decay=neuron.beta,
        threshold=neuron.threshold, half_width=neuron.surrogate.half_width,
    )
    baseline.load_state_dict(dict(actor.named_parameters()))  # strict: same names and shapes
    return baseline.to(next(actor.parameters()).device)


def actions_and_gradients(actor: nn.Module, critic: nn.Module, obs: torch.Tensor):
    """The actor's actions on `obs`, and the gradient of TD3's actor loss (-Q1(s, pi(s)), fp32) on each
    of its parameters, by name."""
    with torch.no_grad():
        actions = actor(obs)
    named = dict(actor.named_parameters())
    grads = torch.autograd.grad(actor_loss(actor, critic, obs, Precision("fp32"))[0], list(named.values()))
    return actions, dict(zip(named, grads))


def mismatches(ours, baseline, critic, obs_batches, rtol: float = 1e-5) -> list[str]:
    """Where two actors disagree on the given observation batches: actions, then the actor-loss gradient
    of every parameter; empty when they agree. The absolute tolerance is `rtol` times the tensor's
    largest magnitude, since gradients of different parameters differ by orders of magnitude."""
    problems = []
    for k, obs in enumerate(obs_batches):
        act_a, grads_a = actions_and_gradients(ours, critic, obs)
        act_b, grads_b = actions_and_gradients(baseline, critic, obs)
        if grads_a.keys() != grads_b.keys():
            return [f"parameter names differ: {sorted(grads_a.keys() ^ grads_b.keys())}"]
        pairs = [("actions", act_a, act_b), *((f"gradient of {n}", grads_a[n], grads_b[n]) for n in grads_a)]
        for what, a, b in pairs:
            atol = rtol * float(a.abs().max())
            if not torch.allclose(b, a, rtol=rtol, atol=atol):
                problems.append(f"batch {k} (size {len(obs)}): {what} differ by up to {float((a - b).abs().max()):.3g} "
                                f"(tolerance {atol:.3g} + {rtol:g} |value|)")
    return problems
