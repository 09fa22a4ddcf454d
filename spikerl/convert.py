"""ANN-to-SNN conversion: `python -m spikerl.convert <ANN run folder or checkpoint>`.

Turns a trained ANN actor (`experiment=td3`, any `algo`: for SAC, the deterministic actor, tanh of the
Gaussian's mean) into a rate-coded spiking actor (spikerl/snn/actors.py, ConvertedActor) and reports
its closed-loop return against the ANN's for each number of timesteps T, with its synaptic operations
and energy per action (spikerl/export/energy.py) beside the ANN's MACs.

The conversion is data-based weight normalisation with percentile scales (Rueckauer et al., "Conversion
of continuous-valued deep networks to efficient event-driven networks for image classification",
Frontiers in Neuroscience 2017), the rate-coding recipe SpikingJelly's `ann2snn` implements: each
hidden ReLU layer l gets one scale lambda_l, the `--percentile` of its activations over calibration
observations (all units and samples together); its integrate-and-fire neurons get threshold 1 and the
weights W_l lambda_{l-1} / lambda_l and bias b_l / lambda_l (lambda_0 = 1: the normalised observation
goes in as a constant current), so that a neuron's firing rate approximates its ReLU activation over
lambda_l; the readout integrates W_L lambda_{L-1} / T and b_L / T, its membrane after T steps being the
time mean of the ANN's last layer. Reset by subtraction (default) keeps the charge above the threshold;
reset to zero (`--reset zero`) loses it, but is what NIR's IF node and Loihi's compartments compute.

Calibration observations: the run's replay where the checkpoint holds it (`train.save_replay=true`),
else the observations of `--calibration-episodes` episodes acted by the ANN itself (reset seeds apart
from the evaluation's). SpikingJelly itself is not a dependency: its releases require torchvision and
torchaudio builds that replace this project's pinned torch, and its converted network is its own
module graph, which the NIR export, the int8 targets and the energy count cannot read; the recipe is
short, and tests/test_convert.py checks it against SpikingJelly's where it is importable.

Writes <run folder>/converted/ (or `--out`): one checkpoint per T (`T<k>_<reset>.pt`, an actor that
`spikerl.evaluate` and `spikerl.export` read like any other) and `convert.json` (the results, the
scales, the command). Bad input gets one line and exit code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import BAD_INPUT, SpikeRLError, error_line, report

DEFAULT_TIMESTEPS = (8, 16, 32, 64)
CONVERTED_TARGET = "spikerl.snn.actors.ConvertedActor"


class ConvertError(SpikeRLError):
    """An actor or option the conversion cannot take; the message is one line."""

    exit_code = BAD_INPUT


def ann_layers(actor: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a ReLU MLP actor (spikerl/rl/networks.py, MLPActor); ConvertError otherwise."""
    from .rl.networks import MLPActor

    if getattr(actor, "spiking", None) is not False or not isinstance(actor, MLPActor):
        raise ConvertError(f"the conversion takes an ANN run's actor (experiment=td3, the ReLU MLP); this "
                           f"checkpoint's is {type(actor).__name__}")
    modules = list(actor.net)
    linears = modules[0::2]
    if (len(modules) < 3 or not all(isinstance(m, nn.Linear) for m in linears)
            or not all(type(m) is nn.ReLU for m in modules[1::2])):
        raise ConvertError("the conversion takes a ReLU MLP with at least one hidden layer")
    return linears


@torch.no_grad()
def activation_scales(linears: list[nn.Linear], obs: torch.Tensor, percentile: float) -> list[float]:
    """Each hidden layer's scale: the `percentile` of its ReLU activations on `obs` (normalised
    observations [n, obs_dim]), over all units and samples."""
    scales, x = [], obs.float()
    for i, linear in enumerate(linears[:-1], 1):
        x = torch.relu(linear(x))
        scale = float(np.percentile(x.double().numpy(), percentile))
        if not scale > 0:
            raise ConvertError(f"hidden layer {i} is silent on the calibration observations (its "
                               f"{percentile:g}th percentile activation is {scale:g}): nothing to convert")
        scales.append(scale)
    return scales


@torch.no_grad()
def converted_actor(linears: list[nn.Linear], scales: list[float], timesteps: int, reset: str):
    """The ConvertedActor whose rates stand for the ANN's activations (the module docstring's weights)."""
    from .snn.actors import ConvertedActor

    obs_dim, act_dim = linears[0].in_features, linears[-1].out_features
    actor = ConvertedActor(obs_dim, act_dim, [m.out_features for m in linears[:-1]], timesteps, reset).eval()
    previous = 1.0
    for i, (ann, snn) in enumerate(zip(linears[:-1], actor.snn.linears)):
        weight = ann.weight * (previous / scales[i])
        # the first layer sees the observation's positive and negative parts: W x = W x+ - W x-
        snn.weight.copy_(torch.cat([weight, -weight], dim=1) if i == 0 else weight)
        snn.bias.copy_(ann.bias / scales[i])
        previous = scales[i]
    actor.readout.weight.copy_(linears[-1].weight * (previous / timesteps))
    actor.readout.bias.copy_(linears[-1].bias / timesteps)
    return actor


def converted_state(state: dict, actor, reset: str, scales: list[float], percentile: float, calibration: dict) -> dict:
    """A checkpoint of the converted actor that `spikerl.evaluate` and `spikerl.export` read: the ANN
    run's meta with the converted actor's spec, its weights, and the run's normaliser."""
    meta = state["meta"]
    spec = {"_target_": CONVERTED_TARGET, "hidden_sizes": [m.out_features for m in actor.snn.linears],
            "timesteps": actor.timesteps, "reset": reset}
    converted_from = {"method": meta.get("method"), "actor": meta.get("actor_name"), "algo": meta.get("algo"),
                      "scales": scales, "percentile": percentile, "calibration": calibration}
    return {"meta": {**meta, "actor_spec": spec, "actor_name": f"converted-{reset}",
                     "method": f"{meta.get('method')}+convert", "converted_from": converted_from},
            "learner": {"actor": {k: v.detach().clone() for k, v in actor.state_dict().items()}},
            "normalizer": state["normalizer"], "counters": state.get("counters") or {}}


def calibration_observations(state: dict, actor, normalizer, samples: int, episodes: int,
                             max_episode_steps: int | None) -> tuple[torch.Tensor, dict]:
    """Normalised observations to set the scales from, and where they came from: up to `samples` of the
    checkpoint's replay (evenly spaced), else every observation of `episodes` episodes the ANN acts."""
    replay = state.get("replay")
    if isinstance(replay, dict) and int(replay.get("size", 0)) > 0:
        raw = replay["obs"][: int(replay["size"])]
        pick = torch.linspace(0, len(raw) - 1, min(samples, len(raw))).round().long()
        return normalizer(raw[pick].float()), {"source": "replay", "observations": int(len(pick)),
                                               "replay_size": int(replay["size"])}
    from .rl.evaluation import evaluate_policy
    from .rl.seeding import CALIBRATION_SEED_OFFSET

    meta, seen = state["meta"], []
    seed = meta["seed"] + CALIBRATION_SEED_OFFSET
    with torch.no_grad():
        evaluate_policy(lambda raw: actor(normalizer(raw)), meta["env_id"], episodes, seed,
                        max_episode_steps or meta.get("max_episode_steps"),
                        observe=lambda raw, running: seen.append(raw[torch.as_tensor(running)]))
    raw = torch.cat(seen)
    return normalizer(raw), {"source": "episodes acted by the ANN", "episodes": episodes, "seed": seed,
                             "observations": int(len(raw))}


def closed_loop(actor, normalizer, meta: dict, episodes: int, seed: int, max_episode_steps: int | None) -> list[float]:
    from .rl.evaluation import evaluate_policy

    with torch.no_grad():
        returns = evaluate_policy(lambda raw: actor(normalizer(raw)), meta["env_id"], episodes, seed,
                                  max_episode_steps or meta.get("max_episode_steps"))
    return [float(r) for r in returns]


def _timesteps(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConvertError(f"--timesteps takes positive integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConvertError(f"--timesteps takes positive integers separated by commas, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spikerl.convert", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="an ANN run folder (uses checkpoints/last.pt) or a checkpoint file")
    parser.add_argument("--timesteps", default=",".join(map(str, DEFAULT_TIMESTEPS)),
                        help="the numbers of timesteps T to convert for, comma-separated (default 8,16,32,64)")
    parser.add_argument("--reset", default="subtract", choices=("subtract", "zero"),
                        help="the neurons' reset: subtract the threshold (default) or to zero (NIR's IF, Loihi)")
    parser.add_argument("--percentile", type=float, default=99.9,
                        help="the activation percentile each hidden layer's scale is set from (default 99.9)")
    parser.add_argument("--calibration-samples", type=int, default=10_000,
                        help="replay observations to calibrate on, where the checkpoint holds the replay")
    parser.add_argument("--calibration-episodes", type=int, default=5,
                        help="else the ANN's own episodes to calibrate on (default 5)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="closed-loop episodes for each return (default: the run's evaluation episodes)")
    parser.add_argument("--energy-episodes", type=int, default=2,
                        help="episodes to count synaptic operations on, through the exported graph (default 2)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first evaluation episode's reset seed (default: the run's evaluation seed)")
    parser.add_argument("--max-episode-steps", type=int, default=None, help="cut episodes short (default: the run's)")
    parser.add_argument("--out", help="output folder (default: <run folder>/converted)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text lines")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(error_line("spikerl.convert", message), file=sys.stderr)
        return BAD_INPUT

    for name in ("calibration_samples", "calibration_episodes", "energy_episodes", "episodes", "max_episode_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return fail(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0 < args.percentile <= 100:
        return fail(f"--percentile must be in (0, 100], got {args.percentile:g}")
    try:
        timesteps = _timesteps(args.timesteps)
        return _convert(args, argv, timesteps, fail)
    except SpikeRLError as exc:
        return report(exc, "spikerl.convert")


def _convert(args, argv: list[str], timesteps: list[int], fail) -> int:
    from .export.energy import inference_energy
    from .rl.evaluation import trained_actor
    from .rl.seeding import EVAL_SEED_OFFSET
    from .runtime import checkpoint

    path = Path(args.path)
    state = checkpoint.load(path)
    ann, normalizer = trained_actor(state)
    linears = ann_layers(ann)
    out = Path(args.out) if args.out else (path / "converted" if path.is_dir() else path.with_name(
        f"{path.stem}_converted"))
    if out.exists() and not (args.force and out.is_dir()):
        return fail(f"output folder {out} exists; pass --force to replace it" if out.is_dir()
                    else f"{out} exists and is not a folder")
    meta = state["meta"]
    episodes = args.episodes or int(meta.get("eval_episodes") or 10)
    seed = meta["seed"] + EVAL_SEED_OFFSET if args.seed is None else args.seed
    say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))

    start = time.perf_counter()
    obs, calibration = calibration_observations(state, ann, normalizer, args.calibration_samples,
                                                args.calibration_episodes, args.max_episode_steps)
    scales = activation_scales(linears, obs, args.percentile)
    calibration["seconds"] = time.perf_counter() - start
    say(f"calibrated on {calibration['observations']:,} observations ({calibration['source']}): "
        f"{args.percentile:g}th percentile scales {', '.join(f'{s:.3g}' for s in scales)}")
    ann_returns = closed_loop(ann, normalizer, meta, episodes, seed, args.max_episode_steps)
    ann_energy = inference_energy(state)
    say(f"ANN ({meta.get('method')}, {meta['env_id']}): return {np.mean(ann_returns):,.1f} over {episodes} episodes, "
        f"{ann_energy['totals']['macs']:,.0f} MACs per action, {ann_energy['energy_uj']['45nm']:.3f} µJ at 45 nm")

    rows, checkpoints = [], {}
    for T in timesteps:
        start = time.perf_counter()
        snn = converted_actor(linears, scales, T, args.reset)
        cstate = converted_state(state, snn, args.reset, scales, args.percentile, calibration)
        returns = closed_loop(snn, normalizer, meta, episodes, seed, args.max_episode_steps)
        energy = inference_energy(cstate, args.energy_episodes, seed, args.max_episode_steps)
        ratio = float(np.mean(returns) / np.mean(ann_returns)) if np.mean(ann_returns) > 0 else None
        # each spiking layer's once (a subtracting layer's reset synapse reads the same spikes)
        rates = {layer["name"].split("->")[1]: layer["firing_rate"] for layer in energy["layers"]}
        rows.append({"timesteps": T, "reset": args.reset, "return_mean": float(np.mean(returns)), "returns": returns,
                     "return_ratio": ratio, "synaptic_ops": energy["totals"]["synaptic_ops"],
                     "macs": energy["totals"]["macs"], "neuron_updates": energy["totals"]["neuron_updates"],
                     "firing_rates": [rate for rate in rates.values() if rate is not None],
                     "energy_uj": energy["energy_uj"], "energy_episodes": args.energy_episodes,
                     "seconds": time.perf_counter() - start})
        checkpoints[f"T{T}_{args.reset}.pt"] = cstate
        share = "-" if ratio is None else f"{ratio:.3f}"
        say(f"T = {T:>3} ({args.reset} reset): return {np.mean(returns):,.1f} (x{share} of the ANN's), "
            f"{energy['totals']['synaptic_ops']:,.0f} synaptic ops + {energy['totals']['macs']:,.0f} MACs per action, "
            f"{energy['energy_uj']['45nm']:.3f} µJ at 45 nm, {energy['energy_uj']['loihi']:.3f} µJ Loihi figures")

    result = {"source": str(path), "command": "python -m spikerl.convert " + shlex.join(argv),
              "method": meta.get("method"), "env_id": meta["env_id"], "algo": meta.get("algo"),
              "env_steps": (state.get("counters") or {}).get("env_steps"), "episodes": episodes, "seed": seed,
              "percentile": args.percentile, "scales": scales, "calibration": calibration, "reset": args.reset,
              "ann": {"return_mean": float(np.mean(ann_returns)), "returns": ann_returns,
                      "macs": ann_energy["totals"]["macs"], "energy_uj": ann_energy["energy_uj"]},
              "converted": rows}
    with checkpoint.staging_folder(out) as tmp:
        try:
            tmp.mkdir(parents=True)
            for name, cstate in checkpoints.items():
                checkpoint.save_atomic(cstate, tmp / name)
            (tmp / "convert.json").write_text(json.dumps(result, indent=2) + "\n")
            checkpoint.replace_folder(tmp, out)
        except OSError as exc:
            return fail(f"cannot write {out}: {exc.strerror or exc}")
    if args.json:
        print(json.dumps({**result, "out": str(out)}, indent=2))
    else:
        say(f"wrote {out}: {', '.join(checkpoints)} (python -m spikerl.export <file> deploys one) and convert.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
