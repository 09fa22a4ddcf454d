"""Evaluate a saved actor: `python -m spikerl.evaluate <run folder or checkpoint> [--episodes N]`.

The actor is rebuilt from the spec stored in the checkpoint, with the observation normaliser saved
beside it, and run deterministically. With the default seed the episodes are the ones the training
run's own evaluations used, so the final evaluation's returns are reproduced.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from .errors import SpikeRLError, report
from .rl.evaluation import evaluate_policy, trained_actor
from .rl.seeding import EVAL_SEED_OFFSET
from .runtime import checkpoint
from .runtime.precision import Precision


def load_policy(state: dict):
    """The deterministic policy (raw obs tensor -> action in [-1, 1]) saved in a checkpoint: the actor's
    own forward (for SAC, tanh of the Gaussian's mean), in the precision the run trained in."""
    meta = state["meta"]
    actor, normalizer = trained_actor(state)
    precision = Precision(meta["precision"]) if meta["precision"] != "fp16" else Precision("fp32")

    @torch.inference_mode()
    def policy(raw_obs: torch.Tensor) -> torch.Tensor:
        with precision.autocast():
            return actor(normalizer(raw_obs)).float()

    return policy


def run_eval_episodes(path, meta: dict) -> int:
    """How many episodes the run's own evaluations used: its checkpoint's record, else its run folder's
    config.yaml (checkpoints written before the record), else 10."""
    from omegaconf import OmegaConf

    if meta.get("eval_episodes"):
        return int(meta["eval_episodes"])
    config = checkpoint.run_folder(path) / "config.yaml"
    try:
        return int(OmegaConf.select(OmegaConf.load(config), "train.eval_episodes", default=10))
    except (OSError, ValueError, TypeError):
        return 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spikerl.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run folder (uses checkpoints/last.pt) or a checkpoint file")
    parser.add_argument("--episodes", type=int, default=None,
                        help="number of episodes (default: as many as the run's own evaluations, else 10)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first episode's reset seed (default: the training run's evaluation seed)")
    parser.add_argument("--energy-episodes", type=int, default=2,
                        help="episodes over which the inference energy per action is counted (default 2; 0: none)")
    args = parser.parse_args(argv)
    if args.episodes is not None and args.episodes <= 0:
        parser.error("--episodes must be positive")
    try:
        state = checkpoint.load(args.path)
        meta = state["meta"]
        policy = load_policy(state)
    except SpikeRLError as exc:  # an unusable checkpoint: exit code 2
        return report(exc, "spikerl.evaluate")
    seed = meta["seed"] + EVAL_SEED_OFFSET if args.seed is None else args.seed
    episodes = args.episodes or run_eval_episodes(args.path, meta)
    returns = evaluate_policy(policy, meta["env_id"], episodes, seed, meta.get("max_episode_steps"))
    step = state["counters"]["env_steps"]
    print(f"{meta['method']} / {meta['actor_name']} on {meta['env_id']} after {step:,} env steps: "
          f"return {np.mean(returns):.1f} +- {np.std(returns):.1f} over {episodes} episodes (seed {seed})")
    if args.energy_episodes > 0:
        print("\n".join(inference_energy_lines(state, args.energy_episodes, seed)))
    return 0


def inference_energy_lines(state: dict, episodes: int, seed: int) -> list[str]:
    """The inference energy per action and firing rates (spikerl.export.energy), as lines to print;
    one line saying why where they cannot be estimated."""
    from .export import energy_lines, inference_energy

    try:
        return energy_lines(inference_energy(state, episodes, seed))
    except SpikeRLError as exc:
        return [f"inference energy per action: not estimated ({exc})"]


if __name__ == "__main__":
    sys.exit(main())
