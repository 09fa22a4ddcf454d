"""Hydra callbacks. `ComparisonReport` writes the comparison of a finished multirun into its sweep
folder (`<sweep>/comparison/`, see spikerl.analysis.report) and, when the sweep logged to W&B, the GPS-UP table
and figures to a W&B run of their own. A report that cannot be written warns; it never fails the sweep
whose runs are already done. `FailedJobs` finds the jobs of the multirun that failed, whichever process
ran them, so that the command exits 1. Both run in the launching process, after every launcher."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from hydra.experimental.callback import Callback

from .analysis.intervals import BOOTSTRAP_REPS


class ComparisonReport(Callback):
    def __init__(self, baseline: str = "popsan", enabled: bool = True, threshold_fraction: float = 0.8,
                 inference_episodes: int = 1, bootstrap_reps: int = BOOTSTRAP_REPS):
        self.baseline, self.enabled, self.threshold_fraction = baseline, enabled, threshold_fraction
        self.inference_episodes, self.bootstrap_reps = inference_episodes, bootstrap_reps

    def on_multirun_end(self, config, **kwargs) -> None:
        if not self.enabled:
            return
        from .analysis.report import write_report
        from .launchers import sweep_id

        sweep = Path(config.hydra.sweep.dir)
        try:
            report = write_report([sweep], sweep / "comparison", self.baseline, self.threshold_fraction,
                                  self.inference_episodes, self.bootstrap_reps)
        except Exception as exc:
            warnings.warn(f"comparison report not written: {type(exc).__name__}: {exc}", stacklevel=2)
            return
        for note in report.notes:
            print(f"spikerl: {note}", file=sys.stderr)
        if report.files:
            print(f"spikerl: comparison of {report.runs} run(s) written to {report.out}/report.md", file=sys.stderr)
            if config.logger.kind == "wandb":
                log_to_wandb(report, config.logger, sweep_id(sweep))


def log_to_wandb(report, logger, sweep: str) -> None:
    """The GPS-UP rows as a W&B table and the figures as images, in a run of job type `comparison` in the
    sweep's group (beside its jobs' runs)."""
    try:
        import wandb

        from .analysis.report import GPSUP_COLUMNS

        run = wandb.init(mode=logger.mode, project=logger.project, entity=logger.entity, dir=str(report.out),
                         name=f"{sweep}/comparison", group=sweep, job_type="comparison", tags=[f"sweep:{sweep}"],
                         reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"))
        table = wandb.Table(columns=GPSUP_COLUMNS, data=[[r.get(c) for c in GPSUP_COLUMNS] for r in report.gpsup])
        images = {f"comparison/{p.stem}": wandb.Image(str(p)) for p in report.files if p.suffix == ".png"}
        run.log({"comparison/gpsup": table, **images})
        run.finish()
    except Exception as exc:
        warnings.warn(f"comparison not logged to W&B: {type(exc).__name__}: {exc}", stacklevel=2)


class FailedJobs(Callback):
    """A failed job of a multirun leaves `failed.txt` (one line) in its run folder (spikerl.run). With
    launchers that run jobs in other processes (local, joblib, slurm) this is how the launching process
    learns of them: at the end of the multirun the markers written since it started join the failed
    jobs that `python -m spikerl.run` reports before exiting 1."""

    def __init__(self):
        self.started = time.time()

    def on_multirun_start(self, config, **kwargs) -> None:
        self.started = time.time()

    def on_multirun_end(self, config, **kwargs) -> None:
        from .launchers import FAILED_JOBS, FAILURE_MARKER

        sweep = Path(config.hydra.sweep.dir)
        known = {str(Path(d).resolve()) for d in FAILED_JOBS}
        for marker in sorted(sweep.rglob(FAILURE_MARKER)):
            run = marker.parent.resolve()
            if marker.stat().st_mtime >= self.started - 1 and str(run) not in known:
                FAILED_JOBS.append(str(run))
                known.add(str(run))
