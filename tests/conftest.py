import pytest

# A run small enough for a unit test: a few hundred env steps, tiny networks, short episodes.
TINY = [
    "train.total_steps=600", "train.start_steps=200", "train.update_after=200", "train.eval_every=300",
    "train.eval_episodes=2", "train.checkpoint_every=300", "train.log_every=100", "train.progress=false",
    "env.max_episode_steps=100", "actor.hidden_sizes=[32,32]", "critic.hidden_sizes=[32,32]",
    "algo.gradient_steps=10", "energy=none", "logger=jsonl",
]


@pytest.fixture
def tiny_run(tmp_path):
    """Train a tiny run in a folder of its own; returns (summary, run folder)."""
    from spikerl.config import compose, validate
    from spikerl.job import train_run

    def run(*overrides, name="run"):
        rc = validate(compose([*TINY, *overrides]))
        run_dir = tmp_path / name
        return train_run(rc, run_dir, "popsan"), run_dir

    return run
