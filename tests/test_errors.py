"""One error base (spikerl.errors.SpikeRLError): every error class of ours carries its exit code, and the
entry points map any of them to one line and that code in one place."""

import sys

import pytest

from conftest import TINY
from spikerl import errors, launch, run
from spikerl.config import ConfigError
from spikerl.errors import BAD_INPUT, FAILED, SpikeRLError, exit_code
from spikerl.rl.collector import EnvFault
from spikerl.rl.learners import HyperparameterError
from spikerl.rl.updates import TrainingDiverged
from spikerl.runtime.checkpoint import CheckpointError
from spikerl.runtime.distributed import RendezvousError

# (error, the exit code it means, the base it had before SpikeRLError: `except` clauses elsewhere catch it so)
OURS = [
    (ConfigError("env.id: unknown"), BAD_INPUT, Exception),
    (HyperparameterError("tau", "must be in [0, 1], got 2"), BAD_INPUT, ValueError),
    (TrainingDiverged("100 updates in a row"), FAILED, RuntimeError),
    (EnvFault("raised at env step 3"), FAILED, RuntimeError),
    (RendezvousError("could not meet the others"), FAILED, RuntimeError),
]


@pytest.mark.parametrize("error,code,base", OURS, ids=[type(e).__name__ for e, _, _ in OURS])
def test_each_error_of_ours_is_a_spikerl_error_with_its_exit_code(error, code, base):
    assert isinstance(error, SpikeRLError) and isinstance(error, base)
    assert type(error).exit_code == code and exit_code(error) == code


def test_a_raise_may_set_its_own_exit_code_without_changing_its_class():
    error = ConfigError("x", exit_code=FAILED)
    assert exit_code(error) == FAILED and str(error) == "x"
    assert ConfigError.exit_code == BAD_INPUT and exit_code(ConfigError("y")) == BAD_INPUT


def test_a_checkpoint_error_is_bad_input_unless_it_could_not_be_written(tmp_path):
    from spikerl.runtime import checkpoint

    with pytest.raises(CheckpointError) as unusable:
        checkpoint.resume_path(str(tmp_path / "nowhere"), tmp_path)
    assert exit_code(unusable.value) == BAD_INPUT
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as unreadable:
        checkpoint.load(tmp_path / "garbage.pt")
    assert exit_code(unreadable.value) == BAD_INPUT
    (tmp_path / "file").write_text("")  # a file where the checkpoint's folder should be: it cannot be written
    with pytest.raises(CheckpointError, match="cannot write checkpoint") as unwritable:
        checkpoint.save_atomic({"meta": {}}, tmp_path / "file" / "last.pt")
    assert exit_code(unwritable.value) == FAILED


def test_any_other_exception_is_a_failed_job():
    assert exit_code(KeyError("x")) == FAILED and exit_code(RuntimeError("x")) == FAILED


def test_report_prints_one_line_and_returns_the_code(capsys):
    assert errors.report(ConfigError("train.batch_size must be positive"), "spikerl.evaluate") == BAD_INPUT
    assert capsys.readouterr().err == "spikerl.evaluate: error: train.batch_size must be positive\n"


@pytest.mark.parametrize("error,code", [
    (ConfigError("algo.tau must be in [0, 1]"), BAD_INPUT),
    (HyperparameterError("tau", "must be in [0, 1], got 2"), BAD_INPUT),
    (CheckpointError("resume: no checkpoint at elsewhere"), BAD_INPUT),
    (CheckpointError("cannot write checkpoint last.pt: Read-only file system", exit_code=FAILED), FAILED),
    (EnvFault("Pendulum-v1: the environment raised at env step 7"), FAILED),
    (TrainingDiverged("100 updates in a row had non-finite gradients"), FAILED),
    (RendezvousError("rank 1 could not meet the others"), FAILED),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_a_single_run_exits_with_the_errors_code_and_its_one_line(error, code, tmp_path, monkeypatch, capsys):
    """What the job raises becomes `spikerl: error: <message>` and the error's exit code; ranks that did
    not meet (RendezvousError) put back the files Hydra rewrote in an existing run folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("before\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(launch, "launch", lambda *args: (_ for _ in ()).throw(error))  # run imports it when it runs
    monkeypatch.setattr(sys, "argv", ["spikerl.run", *TINY, f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as info:
        run.main()
    assert info.value.code == code
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"spikerl: error: {error}"
    written = (run_dir / "config.yaml").read_text()
    assert (written == "before\n") == isinstance(error, RendezvousError)
