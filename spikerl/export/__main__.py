"""Export a trained spiking actor to NIR: `python -m spikerl.export <run folder or checkpoint> [--out DIR]`.

Writes a bundle folder (default: <run folder>/nir, or <checkpoint>_nir beside a checkpoint file):
actor.nir (the spiking layers as a NIR graph), host.npz and bundle.json (the host side: normaliser,
encoder, decoder, action scaling). The bundle is then read back (`nir.read`), simulated on evaluation
episodes, and checked to give exactly the trained actor's spikes and actions on the observations of
those episodes; the energy per action counted on them is printed (--json: one JSON object). Nothing
is written unless the check passes; an existing folder is replaced only with --force.

--quantize int8 [--target loihi|float] writes the actor quantised under a target's rules instead
(spikerl/export/quantize.py): it is run in the target's arithmetic for the evaluation episodes beside
the float actor, and written only if its return keeps --min-return-ratio of the float return (or
with --force); the returns, the share of equal actions and the energy at that precision are printed.
With --qat-updates N the actor is first fine-tuned for N learner updates with its weights fake-quantised
under the target's rules (spikerl/export/qat.py; --qat-lr, --qat-collect), then quantised as above and
judged against the original float actor's return; the fine-tuned learner is written beside the bundle
(qat.pt).

--energy-only prints the energy per action of any actor, the MLP (ANN) actor included, and writes
nothing. Bad input (not a spiking actor, an unreadable checkpoint, an existing output folder) is
refused in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..errors import BAD_INPUT, SpikeRLError, error_line, report
from ..rl.evaluation import trained_actor
from ..runtime import checkpoint
from . import qat
from .energy import energy_lines, inference_energy, spiking_energy
from .nir_graph import (
    INFO_FILE,
    build_bundle,
    quantized_bundle,
    read_bundle,
    verify_round_trip,
    write_bundle,
)
from .quantize import SCHEMES, TARGETS, pipeline_check

MIN_RETURN_RATIO = 0.95


def default_out(path: Path, quantized: str | None = None) -> Path:
    """<run folder>/nir (a quantised bundle: nir_<target>_<scheme>[_qat], beside the float one), or
    <checkpoint>_nir beside a checkpoint file."""
    path, name = Path(path), "nir" if quantized is None else f"nir_{quantized}"
    return path / name if path.is_dir() else path.with_name(f"{path.stem}_{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spikerl.export", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run folder (uses checkpoints/last.pt) or a checkpoint file")
    parser.add_argument("--out", help="bundle folder (default: <run folder>/nir or <checkpoint>_nir)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    parser.add_argument("--episodes", type=int, default=2,
                        help="evaluation episodes for the round-trip check and the energy count (default 2)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first episode's reset seed (default: the training run's evaluation seed)")
    parser.add_argument("--max-episode-steps", type=int, default=None, help="cut episodes short (default: the run's)")
    parser.add_argument("--energy-only", action="store_true", help="print the energy per action; write nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text lines")
    parser.add_argument("--quantize", metavar="SCHEME", help=f"quantise the weights: {' | '.join(SCHEMES)}")
    parser.add_argument("--target", metavar="TARGET",
                        help=f"the rules to quantise for, with --quantize: {' | '.join(TARGETS)} (default loihi)")
    parser.add_argument("--min-return-ratio", metavar="R",
                        help=f"with --quantize: write only if the quantised return keeps this share of the float "
                             f"return (default {MIN_RETURN_RATIO}); --force writes anyway")
    parser.add_argument("--qat-updates", metavar="N",
                        help="with --quantize: first fine-tune the actor for N learner updates with its weights "
                             "fake-quantised under the target's rules (quantisation-aware fine-tuning)")
    parser.add_argument("--qat-lr", metavar="LR",
                        help=f"with --qat-updates: the actor's learning rate (default: the run's times "
                             f"{qat.DEFAULT_LR_FACTOR:g}; the other learning rates scale with it)")
    parser.add_argument("--qat-collect", metavar="STEPS",
                        help=f"with --qat-updates: refill the replay by acting STEPS env steps with the trained actor "
                             f"and its exploration noise (default: the checkpoint's replay, else "
                             f"{qat.DEFAULT_COLLECT:,} steps)")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error("--episodes must be positive")

    def fail(message: str, code: int = BAD_INPUT) -> int:
        print(error_line("spikerl.export", message), file=sys.stderr)
        return code

    problem = _quantize_args(args)
    if problem:
        return fail(problem)
    try:
        state = checkpoint.load(args.path)
        if args.energy_only:
            result = inference_energy(state, args.episodes, args.seed, args.max_episode_steps)
            result["source"] = str(args.path)
            print(json.dumps(result, indent=2) if args.json else "\n".join(energy_lines(result)))
            return 0
        out = Path(args.out) if args.out else default_out(
            Path(args.path), f"{args.target}_{args.quantize}{'_qat' if args.qat_updates else ''}" if args.quantize
            else None)
        if out.exists() and not out.is_dir():
            return fail(f"{out} exists and is not a folder")
        if out.exists() and not args.force:
            return fail(f"output folder {out} exists; pass --force to replace it")
        actor, normalizer = trained_actor(state)
        # fine-tuning's input checked before anything runs
        prepared = qat.prepare(state, args.path, actor, args.target, args.quantize) if args.qat_updates else None
        bundle = build_bundle(state, str(args.path), actor, normalizer)
        quantized = quantized_bundle(bundle, args.target, args.quantize) if args.quantize else None
        tuned = post_training = None
        if prepared is not None:
            tuned = qat.fine_tune(prepared, state, args.qat_updates, args.qat_lr, args.qat_collect)
            # the fine-tuned actor, quantised as the plain export quantises one
            post_training, quantized = quantized, quantized_bundle(
                build_bundle(state, str(args.path), tuned.actor, normalizer), args.target, args.quantize)
        if quantized is not None:
            return export_quantized(args, state, bundle, quantized, out, fail, tuned, post_training)
    except SpikeRLError as exc:
        return report(exc, "spikerl.export")

    def round_trip(written) -> tuple[dict, str | None]:
        energy, observations = spiking_energy(state, written, args.episodes, args.seed, args.max_episode_steps,
                                              source=args.path)
        generator = torch.Generator().manual_seed(energy["seed"] + 1)
        check = verify_round_trip(actor, normalizer, written, observations, generator)
        info = dict(written.info)
        info["round_trip"] = {
            **check, "episodes": args.episodes, "seed": energy["seed"], "graph_read_with": "nir.read",
            "simulator": "spikerl.export.simulate (every node stepped together, forward Euler at dt, current-first)",
            "compared_with": "the trained actor (float32) fed the same encoder input; torch.equal",
        }
        info["energy_per_action_uj"] = energy["energy_uj"]
        found.update(energy=energy, check=check, written=written)
        failed = ", ".join(k for k, v in check.items() if k.endswith("_equal") and v is False)
        return info, None if check["ok"] else f"round trip failed ({failed or 'layer spikes differ'}); nothing written"

    found: dict = {}
    code, info = write_checked(bundle, out, fail, round_trip)
    if code is not None:
        return code
    energy, check, written = found["energy"], found["check"], found["written"]
    if args.json:
        print(json.dumps({"bundle": str(out), "round_trip": info["round_trip"], "energy": energy}, indent=2))
        return 0
    nodes = " -> ".join(info["graph"]["nodes"])
    source = info["source"]
    steps = f"{source['env_steps']:,} env steps" if isinstance(source["env_steps"], int) else "untrained"
    print(f"exported {source['method']} ({source['actor_name']}, {source['env_id']}, {steps}) to {out}: "
          f"actor.nir ({nodes}), host.npz, bundle.json")
    same = "the same encoder spikes" if not written.host.deterministic else "the same observations"
    print(f"round trip: actor.nir read back with nir.read and simulated (dt = {written.dt:g} s, "
          f"{written.info['update_order']}) on {check['observations']:,} observations of {args.episodes} episodes, "
          f"given {same}: every layer's spikes, the output and the actions equal the trained actor's")
    print(snntorch_line(check["snntorch"]))
    print("\n".join(energy_lines(energy)))
    return 0


def snntorch_line(check: dict) -> str:
    if not check["checked"]:
        return f"snnTorch's NIR importer: not checked ({check['why']})"
    if all(check["layer_spikes_equal"]) and check["actions_equal"]:
        return f"snnTorch's NIR importer read actor.nir ({check['reader']}): every layer's spikes and the actions equal"
    return (f"warning: snnTorch's NIR importer ({check['reader']}) reads actor.nir differently: layer spikes equal "
            f"{check['layer_spikes_equal']}, actions equal {check['actions_equal']}")


def write_checked(bundle, out: Path, fail, check, extra: dict | None = None) -> tuple[int | None, dict | None]:
    """Write `bundle` into a temporary folder beside `out`, read it back, and let `check(written)` give
    bundle.json's content and a one-line problem (or None); move the folder into place only without one
    (an existing `out`, allowed by --force, is swapped out). `extra`: checkpoints to write beside the
    bundle, by file name. Returns (exit code of a failure, or None; the info written)."""
    with checkpoint.staging_folder(out) as tmp:
        try:
            write_bundle(bundle, tmp)
            for name, state in (extra or {}).items():
                checkpoint.save_atomic(state, tmp / name)
        except OSError as exc:
            return fail(f"cannot write {out}: {exc.strerror or exc}"), None
        info, problem = check(read_bundle(tmp))
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if problem:
            return fail(problem, 1), None
        try:
            checkpoint.replace_folder(tmp, out)
        except OSError as exc:
            return fail(f"cannot write {out}: {exc.strerror or exc}"), None
        return None, info


def _quantize_args(args) -> str | None:
    """The quantisation options checked (and their defaults filled in); a one-line problem, or None."""
    if not args.quantize:
        given = [flag for flag, value in (("--target", args.target), ("--min-return-ratio", args.min_return_ratio),
                                          ("--qat-updates", args.qat_updates), ("--qat-lr", args.qat_lr),
                                          ("--qat-collect", args.qat_collect)) if value is not None]
        return f"{' and '.join(given)} apply to a quantised export: add --quantize int8" if given else None
    if args.energy_only:
        return "--energy-only prints the float actor's energy; the quantised export prints its own: leave one out"
    if args.quantize not in SCHEMES:
        return f"unknown --quantize {args.quantize!r} (choose one of: {', '.join(SCHEMES)})"
    args.target = args.target or "loihi"
    if args.target not in TARGETS:
        return f"unknown --target {args.target!r} (choose one of: {', '.join(TARGETS)})"
    try:
        args.min_return_ratio = MIN_RETURN_RATIO if args.min_return_ratio is None else float(args.min_return_ratio)
    except ValueError:
        return f"--min-return-ratio must be a number in (0, 1], got {args.min_return_ratio!r}"
    if not 0.0 < args.min_return_ratio <= 1.0:
        return f"--min-return-ratio must be in (0, 1], got {args.min_return_ratio:g}"
    return _qat_args(args)


def _qat_args(args) -> str | None:
    """The fine-tuning options checked and converted; a one-line problem, or None."""
    if args.qat_updates is None:
        given = [flag for flag, value in (("--qat-lr", args.qat_lr), ("--qat-collect", args.qat_collect))
                 if value is not None]
        return f"{' and '.join(given)} apply to quantisation-aware fine-tuning: add --qat-updates N" if given else None
    for flag, key, kind in (("--qat-updates", "qat_updates", int), ("--qat-collect", "qat_collect", int),
                            ("--qat-lr", "qat_lr", float)):
        value = getattr(args, key)
        if value is None:
            continue
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or not number > 0 or (kind is float and number == float("inf")):
            what = "a positive integer" if kind is int else "a positive number"
            return f"{flag} must be {what}, got {value!r}"
        setattr(args, key, number)
    return None


def closed_loop_line(closed: dict, episodes: int, min_ratio: float) -> str:
    """The closed-loop result in one line: the two returns and how the check judged them (a float return
    that is not positive has no ratio: the line gives the return the quantised one had to reach)."""
    f, q = closed["float_return"], closed["quantized_return"]
    if closed["ratio"] is not None:
        judged = f"ratio {closed['ratio']:.3f}, minimum {min_ratio:g}"
    else:
        judged = f"no ratio: the float return is not positive; kept at or above {f - (1.0 - min_ratio) * abs(f):,.1f}"
    kept = "" if closed["kept"] else ": NOT kept, written with --force"
    return (f"closed loop over {episodes} episodes (seed {closed['seed']}): quantised return {q:,.1f}, float "
            f"{f:,.1f} ({judged}{kept})")


def qat_line(record: dict) -> str:
    """The fine-tuning in one line: its updates, learning rate, replay and time, and the post-training
    quantised return it started from."""
    replay = record["replay"]
    if replay["source"] == "checkpoint":
        data = f"the checkpoint's replay ({replay['transitions']:,} transitions)"
    else:
        noise = replay["exploration"]
        data = (f"a replay of {replay['env_steps']:,} env steps acted by the trained actor with its exploration noise "
                f"({noise['act_noise']:g}{', shared' if noise['shared_noise'] else ''}; {replay['seconds']:.0f} s)")
    before = record["post_training"]
    ratio = f", ratio {before['ratio']:.3f}" if before["ratio"] is not None else ""
    return (f"quantisation-aware fine-tuning: {record['updates']:,} updates at actor lr {record['lr']:g} (batch "
            f"{record['batch_size']}) on {data} in {record['seconds']:.0f} s, weights fake-quantised for "
            f"{record['target']}; post-training quantised return before it {before['quantized_return']:,.1f}{ratio}; "
            f"fine-tuned learner in {record['checkpoint']}")


def keeps_return(float_return: float, quantized_return: float, ratio: float) -> bool:
    """Whether the quantised return keeps `ratio` of the float one: q >= f - (1 - ratio) |f| (for a positive
    float return, q >= ratio f; a negative one may fall by (1 - ratio) of its size)."""
    return quantized_return >= float_return - (1.0 - ratio) * abs(float_return)


@torch.inference_mode()
def compare_actions(reference, quantized, written, raw_obs: torch.Tensor, generator: torch.Generator) -> dict:
    """On the same observations and encoder input: how often the quantised actor's action equals the
    float actor's, how far they differ, and whether the written bundle acts as the one in memory."""
    x = reference.host.encode(reference.host.normalise(raw_obs.float()), generator)
    ref = reference.run(raw_obs, encoder_input=x)["action"]
    ours = quantized.run(raw_obs, encoder_input=x)["action"]
    back = written.run(raw_obs, encoder_input=x)["action"]
    diff = (ref - ours).abs()
    result = {"observations": int(raw_obs.shape[0]),
              "actions_equal_fraction": float((diff == 0).all(1).float().mean()),
              "action_mean_abs_diff": float(diff.mean()), "action_max_abs_diff": float(diff.max()),
              "read_back_equal": torch.equal(ours, back)}
    schedule = written.info["quantization"].get("schedule")
    if schedule is not None:  # the written schedule, run as a chip with one-step synapses would run it
        result["pipelined"] = pipeline_check(written.quant, x, schedule)
    return result


def judged(float_return: float, quantized_return: float, min_ratio: float) -> dict:
    """The quantised return's ratio to the float one (None where the float return is not positive) and
    whether it keeps `min_ratio` of it."""
    f, q = float_return, quantized_return
    return {"ratio": q / f if f > 0 else None, "kept": keeps_return(f, q, min_ratio)}


def export_quantized(args, state: dict, bundle, quantized, out: Path, fail, tuned: qat.FineTuned | None = None,
                     post_training=None) -> int:
    """Write the quantised bundle if it keeps the float return (or --force); print what it did. With
    `tuned`, `quantized` is the fine-tuned actor's and `post_training` the original actor's quantised
    bundle: both are run, and the fine-tuned one is judged against the original float actor's return."""
    found: dict = {}

    def closed_loop(written) -> tuple[dict, str | None]:
        steps = args.max_episode_steps
        float_energy, _ = spiking_energy(state, bundle, args.episodes, args.seed, steps, source=args.path)
        f = float_energy["return_mean"]
        if tuned is not None:
            before, _ = spiking_energy(state, post_training, args.episodes, args.seed, steps, source=args.path)
            found["qat"] = {**tuned.record, "checkpoint": qat.CHECKPOINT, "post_training": {
                "quantized_return": before["return_mean"], "quantized_returns": before["returns"],
                **judged(f, before["return_mean"], args.min_return_ratio)}}
        energy, observations = spiking_energy(state, written, args.episodes, args.seed, steps, source=args.path)
        check = compare_actions(bundle, quantized, written, observations,
                                torch.Generator().manual_seed(energy["seed"] + 1))
        q = energy["return_mean"]
        closed = {"episodes": args.episodes, "seed": energy["seed"], "float_return": f, "quantized_return": q,
                  "float_returns": float_energy["returns"], "quantized_returns": energy["returns"],
                  **judged(f, q, args.min_return_ratio), "min_return_ratio": args.min_return_ratio, **check}
        info = dict(written.info)
        info["quantization"] = {**info["quantization"], "closed_loop": closed}
        if tuned is not None:
            info["quantization"]["qat"] = found["qat"]
        info["energy_per_action_uj"] = energy["energy_uj"]
        info["float_energy_per_action_uj"] = float_energy["energy_uj"]
        found.update(energy=energy, float_energy=float_energy, check=check, closed=closed)
        if not check["read_back_equal"]:
            return info, "the written quantised bundle does not act as the one built; nothing written"
        if not check.get("pipelined", {"ok": True})["ok"]:
            return info, ("the bundle's pipeline schedule, run with one-step synapses, does not give the integer "
                          "simulation's spikes; nothing written")
        if not closed["kept"] and not args.force:
            return info, (f"the quantised actor's return {q:,.1f} is below {args.min_return_ratio:g} of the float "
                          f"actor's {f:,.1f} over {args.episodes} episodes; nothing written (--force writes it)")
        return info, None

    code, info = write_checked(quantized, out, fail, closed_loop,
                               {qat.CHECKPOINT: tuned.state} if tuned is not None else None)
    if code is not None:
        return code
    energy, float_energy, check, closed = found["energy"], found["float_energy"], found["check"], found["closed"]
    if args.json:
        print(json.dumps({"bundle": str(out), "quantization": info["quantization"], "energy": energy,
                          "float_energy": float_energy}, indent=2))
        return 0
    source = info["source"]
    print(f"exported {source['method']} ({source['actor_name']}, {source['env_id']}) quantised {args.quantize} for "
          f"{args.target} to {out}: actor.nir (the weights the integers stand for), host.npz (the integers), "
          f"bundle.json (the rules)")
    if tuned is not None:
        print(qat_line(found["qat"]))
    print(closed_loop_line(closed, args.episodes, args.min_return_ratio))
    print(f"actions on the {check['observations']:,} observations of those episodes: "
          f"{100 * check['actions_equal_fraction']:.1f} % equal the float actor's, mean |difference| "
          f"{check['action_mean_abs_diff']:.4f}, largest {check['action_max_abs_diff']:.4f}")
    if "pipelined" in check:
        steps = info["quantization"]["schedule"]["steps_per_action"]
        print(f"pipelined (one-step synapses, as Lava's Dense; {steps} steps an action, bundle.json's schedule): "
              f"every layer's spikes equal the integer simulation's on those observations")
    print("\n".join(energy_lines(energy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
