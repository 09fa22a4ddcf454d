"""Side by side with the published PopSAN loop's semantics on Hopper-v4, the task where it uses Poisson
encoder spikes and where episodes end early (issue 13's Hopper question). The published loop, run on
gymnasium (experiments/published_popsan.py): stores (o, a, r, o2, d) with d = False when the episode hit
its time limit, else the env's done; feeds the observation normaliser the stored `o` (never the last
observation of an episode) and folds it in every 50 steps; draws fresh Poisson spikes at every call of
its actor, for acting and for the target alike. These tests replay our collector's actions through a
plain gymnasium env kept the published way and require the same replay contents and statistics."""

import gymnasium as gym
import numpy as np
import torch

from spikerl.rl.collector import Collector
from spikerl.rl.normalizer import ObsNormalizer
from spikerl.rl.replay import ReplayBuffer
from spikerl.rl.sections import EnvConfig
from spikerl.snn.actors import PopSpikingActor
from spikerl.snn.encoders import PopulationEncoder
from spikerl.telemetry.metrics import RunningMeans

STEPS, LIMIT, SEED = 600, 60, 3  # a time limit of 60 steps: both kinds of episode end occur


def published_storage(actions: np.ndarray):
    """The published loop's stored transitions and normaliser input for `actions` on Hopper-v4, and the
    steps where the env terminated on the last step of its time limit."""
    env = gym.make("Hopper-v4", max_episode_steps=LIMIT)
    o, _ = env.reset(seed=SEED)
    ep_len, stored, seen, at_limit = 0, [], [], []
    for a in actions:
        o2, r, terminated, truncated, _ = env.step(a)
        ep_len += 1
        d = terminated or truncated
        d = False if ep_len == LIMIT else d  # the published loop's own rule
        stored.append((o, a, r, o2, float(d)))
        seen.append(o)
        at_limit.append(terminated and ep_len == LIMIT)
        o = o2
        if d or ep_len == LIMIT:
            (o, _), ep_len = env.reset(), 0
    return stored, np.array(seen), np.array(at_limit)


def test_collector_stores_what_the_published_loop_stores_on_hopper():
    replay = ReplayBuffer(11, 3, STEPS)
    normalizer = ObsNormalizer(11, "zscore")
    collector = Collector(EnvConfig("hopper", "Hopper-v4", 1, LIMIT), policy=None, replay=replay,
                          normalizer=normalizer, act_noise=0.1, seed=SEED)
    window = RunningMeans()
    for step in range(STEPS):
        collector.step(explore_randomly=True, env_step=step, window=window)
        if (step + 1) % 50 == 0:
            collector.sync_normalizer(distributed=False)
    collector.close()
    stored, seen, at_limit = published_storage(replay.act[:STEPS].numpy().astype(np.float64))
    obs, act, rew, next_obs, done = (np.array(x) for x in zip(*stored))
    assert 0 < done.sum() and (done == 0).sum() > 0  # unhealthy terminations happened, and time limits
    np.testing.assert_allclose(replay.obs[:STEPS].numpy(), obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(replay.next_obs[:STEPS].numpy(), next_obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(replay.rew[:STEPS].numpy(), rew, rtol=1e-5, atol=1e-5)
    # One deliberate difference: a fall on the last step of the time limit is a termination to us (no
    # bootstrap) and not to the published rule, which treats every step at the limit as a truncation.
    # At Hopper's limit of 1,000 steps that needs a fall on exactly step 1,000.
    ours_done = replay.terminated[:STEPS].numpy()
    assert at_limit.any() and (ours_done[at_limit] == 1).all() and (done[at_limit] == 0).all()
    np.testing.assert_array_equal(ours_done[~at_limit], done[~at_limit])
    # the normaliser saw the stored observations (first ones of episodes included, last ones never)
    np.testing.assert_allclose(normalizer.mean, seen.mean(0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(normalizer.std**2, seen.var(0) + normalizer.eps, rtol=1e-6, atol=1e-8)


def test_poisson_actor_draws_fresh_spikes_at_every_call():
    """Acting and the target network's call each draw their own spikes, as the published actor does:
    the same observation gives different actions from call to call, whose mean settles."""
    torch.manual_seed(0)
    actor = PopSpikingActor(11, 3, encoder=lambda d: PopulationEncoder(d, spikes="poisson"), hidden_sizes=(64, 64))
    obs = torch.randn(1, 11)
    with torch.no_grad():
        actions = torch.cat([actor(obs) for _ in range(400)])
    assert actions.std(0).min() > 0  # stochastic
    first, second = actions[:200].mean(0), actions[200:].mean(0)
    torch.testing.assert_close(first, second, atol=0.05, rtol=0)
