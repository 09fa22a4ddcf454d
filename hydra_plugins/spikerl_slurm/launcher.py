"""hydra/launcher=slurm's launcher: hydra-submitit-launcher's, with a refused submission said in one line.

When `sbatch` refuses the job array (a wrong partition, no allocation, a QOS limit), submitit raises its
FailedJobError and Hydra prints a traceback. Here the command ends with sbatch's own message on one line
(exit 1) instead; the folder of submitit's files for the refused array is removed, and so are the sweep
folder and its parent where they then hold nothing but Hydra's multirun.yaml. (Hydra takes launchers only from the
`hydra_plugins` namespace, hence this package beside `spikerl`.)"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides, initial_job_idx):
        from submitit.core.utils import FailedJobError

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        fresh = not (sweep_dir / ".submitit").exists()
        try:
            return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as exc:  # submitit has printed sbatch's message; its last line says why
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            print(f"spikerl: error: sbatch refused the job array ({lines[-1] if lines else 'no message'}); "
                  "nothing was submitted", file=sys.stderr)
            if fresh:
                shutil.rmtree(sweep_dir / ".submitit", ignore_errors=True)
            for folder in (sweep_dir, sweep_dir.parent):  # what Hydra made for this sweep, if nothing else is there
                if folder.is_dir() and {p.name for p in folder.iterdir()} <= {"multirun.yaml"}:
                    shutil.rmtree(folder, ignore_errors=True)
            raise SystemExit(1) from None
