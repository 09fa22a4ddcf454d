"""Hydra launchers as config (conf/hydra/launcher/): which launcher a multirun uses, that its plugin is
installed, and that the resources it gives fit every job's `dist`, all checked by `preflight` before
anything is submitted; and, inside a job, how many jobs of the sweep run beside it on this machine.

    slurm    hydra-submitit-launcher's SLURM executor: one SLURM job per sweep job, its srun tasks are the
             ranks (dist.nnodes nodes x world_size / nnodes tasks)
    local    hydra-submitit-launcher's local executor: jobs as subprocesses of this machine, each
             spawning its own ranks; the sweeper hands it cores // ranks jobs at a time
    joblib   hydra-joblib-launcher: jobs in a pool of cores // ranks worker processes
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path

from .config import ConfigError, RunConfig, compose
from .runtime.distributed import available_cores

FAILED_JOBS: list[str] = []  # run folders of the multirun's failed jobs, reported at its end (spikerl.run)
FAILURE_MARKER = "failed.txt"  # a failed job of a multirun leaves its one-line error here, in its run folder

# A launcher choice -> (the modules it needs, the package that has them)
_SUBMITIT = (("hydra_plugins.hydra_submitit_launcher", "submitit"), "hydra-submitit-launcher")
_JOBLIB = (("hydra_plugins.hydra_joblib_launcher", "joblib"), "hydra-joblib-launcher")
PLUGINS = {"slurm": _SUBMITIT, "submitit_slurm": _SUBMITIT, "local": _SUBMITIT, "submitit_local": _SUBMITIT,
           "joblib": _JOBLIB}


def kind(target: str) -> str:
    """`slurm`, `local` (submitit's local executor), `joblib`, or `basic` (jobs one after another in
    this process) for a launcher's `_target_`."""
    if target.endswith(("hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                        "spikerl_slurm.launcher.SlurmLauncher")):
        return "slurm"
    if target.endswith("hydra_submitit_launcher.submitit_launcher.LocalLauncher"):
        return "local"
    if target.endswith("hydra_joblib_launcher.joblib_launcher.JoblibLauncher"):
        return "joblib"
    return "basic"


def is_multirun(args: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in args)


def choice(args: list[str]) -> str | None:
    """The command line's `hydra/launcher=<choice>`, if any (the last one wins, as in Hydra)."""
    chosen = None
    for arg in args:
        if arg.lstrip("+").startswith("hydra/launcher="):
            chosen = arg.split("=", 1)[1]
    return chosen


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_plugin(name: str | None) -> None:
    """A launcher whose plugin package is not installed: one line naming the choice and the package."""
    if name not in PLUGINS:
        return
    modules, package = PLUGINS[name]
    missing = [m for m in modules if not _importable(m)]
    if missing:
        raise ConfigError(f"hydra/launcher={name} needs the {package} package, which is not installed here "
                          f"(no module {missing[0]}): `make install`, or pip install {package}")


def master_config(args: list[str]):
    """The config Hydra gives the launcher and the sweeper of a multirun: the command line without its
    sweeps (each job adds its own values), Hydra's section included."""
    from .config import parse_overrides

    overrides = [a for a in args if not a.startswith("-")]
    plain = [line for ov, line in zip(parse_overrides(overrides), overrides) if not ov.is_sweep_override()]
    return compose(plain, with_hydra=True)


def launcher_of(master) -> tuple[str, str]:
    """(kind, `_target_`) of the master config's launcher; a `_target_` that cannot be imported is a
    ConfigError naming hydra/launcher."""
    target = str(master.hydra.launcher.get("_target_", ""))
    module = target.rsplit(".", 1)[0]
    if module and not _importable(module):
        chosen = master.hydra.runtime.choices.get("hydra/launcher", target)
        raise ConfigError(f"hydra/launcher={chosen}: cannot import its launcher {target} (is its plugin installed?)")
    return kind(target), target


def _at_once(master, launcher_kind: str) -> tuple[int, str]:
    """Jobs a local launcher runs at once, and the key that sets it."""
    if launcher_kind == "joblib":
        n = int(master.hydra.launcher.n_jobs)
        return (n if n > 0 else max(1, available_cores() + 1 + n)), "hydra.launcher.n_jobs"
    batch = master.hydra.sweeper.get("max_batch_size")
    return (int(batch) if batch else 0), "hydra.sweeper.max_batch_size"


def check_resources(master, launcher_kind: str, jobs: list[RunConfig]) -> None:
    """Every job's ranks fit what the launcher gives: under SLURM exactly dist.nnodes nodes of
    world_size / nnodes tasks (and a GPU per task with device=cuda); on this machine (local, joblib)
    one node, a launcher that lets each job spawn its ranks, and jobs at once x ranks within the cores."""
    launcher = master.hydra.launcher
    if launcher_kind == "slurm":
        nodes, tasks, gpus = int(launcher.nodes), int(launcher.tasks_per_node), launcher.gpus_per_node
        for rc in jobs:
            d = rc.dist
            if nodes != d.nnodes:
                raise ConfigError(f"dist.nnodes is {d.nnodes} but hydra.launcher.nodes is {nodes}: a SLURM job runs on "
                                  "its dist.nnodes nodes (sweep dist.* in separate commands)")
            if nodes * tasks != d.world_size:
                raise ConfigError(f"dist.world_size is {d.world_size} but hydra.launcher gives {nodes} node(s) x "
                                  f"{tasks} task(s) = {nodes * tasks} ranks (hydra.launcher.tasks_per_node; one rank "
                                  "per SLURM task)")
            if rc.device == "cuda" and (gpus or 0) < tasks:
                raise ConfigError(f"device=cuda gives each rank a GPU of its own, but hydra.launcher.gpus_per_node is "
                                  f"{gpus} for {tasks} tasks per node")
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        # submitit would raise a traceback after Hydra made the sweep folder (a dry run needs neither tool)
        if missing and not launcher.get("dry_run", False):
            raise ConfigError(f"hydra/launcher=slurm submits with SLURM's {' and '.join(missing)}, not on this "
                              "machine's PATH: run the command on the cluster's login node (hydra/launcher=local "
                              "runs the same jobs here; hydra.launcher.dry_run=true writes the sbatch script)")
    elif launcher_kind in ("local", "joblib"):
        if launcher_kind == "local" and (int(launcher.nodes) != 1 or int(launcher.tasks_per_node) != 1):
            raise ConfigError("hydra/launcher=local: hydra.launcher.nodes and hydra.launcher.tasks_per_node must be "
                              "1 (each job spawns its dist.world_size ranks itself)")
        at_once, key = _at_once(master, launcher_kind)
        cores = available_cores()
        for rc in jobs:
            d = rc.dist
            if d.nnodes > 1:
                raise ConfigError(f"dist.nnodes is {d.nnodes} but hydra/launcher={launcher_kind} runs every job on "
                                  "this machine: use hydra/launcher=slurm, or one command per node (docs/cluster.md)")
            if at_once > 1 and at_once * d.world_size > cores:
                raise ConfigError(f"{key}={at_once} jobs at once x dist.world_size={d.world_size} ranks need "
                                  f"{at_once * d.world_size} cores, this machine gives {cores}: lower {key} "
                                  "(or dist.world_size)")


def sweep_id(sweep_dir: str | Path) -> str:
    """A multirun's id, the same for all its jobs on whichever node they run: its folder's name (the date
    and time it started, or a benchmark's name) and a hash of the folder's absolute path, so that sweeps
    into folders of one name elsewhere stay apart and a sweep continued in its own folder keeps its id."""
    path = Path(sweep_dir).resolve()
    return f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"


def jobs_beside(hydra_cfg) -> int:
    """Inside a job: how many jobs of its sweep run at once on this machine (this one included), from
    the job's own Hydra config; 1 for SLURM (a job has its nodes) and the basic launcher."""
    launcher_kind = kind(str(hydra_cfg.launcher.get("_target_", "")))
    if launcher_kind == "joblib":
        n = int(hydra_cfg.launcher.n_jobs)
        return n if n > 0 else max(1, available_cores() + 1 + n)
    if launcher_kind == "local":
        return max(1, int(hydra_cfg.sweeper.get("max_batch_size") or 1))
    return 1
