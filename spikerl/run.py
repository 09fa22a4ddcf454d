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
import os
import sys
from pathlib import Path

# Only the config's composition is imported up front: a mistake in the command line is answered before
# torch (about a second of importing) is; what runs a job is imported by the functions that need it.
from .config import CONF_DIR, ConfigError, check_sections, compose, expand_overrides, parse_overrides, validate
from .errors import FAILED, SpikeRLError, error_line, exit_code, report

# What Hydra and the job write into a run folder before its ranks have started. A single run into an
# existing folder keeps their bytes here (preflight), to put back if its ranks then fail to start: a
# command that trained nothing leaves the folder as it found it.
WRITTEN_BEFORE_TRAINING = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "config.yaml", "run.log")
FOLDER_BEFORE: dict[Path, bytes | None] = {}


def keep_folder(run_dir: Path) -> None:
    FOLDER_BEFORE.clear()
    if run_dir.is_dir():
        FOLDER_BEFORE.update({run_dir / name: (run_dir / name).read_bytes() if (run_dir / name).is_file() else None
                              for name in WRITTEN_BEFORE_TRAINING})


def restore_folder() -> None:
    """Put back what `keep_folder` kept (files that were not there are removed)."""
    for path, content in FOLDER_BEFORE.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)


def _job(cfg) -> None:
    import dataclasses

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    from .job import format_summary, idle_schedule
    from .launch import launch
    from .launchers import FAILED_JOBS, FAILURE_MARKER, jobs_beside, sweep_id
    from .rl.envs import NOTICE_LEDGER
    from .runtime import scheduler
    from .runtime.checkpoint import resume_path
    from .runtime.distributed import RendezvousError
    from .runtime.signals import Preempted

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN:  # third-party notices once per sweep, whichever job's process meets them
        os.environ[NOTICE_LEDGER] = str(Path(hc.sweep.dir) / ".notices")
    marker = run_dir / FAILURE_MARKER
    marker.unlink(missing_ok=True)  # a requeued job, or a sweep run again into the same folder

    def fail(message: str, code: int) -> None:
        """One line on stderr; a single run exits with `code`, a multirun goes on with its other jobs
        (and exits 1 at the end, after its comparison report). A job that runs in a process of its own
        (launchers other than the basic one) leaves the line in its run folder for the launching one."""
        print(error_line("spikerl", message), file=sys.stderr)
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(code)
        FAILED_JOBS.append(str(run_dir))
        marker.write_text(message + "\n")

    slurm = scheduler.executor() == "slurm"
    try:
        # under SLURM the job's tasks are its ranks; the job's overrides name a variant of its preset
        rc = validate(cfg, rendezvous=not slurm, overrides=list(hc.overrides.task))
        if rc.variant:  # said where the run's other notices go, not as an error
            print(f"spikerl: {', '.join(rc.variant)} changes what the preset composes: this run is {rc.method}")
        if idle := idle_schedule(rc.train):
            print(f"spikerl: warning: {idle}", file=sys.stderr)
        if hc.mode == RunMode.MULTIRUN:
            rc = dataclasses.replace(rc, sweep=sweep_id(hc.sweep.dir))
        # a requeued job continues its own folder (not the checkpoint it first started from, once it has one)
        if scheduler.requeued(run_dir) and rc.resume != "auto" and (rc.resume is None or resume_path("auto", run_dir)):
            print(f"spikerl: requeued job: continuing {run_dir} (resume=auto)", file=sys.stderr)
            rc = dataclasses.replace(rc, resume="auto")
        scheduler.clear_requeue_marker(run_dir)
        if slurm:
            scheduler.export_slurm_rendezvous(rc.dist.master_port)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        summary = launch(rc, run_dir, hc.runtime.choices.get("actor", "custom"), jobs_beside(hc))
    except SpikeRLError as exc:  # one line and the error's exit code (spikerl.errors)
        if isinstance(exc, RendezvousError):  # the ranks did not start: nothing was trained
            restore_folder()
        return fail(str(exc), exit_code(exc))
    except Preempted as stop:
        cont = f"continue with: {continue_command(hc.overrides.task, run_dir)}"
        if scheduler.executor():  # a job of its own that submitit runs: requeue it (exits here when it does)
            rank = int(os.environ.get("RANK", 0))
            print(f"spikerl: {stop}; handing the job to submitit to requeue", file=sys.stderr)
            why = scheduler.hand_over(stop.signum, stop.step, run_dir, rank)
            if rank == 0:
                return fail(f"{stop}; not requeued: {why}; {cont}", 128 + stop.signum)
        print(f"spikerl: {stop}; {cont}", file=sys.stderr)  # the whole command was asked to stop, a multirun too
        sys.exit(128 + stop.signum)
    except ProcessRaisedException as exc:  # a spawned rank failed: its traceback, then one line
        last = str(exc).strip().splitlines()[-1]
        if RendezvousError.__name__ in last:  # the rendezvous said it in one line
            restore_folder()
            return fail(last.split(": ", 1)[-1], RendezvousError.exit_code)
        print(str(exc).rstrip(), file=sys.stderr)
        return fail(f"a rank failed: {last}", exit_code(exc))
    except ProcessExitedException as exc:  # a rank died without raising (killed, out of memory)
        return fail(f"a rank died: {exc}", exit_code(exc))
    if summary is not None:
        print(format_summary(summary))


def continue_command(overrides, run_dir: Path) -> str:
    """The command that continues this run: its own overrides (as Hydra saved them), resume=auto and
    its folder."""
    import shlex

    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "hydra.run.dir")]
    return shlex.join(["python", "-m", "spikerl.run", *kept, "resume=auto", f"hydra.run.dir={run_dir}"])


def preflight(args: list[str]) -> None:
    """Check every job the command line asks for before Hydra makes a run folder: each job's config is
    composed and validated; what takes building (the task, the networks, a checkpoint to resume) is
    checked once per distinct combination, which a sweep over seeds or learning rates shares."""
    if any(a in ("-h", "--help", "--hydra-help", "--info", "-c", "--cfg", "--resolve") or a.startswith("--info")
           for a in args):
        return
    overrides = [a for a in args if not a.startswith("-")]
    # every job composed first: Hydra's and the keys' mistakes are answered before torch is imported. A sweep
    # without -m is one job, which Hydra refuses (its value is ambiguous), as it will
    single = [a for a in overrides if not a.lstrip("+~").startswith("hydra")]
    multirun = any(a in ("-m", "--multirun") for a in args)
    if not multirun:
        parse_overrides(overrides)  # a line Hydra cannot parse is answered as in a sweep
    jobs = [(job, compose(job)) for job in (expand_overrides(overrides) if multirun else [single])]
    for _, cfg in jobs:  # and the sections' keys and values (the rendezvous is the launcher's, checked below)
        check_sections(cfg, rendezvous=False)
    from . import launchers
    from .job import check, expected_meta
    from .rl.envs import notices_held
    from .runtime.checkpoint import compatible_view

    launcher, master = "basic", None
    if launchers.is_multirun(args):  # the launcher Hydra will use, its plugin and the resources it gives
        launchers.check_plugin(launchers.choice(args))
        master = launchers.master_config(args)
        launcher, _ = launchers.launcher_of(master)
    here = launcher != "slurm"  # SLURM's nodes have the devices, and SLURM gives the rendezvous
    built, dists = set(), {}
    hydra_args = [a for a in overrides if a.lstrip("+~").startswith("hydra")]
    for job, cfg in jobs:
        rc = validate(cfg, devices=here, rendezvous=here, overrides=job)
        dists.setdefault(json.dumps([rc.dist.world_size, rc.dist.nnodes, rc.device]), rc)
        # resume=auto in a single run: its folder's checkpoint is checked now, before Hydra writes into it
        run_dir = run_folder([*job, *hydra_args]) if rc.resume == "auto" and master is None else None
        # what `check` builds (task, networks, learner) and what a checkpoint to resume must match
        key = json.dumps([compatible_view(expected_meta(rc, None, None, rc.dist.world_size)), rc.algo, rc.resume,
                          str(run_dir)], sort_keys=True)
        if key not in built:
            with notices_held():  # the jobs show third-party notices; this check would show them first
                check(rc, run_dir)
            built.add(key)
    if master is not None:
        launchers.check_resources(master, launcher, list(dists.values()))
    else:
        keep_folder(run_folder(overrides))


def run_folder(overrides: list[str]) -> Path:
    """The folder a single run with these overrides writes into (`hydra.run.dir`)."""
    return Path(str(compose(overrides, with_hydra=True).hydra.run.dir))


def refuse_multirun_inspection(args: list[str]) -> None:
    """Hydra inspects one config at a time (`--cfg`, `--info`, ...): with -m it raises a traceback."""
    shown = [a for a in args if a in ("-c", "--cfg", "--resolve", "--shell-completion") or a.startswith("--info")]
    if not shown:
        return
    from . import launchers

    if launchers.is_multirun(args):
        raise ConfigError(f"{shown[0]} shows one job's config: leave out -m/--multirun and give one value per "
                          "swept key")


def main() -> None:
    import hydra

    try:
        refuse_multirun_inspection(sys.argv[1:])
        preflight(sys.argv[1:])
    except SpikeRLError as exc:  # bad input: nothing started
        sys.exit(report(exc))
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_job)()
    # FAILED_JOBS: run folders of this multirun's failed jobs, those run in this process and (found by the
    # FAILURE_MARKER they leave, spikerl.callbacks.FailedJobs) those run elsewhere. They live in
    # spikerl.launchers, shared with the callback also when this module runs as __main__ (python -m spikerl.run).
    from .launchers import FAILED_JOBS

    if FAILED_JOBS:
        print(error_line("spikerl", f"{len(FAILED_JOBS)} job(s) of the multirun failed: {', '.join(FAILED_JOBS)}"),
              file=sys.stderr)
        sys.exit(FAILED)


if __name__ == "__main__":
    main()
