"""Entry point: `python -m spikerl.run [overrides]` (Hydra). Composes and checks the config, builds the
actor, critic and learner, trains, and writes the run folder:

    .hydra/            Hydra's record of the composed config and overrides
    config.yaml        the resolved config
    metrics.jsonl      one JSON object per logged step
    checkpoints/last.pt
    summary.json       flat summary read by tools and users
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import CONF_DIR, ConfigError, compose, expand_overrides, validate
from .job import check, format_summary
from .launch import launch
from .runtime.checkpoint import CheckpointError

FAILED_JOBS: list[str] = []  # run folders of this multirun's failed jobs (jobs run in this process)


def _job(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    from .rl.collector import EnvFault
    from .rl.updates import TrainingDiverged
    from .runtime.signals import Preempted

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)

    def fail(message: str, code: int) -> None:
        """One line on stderr; a single run exits with `code`, a multirun goes on with its other jobs
        (and exits 1 at the end, after its comparison report)."""
        print(f"spikerl: error: {message}", file=sys.stderr)
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(code)
        FAILED_JOBS.append(str(run_dir))

    try:
        rc = validate(cfg)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        summary = launch(rc, run_dir, hc.runtime.choices.get("actor", "custom"))
    except ConfigError as exc:
        return fail(str(exc), 2)
    except CheckpointError as exc:  # a bad checkpoint to resume from, or one that cannot be written
        return fail(str(exc), 2 if "cannot write" not in str(exc) else 1)
    except Preempted as stop:  # the whole command was asked to stop, a multirun too
        print(f"spikerl: {stop}; continue with: python -m spikerl.run <same overrides> resume=auto "
              f"hydra.run.dir={run_dir}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except (EnvFault, TrainingDiverged) as exc:
        return fail(str(exc), 1)
    except ProcessRaisedException as exc:  # a spawned rank failed: its traceback, then one line
        print(str(exc).rstrip(), file=sys.stderr)
        return fail(f"a rank failed: {str(exc).strip().splitlines()[-1]}", 1)
    except ProcessExitedException as exc:  # a rank died without raising (killed, out of memory)
        return fail(f"a rank died: {exc}", 1)
    if summary is not None:
        print(format_summary(summary))


def preflight(args: list[str]) -> None:
    """Check every job the command line asks for before Hydra makes a run folder: each job's config is
    composed and validated; what takes building (the task, the networks, a checkpoint to resume) is
    checked once per distinct combination, which a sweep over seeds or learning rates shares."""
    if any(a in ("-h", "--help", "--hydra-help", "--info", "-c", "--cfg", "--resolve") or a.startswith("--info")
           for a in args):
        return
    overrides = [a for a in args if not a.startswith("-")]
    built = set()
    for job in expand_overrides(overrides):
        rc = validate(compose(job))
        key = json.dumps([rc.env.id, rc.actor, rc.critic, rc.resume, rc.dist.world_size, rc.algo.obs_norm],
                         sort_keys=True)
        if key not in built:
            check(rc)
            built.add(key)


def main() -> None:
    import hydra

    try:
        preflight(sys.argv[1:])
    except (ConfigError, CheckpointError) as exc:
        print(f"spikerl: error: {exc}", file=sys.stderr)
        sys.exit(2)
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_job)()
    if FAILED_JOBS:
        print(f"spikerl: error: {len(FAILED_JOBS)} job(s) of the multirun failed: {', '.join(FAILED_JOBS)}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
