"""Observation normaliser, replay buffer and the vector env's end-of-episode handling."""

import numpy as np
import pytest
import torch

from spikerl.rl.envs import make_vec_env, real_next_obs
from spikerl.rl.normalizer import ObsNormalizer
from spikerl.rl.replay import ReplayBuffer


def test_zscore_matches_numpy_whatever_the_batching_and_clips_at_3():
    rng = np.random.default_rng(0)
    data = rng.normal(2.0, 5.0, size=(1000, 3))
    norm = ObsNormalizer(3)
    for chunk in np.array_split(data, [1, 7, 300, 301]):
        norm.update(chunk)
        if len(chunk) > 1:
            norm.sync()
    norm.sync()
    np.testing.assert_allclose(norm.mean, data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.std, data.std(0), rtol=1e-6)
    out = norm(torch.tensor([[2.0, 2.0 + 100.0, 2.0 - 100.0]]))
    assert out[0, 0].item() == pytest.approx((2.0 - data[:, 0].mean()) / data[:, 0].std(), rel=1e-5)
    assert out[0, 1:].tolist() == [3.0, -3.0]


def test_maxabs_divides_by_running_max_and_state_round_trips():
    norm = ObsNormalizer(2, kind="maxabs")
    norm.update(np.array([[1.0, -4.0], [-2.0, 2.0]]))
    torch.testing.assert_close(norm(torch.tensor([[1.0, 1.0]])), torch.tensor([[1.0, 1.0]]))  # not synced yet
    norm.sync()
    torch.testing.assert_close(norm(torch.tensor([[1.0, 1.0]])), torch.tensor([[0.5, 0.25]]))
    copy = ObsNormalizer(2, kind="zscore")
    copy.load_state_dict(norm.state_dict())
    torch.testing.assert_close(copy(torch.tensor([[1.0, 1.0]])), torch.tensor([[0.5, 0.25]]))


def test_unknown_normaliser_kind_is_refused():
    with pytest.raises(ValueError, match="normalizer kind must be one of"):
        ObsNormalizer(2, kind="minmax")


def test_replay_wraps_around_and_samples_normalised_batches():
    buf = ReplayBuffer(obs_dim=1, act_dim=1, capacity=4)
    for i in range(6):
        buf.add(np.array([[i]]), np.array([[0.0]]), np.array([float(i)]), np.array([[i + 1]]), np.array([False]))
    assert len(buf) == 4
    assert sorted(buf.rew.tolist()) == [2.0, 3.0, 4.0, 5.0]  # the oldest two were overwritten
    batch = buf.sample(64, lambda x: x * 10, torch.Generator().manual_seed(0))
    assert batch.obs.shape == (64, 1)
    torch.testing.assert_close(batch.next_obs, batch.obs + 10)  # normalise applied to both
    assert set(batch.rew.tolist()) <= {2.0, 3.0, 4.0, 5.0}


def test_real_next_obs_takes_the_final_observation_of_finished_episodes():
    envs = make_vec_env("InvertedPendulum-v5", num_envs=2, max_episode_steps=3)
    obs, _ = envs.reset(seed=0)
    for _ in range(3):
        prev = obs
        obs, rew, term, trunc, info = envs.step(np.zeros((2, 1)))
    assert trunc.all() and not term.any()  # the time limit, not a fall
    nxt = real_next_obs(obs, term | trunc, info)
    # the returned obs already belongs to the next episode; the transition must end in the final one
    assert not np.allclose(nxt, obs)
    np.testing.assert_allclose(nxt, np.stack(info["final_obs"]))
    assert np.abs(nxt - prev).max() < 0.5  # one physics step away from the previous observation
    envs.close()
