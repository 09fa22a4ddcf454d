import pytest

# A run small enough for a unit test: a few hundred env steps, tiny networks, short episodes.
TINY = [
    "train.total_steps=600", "train.start_steps=200", "train.update_after=200", "train.eval_every=300",
    "train.eval_episodes=2", "train.checkpoint_every=300", "train.log_every=100", "train.progress=false",
    "env.max_episode_steps=100", "actor.hidden_sizes=[32,32]", "critic.hidden_sizes=[32,32]",
    "train.gradient_steps=10", "energy=none", "logger=jsonl", "compile=false",
]


def make_run_folder(root, name: str, summary: dict | None) -> None:
    """A run folder as Hydra and a run leave it: `.hydra/config.yaml`, and unless `summary` is None
    (a failed or unfinished run) `summary.json`, plus `evaluations.csv` from an `eval_history` key
    (rows of step, mean, std and optionally wall and training seconds)."""
    import json

    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("method: x\n")
    if summary is not None:
        summary = dict(summary)
        history = summary.pop("eval_history", [])
        (run / "summary.json").write_text(json.dumps(summary))
        timed = history and len(history[0]) == 5
        header = "step,return_mean,return_std" + (",wall_seconds,train_seconds" if timed else "")
        lines = [header, *(",".join(map(str, row)) for row in history)]
        (run / "evaluations.csv").write_text("\n".join(lines) + "\n")


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
