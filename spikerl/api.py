"""SpikeRL as a library: train, evaluate, export and compare from Python (a notebook, a script), with the
same configs, checks and run folders as the command line (docs/api.md).

    from spikerl.api import compare, evaluate, export, train
    summary = train(["experiment=popsan", "env=hopper", "seed=1"])   # python -m spikerl.run ...
    evaluate(summary["run_dir"])                                      # python -m spikerl.evaluate
    export(summary["run_dir"])                                        # python -m spikerl.export
    compare(["outputs/popsan"])                                       # python -m spikerl.compare

(`spikerl.evaluate`, `spikerl.export` and `spikerl.compare` are the command-line modules, so the functions
live here.) Errors are raised (`spikerl.errors.SpikeRLError`, one-line messages) instead of exiting.
"""

from __future__ import annotations

from pathlib import Path

from .errors import SpikeRLError


def train(overrides: list[str] | tuple[str, ...] = (), run_dir: str | Path | None = None) -> dict:
    """Train one run, as `python -m spikerl.run <overrides>` does (the same checks first, the same run
    folder: `.hydra/`, `config.yaml`, metrics, checkpoints, summary), and return its summary. `run_dir`:
    where to write it (default: the config's `hydra.run.dir`, outputs/<method>/<env>/<date>_<time>)."""
    from omegaconf import OmegaConf

    from .config import compose, validate
    from .job import check
    from .launch import launch

    overrides = [str(o) for o in overrides]
    composed = compose(overrides, with_hydra=True)
    rc = validate(compose(overrides), overrides=overrides)
    run_dir = Path(run_dir if run_dir is not None else composed.hydra.run.dir)
    check(rc, run_dir)
    actor_name = composed.hydra.runtime.choices.get("actor") or "custom"
    hydra_dir = run_dir / ".hydra"  # what the comparison report finds a run folder by, as Hydra writes it
    hydra_dir.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"])
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain))
    (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain, resolve=True))
    summary = launch(rc, run_dir, actor_name)
    if summary is None:
        raise SpikeRLError(f"the run in {run_dir} left no summary (not this node's rank 0)")
    return summary


def evaluate(path: str | Path, episodes: int | None = None, seed: int | None = None) -> dict:
    """Evaluate a saved actor (a run folder or a checkpoint) deterministically, as `python -m
    spikerl.evaluate` does: by default over the run's own evaluation episodes and seeds, which reproduces
    its final evaluation. Returns {"method", "env_id", "env_steps", "episodes", "seed", "returns",
    "return_mean", "return_std"}."""
    import numpy as np

    from .evaluate import load_policy, run_eval_episodes
    from .rl.evaluation import evaluate_policy
    from .rl.seeding import EVAL_SEED_OFFSET
    from .runtime import checkpoint

    state = checkpoint.load(path)
    meta = state["meta"]
    seed = meta["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    episodes = episodes or run_eval_episodes(path, meta)
    returns = evaluate_policy(load_policy(state), meta["env_id"], episodes, seed, meta.get("max_episode_steps"))
    return {"method": meta.get("method"), "env_id": meta["env_id"], "env_steps": state["counters"]["env_steps"],
            "episodes": episodes, "seed": seed, "returns": [float(r) for r in returns],
            "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns))}


def export(path: str | Path, out: str | Path | None = None, *args: str) -> Path:
    """Export a trained spiking actor as `python -m spikerl.export <path> [--out out] [args]` does (a NIR
    bundle, checked by a round trip; `args` are that command's other options, e.g. "--quantize", "int8"),
    and return the bundle's folder. Raises SpikeRLError where the command would exit non-zero."""
    import contextlib
    import io

    from .export.__main__ import default_out, main

    argv = [str(path), *(["--out", str(out)] if out is not None else []), *map(str, args)]
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = main(argv)
    if code != 0:
        raise SpikeRLError(errors.getvalue().strip().removeprefix("spikerl.export: error: ") or f"exit code {code}",
                           exit_code=code)
    if out is not None:
        return Path(out)
    options = dict(zip(args, args[1:]))  # each option with the argument after it
    quantize = options.get("--quantize")
    return default_out(Path(path), f"{options.get('--target', 'loihi')}_{quantize}" if quantize else None)


def compare(roots: list[str | Path], out: str | Path | None = None, baseline: str = "popsan", **options):
    """The comparison report of run or sweep folders, as `python -m spikerl.compare` writes it (into
    `out`, default <first folder>/comparison); `options`: write_report's (threshold_fraction,
    inference_episodes, bootstrap_reps). Returns the report: its files, notes and GPS-UP rows."""
    from .analysis.report import write_report

    roots = [Path(r) for r in roots]
    return write_report(roots, Path(out) if out is not None else roots[0] / "comparison", baseline, **options)
