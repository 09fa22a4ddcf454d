"""Run the published PopSAN TD3 training loop (Tang et al., CoRL 2020; github.com/combra-lab/pop-spiking-deep-rl,
not part of this repository) on gymnasium 1.x, for side-by-side learning checks against `experiment=popsan`.

    python experiments/published_popsan.py --repo /path/to/pop-spiking-deep-rl --env Hopper-v4 --seed 2 \
        --steps 100000 --out results/hopper_check/published_seed2.csv

Nothing of the published loop is changed: this script only puts a `gym` module in front of gymnasium with
the old API it was written for (`reset()` returns the observation, `step()` returns (obs, reward, done,
info) with done = terminated or truncated, as gym's TimeLimit did, and takes the [1, act_dim] action the
loop passes, which gym's MuJoCo envs broadcast), stubs TensorBoard's writer where
TensorBoard is not installed, and calls the loop's `spike_td3` with the arguments of its own `__main__`
(Poisson encoder spikes for Hopper and Walker2d, actor lr 1e-4, an evaluation of 10 episodes every
10,000 steps) on the CPU. The evaluation returns it prints are written to `--out` as they come
(`env_step,return`). It runs in a temporary folder, where the loop saves its parameters.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import tempfile
import types
from pathlib import Path

import gymnasium
import numpy as np
import torch


class OldApiEnv:
    """A gymnasium env seen through gym's pre-0.26 API, which the published loop calls."""

    def __init__(self, env_id: str):
        self.env = gymnasium.make(env_id)
        self.observation_space, self.action_space = self.env.observation_space, self.env.action_space

    def reset(self):
        return self.env.reset()[0]

    def step(self, action):
        # the loop passes its actor's [1, act_dim] output; gym's MuJoCo envs broadcast it, gymnasium's refuse it
        obs, reward, terminated, truncated, info = self.env.step(np.reshape(action, self.action_space.shape))
        return obs, reward, terminated or truncated, info


def install_shims() -> None:
    sys.modules["gym"] = types.SimpleNamespace(make=OldApiEnv)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        class NoWriter:
            def __init__(self, *args, **kwargs):
                pass

            def add_scalar(self, *args, **kwargs):
                pass

        sys.modules["torch.utils.tensorboard"] = types.SimpleNamespace(SummaryWriter=NoWriter)


class EvaluationTee:
    """Passes the loop's output through and appends each `Steps: N Mean Reward: R` line to a CSV."""

    LINE = re.compile(r"Steps:\s+(\d+)\s+Mean Reward:\s+(\S+)")

    def __init__(self, stream, csv_path: Path):
        self.stream, self.csv = stream, csv_path
        self.csv.parent.mkdir(parents=True, exist_ok=True)
        self.csv.write_text("env_step,return\n")
        self._line = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            match = self.LINE.search(line)
            if match:
                with self.csv.open("a") as f:
                    f.write(f"{match.group(1)},{float(match.group(2))}\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="a checkout of combra-lab/pop-spiking-deep-rl")
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100_000, help="a multiple of --epoch-steps")
    parser.add_argument("--epoch-steps", type=int, default=10_000,
                        help="the loop's epoch: it evaluates (and saves) at the end of each")
    parser.add_argument("--start-steps", type=int, default=10_000, help="random actions first (the loop's default)")
    parser.add_argument("--update-after", type=int, default=1_000, help="no updates before (the loop's default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.epoch_steps <= 0 or args.steps <= 0 or args.steps % args.epoch_steps:
        parser.error(f"--steps {args.steps} is not a positive multiple of --epoch-steps {args.epoch_steps}")
    torch.set_num_threads(args.threads)
    install_shims()
    sys.path.insert(0, str(args.repo.resolve()))
    from popsan_drl.popsan_td3.td3_cuda_norm import SpikeActorDeepCritic, spike_td3

    poisson = args.env.split("-")[0] in ("Hopper", "Walker2d")
    ac_kwargs = dict(hidden_sizes=[256, 256], encoder_pop_dim=10, decoder_pop_dim=10, mean_range=(-3, 3),
                     std=math.sqrt(0.15), spike_ts=5, device=torch.device("cpu"), use_poisson=poisson)
    out = args.out.resolve()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as work, contextlib.redirect_stdout(EvaluationTee(sys.stdout, out)):
        os.chdir(work)
        spike_td3(lambda: OldApiEnv(args.env), actor_critic=SpikeActorDeepCritic, ac_kwargs=ac_kwargs,
                  popsan_lr=1e-4, gamma=0.99, seed=args.seed, epochs=args.steps // args.epoch_steps,
                  steps_per_epoch=args.epoch_steps, start_steps=args.start_steps, update_after=args.update_after,
                  norm_clip_limit=3.0, tb_comment=f"{args.env}-seed{args.seed}", model_idx=args.seed,
                  use_cuda=False)
        os.chdir(here)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
