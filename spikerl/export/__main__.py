"""Export a trained spiking actor to NIR: `python -m spikerl.export <run folder or checkpoint> [--out DIR]`.

Writes a bundle folder (default: <run folder>/nir, or <checkpoint>_nir beside a checkpoint file):
actor.nir (the spiking layers as a NIR graph), host.npz and bundle.json (the host side: normaliser,
encoder, decoder, action scaling). The bundle is then read back (`nir.read`), simulated on evaluation
episodes, and checked to give exactly the trained actor's spikes and actions on the observations of
those episodes; the energy per action counted on them is printed (--json: one JSON object). Nothing
is written unless the check passes; an existing folder is replaced only with --force.

--energy-only prints the energy per action of any actor, the MLP (ANN) actor included, and writes
nothing. Bad input (not a spiking actor, an unreadable checkpoint, an existing output folder) is
refused in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from ..rl.evaluation import trained_actor
from ..runtime import checkpoint
from .energy import energy_lines, inference_energy, spiking_energy
from .nir_graph import INFO_FILE, ExportError, build_bundle, read_bundle, verify_round_trip, write_bundle


def default_out(path: Path) -> Path:
    path = Path(path)
    return path / "nir" if path.is_dir() else path.with_name(f"{path.stem}_nir")


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place; an existing `out` (allowed by --force) is swapped out
    first and removed only once the new one is in place."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


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
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error("--episodes must be positive")

    def fail(message: str, code: int = 2) -> int:
        print(f"spikerl.export: error: {message}", file=sys.stderr)
        return code

    try:
        state = checkpoint.load(args.path)
        if args.energy_only:
            result = inference_energy(state, args.episodes, args.seed, args.max_episode_steps)
            result["source"] = str(args.path)
            print(json.dumps(result, indent=2) if args.json else "\n".join(energy_lines(result)))
            return 0
        out = Path(args.out) if args.out else default_out(Path(args.path))
        if out.exists() and not out.is_dir():
            return fail(f"{out} exists and is not a folder")
        if out.exists() and not args.force:
            return fail(f"output folder {out} exists; pass --force to replace it")
        actor, normalizer = trained_actor(state)
        bundle = build_bundle(state, str(args.path), actor, normalizer)
    except (checkpoint.CheckpointError, ExportError) as exc:
        return fail(str(exc))

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        try:
            write_bundle(bundle, tmp)
        except OSError as exc:
            return fail(f"cannot write {out}: {exc.strerror or exc}")
        written = read_bundle(tmp)
        energy, observations = spiking_energy(state, written, args.episodes, args.seed, args.max_episode_steps,
                                              source=args.path)
        generator = torch.Generator().manual_seed(energy["seed"] + 1)
        check = verify_round_trip(actor, normalizer, written, observations, generator)
        info = dict(written.info)
        info["round_trip"] = {
            **check, "episodes": args.episodes, "seed": energy["seed"], "graph_read_with": "nir.read",
            "simulator": "spikerl.export.simulate (feed-forward, forward Euler at dt, current-first)",
            "compared_with": "the trained actor (float32) fed the same encoder input; torch.equal",
        }
        info["energy_per_action_uj"] = energy["energy_uj"]
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if not check["ok"]:
            failed = [k for k, v in check.items() if k.endswith("_equal") and v is False]
            return fail(f"round trip failed ({', '.join(failed) or 'layer spikes differ'}); nothing written", 1)
        try:
            _replace(tmp, out)
        except OSError as exc:
            return fail(f"cannot write {out}: {exc.strerror or exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

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
    print("\n".join(energy_lines(energy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
