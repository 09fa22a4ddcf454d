"""SpikeRL from Python (spikerl.api): the example in docs/api.md runs as written, and errors are raised,
not exits."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_the_documented_example_runs_as_written(tmp_path, monkeypatch, capsys):
    example = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, str(DOC), "exec"), {})
    study = tmp_path / "study"
    assert (study / "popsan" / "summary.json").is_file() and (study / "td3" / ".hydra" / "config.yaml").is_file()
    assert (study / "popsan" / "nir" / "bundle.json").is_file()
    report = (study / "comparison" / "report.md").read_text()
    assert "Comparison of 2 runs" in report and "td3" in report  # both runs found, as Hydra's would be
    assert "popsan" in capsys.readouterr().out


def test_errors_are_raised_with_their_one_line_and_code(tmp_path):
    from spikerl.api import evaluate, train
    from spikerl.errors import SpikeRLError

    with pytest.raises(SpikeRLError, match="did you mean hopper") as bad:
        train(["env=hoper"], run_dir=tmp_path / "x")
    assert bad.value.exit_code == 2 and not (tmp_path / "x").exists()
    with pytest.raises(SpikeRLError, match="no checkpoint"):
        evaluate(tmp_path / "nothing")
