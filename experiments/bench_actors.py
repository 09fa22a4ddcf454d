"""The spiking actors of the presets against their published code: forward and backward passes per second.

    python experiments/bench_actors.py [--presets ilcsan mdcsan carebn] [--batch 100] [--rounds 5] [--calls 20]
        [--threads N] [--ilcsan-repo PATH] [--carebn-repo PATH] [--out experiments/results/bench_actors.json]

One-thread figures come from
`taskset -c 0 python experiments/bench_actors.py --threads 1 --out experiments/results/bench_actors_1thread.json`.

For each preset, the actor as the preset builds it (conf/actor/<preset>.yaml, HalfCheetah's sizes: obs 17,
act 6), fed a batch of normalised observations: `ours` (eager, the preset's neuron backend) and `compiled`
(forward and backward in one torch.compile graph, as a run's update compiles them; its compile time is
reported apart), against `published`, the published module itself with the same weights
(lucifer2859/ILC-SAN, ilcsan-td3/popsan.py and mdcsan.py: a checkout given by --ilcsan-repo or
SPIKERL_ILCSAN_REPO; xuzijie32/CaRe-BN, continuous_control/SAN.py: --carebn-repo or SPIKERL_CAREBN_REPO;
without one the preset is timed without it and the report says so). CaRe-BN's pass is the actor loss's
(batch statistics and the moving statistics' update, the published `update=True`). Before any
timing the two must give the same actions and actor-weight gradients (the weights of
tests/test_published_ilcsan.py's mapping), or the script stops with exit code 1. The unit of work is one
forward and one backward pass of the actor on the batch (the actor's share of a TD3 update; the critic
is the same MLP for every preset). Windows of `--calls` calls cycle over the variants `--rounds` times;
the report gives the median.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import benchlib
import torch
from hydra.utils import instantiate

from spikerl.config import compose

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT = 17, 6
# the published options of each preset (hybrid_td3_cuda_norm.py's arguments)
PUBLISHED = {"ilcsan": ("popsan", "PopSpikeActor", "pop-det", "last-mem", "LIF", "intra"),
             "mdcsan": ("mdcsan", "MDCSpikeActor", "pop", "fr-mlp", "DN", "none"),
             "carebn": ("SAN", "SNN_Actor")}
FOLDERS = {"ilcsan": "ilcsan-td3", "mdcsan": "ilcsan-td3", "carebn": "CaRe-BN/continuous_control"}


def published_module(repo: str, name: str, preset: str = "ilcsan"):
    sys.path.insert(0, str(Path(repo) / FOLDERS[preset]))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def our_actor(preset: str, compile: bool = False) -> torch.nn.Module:
    cfg = compose([f"experiment={preset}", "env=halfcheetah", f"compile={str(compile).lower()}"])
    return instantiate(cfg.actor, obs_dim=OBS, act_dim=ACT)


def published_actor(preset: str, repo: str, ours: torch.nn.Module):
    """The published actor with our actor's weights, its forward (obs -> action, as the actor loss calls
    it) and the pairs (our name -> published parameter)."""
    if preset == "carebn":
        actor = published_module(repo, "SAN", preset).SNN_Actor(OBS, ACT, 1.0, "DN", BN=True,
                                                                device=torch.device("cpu"))
        forward = lambda o: actor(o, update=True)  # noqa: E731
    else:
        module, cls, encode, decode, neurons, connections = PUBLISHED[preset]
        actor = getattr(published_module(repo, module, preset), cls)(
            OBS, ACT, 10, 10, [256, 256], (-3, 3), math.sqrt(0.15), 5, 1.0, torch.device("cpu"), encode, decode,
            1.0, neurons, connections)
        forward = lambda o: actor(o, o.shape[0])  # noqa: E731
    ours_state = ours.state_dict()
    snn = actor.snn
    pairs = {"encoder.mean": actor.encoder.mean, "encoder.std": actor.encoder.std,
             "decoder.weight": actor.decoder.decoder.weight, "decoder.bias": actor.decoder.decoder.bias}
    for i, layer in enumerate([*snn.hidden_layers, snn.out_pop_layer]):
        pairs[f"snn.linears.{i}.weight"], pairs[f"snn.linears.{i}.bias"] = layer.weight, layer.bias
    if hasattr(snn, "conn"):
        pairs["snn.connections.weight"], pairs["snn.connections.bias"] = snn.conn.weight, snn.conn.bias
    if hasattr(snn, "hidden_norms"):
        for i, norm in enumerate([*snn.hidden_norms, snn.out_pop_norm]):
            pairs[f"snn.norms.{i}.gamma"], pairs[f"snn.norms.{i}.beta"] = norm.gamma, norm.beta
    with torch.no_grad():
        for name, param in pairs.items():
            param.copy_(ours_state[name].reshape(param.shape))
    return actor, forward, pairs


def pass_of(forward, params, obs: torch.Tensor, probe: torch.Tensor):
    """One forward and backward pass; returns the action and the gradients of `params`."""
    def run():
        for p in params:
            p.grad = None
        action = forward(obs)
        (action * probe).sum().backward()
        return action
    return run


def check(preset: str, ours, published, forward, pairs, obs, probe) -> None:
    ours_params = dict(ours.named_parameters())
    action = pass_of(ours, ours.parameters(), obs, probe)()
    theirs = pass_of(forward, published.parameters(), obs, probe)()
    problems = []
    if (action - theirs).abs().max() > 1e-5:
        problems.append(f"actions differ by {(action - theirs).abs().max():.3g}")
    for name, param in pairs.items():
        mine = ours_params[name].grad
        # relative to the largest gradient, with a floor: a bias in front of a batch norm has a zero gradient
        # up to rounding (about 1e-6)
        if (mine - param.grad.reshape(mine.shape)).abs().max() > 1e-4 * max(param.grad.abs().max(), 0.1):
            problems.append(f"gradient of {name} differs")
    if problems:
        print(f"{preset}: equivalence check FAILED: {'; '.join(problems)}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PUBLISHED), choices=list(PUBLISHED))
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per window")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--ilcsan-repo", default=os.environ.get("SPIKERL_ILCSAN_REPO"),
                        help="a checkout of lucifer2859/ILC-SAN (default: $SPIKERL_ILCSAN_REPO)")
    parser.add_argument("--carebn-repo", default=os.environ.get("SPIKERL_CAREBN_REPO"),
                        help="a checkout of xuzijie32/CaRe-BN (default: $SPIKERL_CAREBN_REPO)")
    parser.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_actors.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(args.batch, OBS, generator=gen).clamp(-3, 3)
    probe = torch.randn(args.batch, ACT, generator=gen)
    windows, compile_seconds, notes = {}, {}, []
    for preset in args.presets:
        torch.manual_seed(0)
        ours = our_actor(preset)
        windows[(preset, "ours")] = pass_of(ours, ours.parameters(), obs, probe)
        repo = args.carebn_repo if preset == "carebn" else args.ilcsan_repo
        if repo:
            published, forward, pairs = published_actor(preset, repo, ours)
            check(preset, ours, published, forward, pairs, obs, probe)
            windows[(preset, "published")] = pass_of(forward, published.parameters(), obs, probe)
        else:
            option = "--carebn-repo" if preset == "carebn" else "--ilcsan-repo"
            notes.append(f"{preset}: no published code given ({option}), timed without it")
        if args.compiled:
            torch.manual_seed(0)
            compiled_actor = our_actor(preset, compile=True)
            step = torch.compile(pass_of(compiled_actor, compiled_actor.parameters(), obs, probe))
            start = time.perf_counter()
            step()
            compile_seconds[preset] = time.perf_counter() - start
            windows[(preset, "compiled")] = step
    calls = {key: (lambda fn=fn: benchlib.seconds_per_call(fn, args.calls, 2)) for key, fn in windows.items()}
    samples = benchlib.interleave(calls, args.rounds)
    results, rows = [], []
    for (preset, variant), values in samples.items():
        median = sorted(values)[len(values) // 2]
        base = samples.get((preset, "published"))
        speedup = (sorted(base)[len(base) // 2] / median) if base else None
        results.append({"preset": preset, "variant": variant, "batch_size": args.batch, "median_seconds": median,
                        "passes_per_second": 1.0 / median, "speedup_vs_published": speedup,
                        "compile_seconds": compile_seconds.get(preset) if variant == "compiled" else None,
                        "samples_seconds": values})
        rows.append([preset, variant, benchlib.fmt(median * 1e3, ".3g", " ms"), benchlib.fmt(1.0 / median, ".4g"),
                     benchlib.fmt(speedup, ".2f", "x"),
                     benchlib.fmt(compile_seconds.get(preset) if variant == "compiled" else None, ".1f", " s")])
    print(benchlib.markdown(["preset", "variant", "forward+backward", "passes/s", "vs published", "compile"], rows))
    for note in notes:
        print(note)
    settings = {"batch": args.batch, "rounds": args.rounds, "calls": args.calls, "presets": args.presets,
                "published_code": bool(args.ilcsan_repo), "notes": notes}
    benchlib.write_report(args.out, "bench_actors.py", argv, settings, results, [])


if __name__ == "__main__":
    main()
