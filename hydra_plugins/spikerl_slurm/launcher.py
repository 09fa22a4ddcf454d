"""hydra/launcher=slurm's launcher: hydra-submitit-launcher's, with two changes.

- A refused submission in one line. When `sbatch` refuses the job array (a wrong partition, no
  allocation, a QOS limit), submitit raises its FailedJobError and Hydra prints a traceback. Here the
  command ends with sbatch's own message on one line (exit 1) instead; the folder of submitit's files
  for the refused array is removed, and so are the sweep folder and its parent where they then hold
  nothing but Hydra's multirun.yaml.
- A dry run, `hydra.launcher.dry_run=true`: submitit renders the sbatch script of the job array as it
  would submit it, which is written into the sweep folder (`sbatch_<first job>.sh`); nothing is
  submitted, submitit's pickled jobs are removed, and it works on a machine without SLURM.

(Hydra takes launchers only from the `hydra_plugins` namespace, hence this package beside `spikerl`.
Its config, `spikerl_slurm`, is submitit's `submitit_slurm` plus `dry_run`. No `from __future__ import
annotations` here: Hydra executes plugin modules outside sys.modules, where a dataclass cannot resolve
string annotations.)"""

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


@dataclass
class SpikerlSlurmQueueConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.spikerl_slurm.launcher.SlurmLauncher"
    dry_run: bool = False  # write the sbatch script into the sweep folder, submit nothing


ConfigStore.instance().store(group="hydra/launcher", name="spikerl_slurm", node=SpikerlSlurmQueueConf(),
                             provider="spikerl")


class _Rendered(Exception):
    """Raised in place of running sbatch on the script submitit wrote, during a dry run."""

    def __init__(self, script: Path):
        super().__init__(str(script))
        self.script = script


class SlurmLauncher(SubmititSlurmLauncher):
    def __init__(self, dry_run: bool = False, **params):
        super().__init__(**params)
        self.dry_run = bool(dry_run)

    def launch(self, job_overrides, initial_job_idx):
        from submitit.core.utils import FailedJobError

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        fresh = not (sweep_dir / ".submitit").exists()
        try:
            if self.dry_run:
                return self._dry_run(job_overrides, initial_job_idx, sweep_dir, fresh)
            return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as exc:  # submitit has printed sbatch's message; its last line says why
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            print(f"spikerl: error: sbatch refused the job array ({lines[-1] if lines else 'no message'}); "
                  "nothing was submitted", file=sys.stderr)
            _clean(sweep_dir, fresh)
            raise SystemExit(1) from None

    def _dry_run(self, job_overrides, initial_job_idx, sweep_dir: Path, fresh: bool):
        from submitit.slurm.slurm import SlurmExecutor

        def render(executor, script):
            raise _Rendered(script)

        # submitit looks for srun when it starts, and runs sbatch on the script it writes: neither here
        with mock.patch.object(SlurmExecutor, "affinity", classmethod(lambda cls: 1)), \
                mock.patch.object(SlurmExecutor, "_make_submission_command", render):
            try:
                super().launch(job_overrides, initial_job_idx)
            except _Rendered as rendered:
                target = sweep_dir / f"sbatch_{initial_job_idx}.sh"
                shutil.copyfile(rendered.script, target)
        _clean(sweep_dir, fresh, keep=target.name)
        print(f"spikerl: dry run: the sbatch script for {len(job_overrides)} job(s) is {target}; nothing was "
              "submitted", file=sys.stderr)
        raise SystemExit(0)


def _clean(sweep_dir: Path, fresh: bool, keep: str | None = None) -> None:
    """Remove submitit's folder (if this command made it) and a sweep folder, or its parent, that holds
    nothing but Hydra's multirun.yaml (and `keep`)."""
    if fresh:
        shutil.rmtree(sweep_dir / ".submitit", ignore_errors=True)
    if keep:
        return
    for folder in (sweep_dir, sweep_dir.parent):  # what Hydra made for this sweep, if nothing else is there
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= {"multirun.yaml"}:
            shutil.rmtree(folder, ignore_errors=True)
