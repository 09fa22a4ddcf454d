"""Run an exported bundle on Lava's Loihi models: `python -m spikerl.deploy lava <bundle folder>`.

The bundle must be a `--quantize int8 --target loihi` one. Lava runs in its own environment (`make
lava`). First the integer simulation acts for --episodes episodes (at most --max-episode-steps steps
each) and Lava is given the same encoder input on every observation they went through: every neuron
node's output and every action must be equal (exit 1 where they are not). With --closed-loop E, Lava
then acts itself for E episodes (the actions of all running episodes run back to back), and the
returns are printed beside the integer simulation's on the same reset seeds. Lava steps cost milliseconds
each: the line printed says what it cost. Nothing is written. Bad input (no bundle, not a
loihi bundle, no Lava environment) is refused in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from ..errors import FAILED, SpikeRLError, error_line, report
from ..rl.evaluation import evaluate_policy
from .lava_host import LavaRunner, compare, loihi_bundle

PROGRAM = "python -m spikerl.deploy"


def record(bundle, episodes: int, seed: int, steps: int, generator: torch.Generator) -> tuple[np.ndarray, torch.Tensor]:
    """The integer simulation's returns and the raw observations its episodes went through."""
    seen = []
    returns = evaluate_policy(lambda raw: bundle.run(raw, generator=generator)["action"],
                              bundle.info["source"]["env_id"], episodes, seed, steps,
                              lambda raw, running: seen.append(raw[torch.as_tensor(running)]), bundle.host.scale_action)
    return returns, torch.cat(seen)


def lava(args) -> int:
    bundle = loihi_bundle(args.bundle)
    generator = torch.Generator().manual_seed(args.seed)
    returns, raw = record(bundle, args.episodes, args.seed, args.max_episode_steps, generator)
    with LavaRunner(bundle, args.bundle, args.lava_python) as runner:
        check = compare(runner, raw, torch.Generator().manual_seed(args.seed + 1))
        schedule = bundle.info["quantization"]["schedule"]
        result = {"bundle": args.bundle, "lava": "lava-nc, Loihi1SimCfg(select_tag='fixed_pt')",
                  "build_seconds": runner.build_seconds, "steps_per_action": schedule["steps_per_action"],
                  "recorded": {**check, "episodes": args.episodes, "seed": args.seed,
                               "integer_returns": returns.tolist()}}
        if args.closed_loop:
            before, start = (runner.seconds, runner.actions), time.perf_counter()
            lava_returns = evaluate_policy(lambda raw: runner.act(raw, generator=generator)["action"],
                                           bundle.info["source"]["env_id"], args.closed_loop, args.seed,
                                           args.max_episode_steps, scale=bundle.host.scale_action)
            actions = runner.actions - before[1]
            result["closed_loop"] = {
                "episodes": args.closed_loop, "seed": args.seed, "lava_returns": lava_returns.tolist(),
                "integer_returns": returns[:args.closed_loop].tolist() if args.closed_loop <= args.episodes else None,
                "actions": actions, "wall_seconds": time.perf_counter() - start,
                "lava_seconds_per_action": (runner.seconds - before[0]) / max(actions, 1)}
    ok = check["actions_equal_fraction"] == 1.0 and all(check["nodes_equal"].values())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(lines(result))
    if not ok:
        print(error_line("spikerl.deploy", "Lava's Loihi models and the integer simulation differ"), file=sys.stderr)
    return 0 if ok else FAILED


def lines(result: dict) -> str:
    rec = result["recorded"]
    per_step = rec["seconds"] / max(rec["observations"] * result["steps_per_action"], 1)
    differ = [name for name, same in rec["nodes_equal"].items() if not same]
    out = [f"Lava ({result['lava']}) on {rec['observations']:,} observations of {rec['episodes']} episodes (seed "
           f"{rec['seed']}), {result['steps_per_action']} Lava steps an action: "
           f"{100 * rec['actions_equal_fraction']:.1f} % of actions equal the integer simulation's; "
           + ("every node's output equal" if not differ else f"outputs differ in {', '.join(differ)}")
           + f" ({rec['seconds']:.1f} s, {1e3 * per_step:.1f} ms a Lava step with the host's share)"]
    closed = result.get("closed_loop")
    if closed:
        mean = float(np.mean(closed["lava_returns"]))
        integer = "" if closed["integer_returns"] is None else \
            f" (the integer simulation: {float(np.mean(closed['integer_returns'])):,.1f})"
        out.append(f"closed loop through Lava, {closed['episodes']} episodes: return {mean:,.1f}{integer}; "
                   f"{closed['actions']:,} actions in {closed['wall_seconds']:.1f} s, "
                   f"{1e3 * closed['lava_seconds_per_action']:.0f} ms of Lava an action")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lava", help="run a loihi bundle on Lava's bit-accurate Loihi models")
    p.add_argument("bundle", help="a bundle folder written by python -m spikerl.export RUN --quantize int8")
    p.add_argument("--episodes", type=int, default=1,
                   help="episodes of the integer simulation whose observations Lava is checked on (default 1)")
    p.add_argument("--max-episode-steps", type=int, default=200, help="steps per episode at most (default 200)")
    p.add_argument("--closed-loop", type=int, default=0, metavar="E",
                   help="then act through Lava for E episodes (default 0: none)")
    p.add_argument("--seed", type=int, default=0, help="first episode's reset seed (default 0)")
    p.add_argument("--lava-python", help="the Lava environment's Python (default: .venv-lava/bin/python)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    for flag, value, least in (("--episodes", args.episodes, 1), ("--max-episode-steps", args.max_episode_steps, 1),
                               ("--closed-loop", args.closed_loop, 0)):
        if value < least:
            parser.error(f"{flag} must be at least {least}")
    try:
        return lava(args)
    except SpikeRLError as exc:
        return report(exc, "spikerl.deploy")


if __name__ == "__main__":
    sys.exit(main())
