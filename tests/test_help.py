"""`python -m spikerl.run --help` shows SpikeRL's own screen (conf/hydra/help/spikerl.yaml), not Hydra's
stock one with its config dump; `--hydra-help` still shows Hydra's flags."""

import subprocess
import sys
from pathlib import Path


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spikerl.run", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_help_shows_examples_groups_and_exit_codes_without_a_config_dump(tmp_path):
    proc = run_cli(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    screen = proc.stdout
    for example in ("python -m spikerl.run env=ant precision=bf16 dist.world_size=8",
                    "-m experiment=popsan,dsrl,spikerl seed=0,1",
                    "resume=auto hydra.run.dir=<run folder>",
                    "python -m spikerl.evaluate <run folder>",
                    "python -m spikerl.export <run folder>",
                    "python -m spikerl.compare <sweep folder>",
                    "--cfg job"):
        assert example in screen
    # the config groups with their options, filled in by Hydra from conf/
    for line in ("env: ant, halfcheetah, hopper, humanoid, inverted_pendulum, walker2d", "algo: ddpg, sac, td3",
                 "experiment: carebn, dsrl, ilcsan, mdcsan, popsan, popsan_sac, proxytarget, proxytarget_ann, "
                 "proxytarget_vanilla, spikerl, td3",
                 "precision: auto, bf16, fp16, fp32",
                 "dist: default"):
        assert line in screen
    codes = [line.split()[0] for line in screen.split("== Exit codes ==")[1].splitlines() if line[:4].strip()]
    assert codes == ["0", "1", "2", "128+N"]
    assert "resume=auto" in screen.split("== Exit codes ==")[1]
    # no config dump: Hydra's stock screen lists every key under "== Config =="
    assert "== Config ==" not in screen and "total_steps:" not in screen and "_target_" not in screen
    assert len(screen.splitlines()) <= 45
    assert list(tmp_path.iterdir()) == []  # nothing ran: no run folder


def test_hydra_help_still_shows_hydras_flags(tmp_path):
    proc = run_cli(tmp_path, "--hydra-help")
    assert proc.returncode == 0, proc.stderr
    assert "--cfg" in proc.stdout and "--multirun" in proc.stdout
