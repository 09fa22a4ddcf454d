"""Lava as a third-party reader of loihi bundles (`python -m spikerl.deploy lava`): Lava 0.10.0's
bit-accurate Dense and LIF models, built from a bundle's registers and pipeline schedule, give the integer
simulation's spikes and actions; the refusals of bad input need no Lava.

The Lava tests run in `make test-slow` (which builds .venv-lava with `make lava` where the machine has a
Python 3.10) and skip, saying so, where .venv-lava does not exist."""

import json
import shutil

import pytest
from test_export import DSRL_SPEC, actor_of, ilcsan_spec, make_checkpoint, popsan_spec, recorded_observations

from spikerl.deploy.__main__ import main as deploy_main
from spikerl.deploy.lava_host import LAVA_PYTHON, LavaRunner, compare, loihi_bundle
from spikerl.export.__main__ import main as export_main
from spikerl.export.nir_graph import build_bundle, quantized_bundle, write_bundle
from spikerl.runtime import checkpoint

needs_lava = pytest.mark.skipif(not LAVA_PYTHON.is_file(), reason=f"no Lava environment at {LAVA_PYTHON}: make lava")


@pytest.fixture(scope="module")
def popsan_bundle(tmp_path_factory):
    """A PopSAN actor at HalfCheetah sizes (random weights) exported with --quantize int8 (loihi)."""
    folder = tmp_path_factory.mktemp("lava")
    path = make_checkpoint(folder / "popsan.pt", popsan_spec())
    argv = [str(path), "--quantize", "int8", "--out", str(folder / "b"), "--episodes", "1", "--max-episode-steps",
            "10", "--min-return-ratio", "0.01", "--force"]
    assert export_main(argv) == 0
    return folder / "b"


def lava_result(bundle, capsys, *extra) -> tuple[int, dict]:
    code = deploy_main(["lava", str(bundle), "--max-episode-steps", "25", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
@needs_lava
def test_lava_gives_the_integer_simulations_actions_and_acts_in_the_task(popsan_bundle, capsys):
    code, result = lava_result(popsan_bundle, capsys, "--closed-loop", "1")
    recorded = result["recorded"]
    assert code == 0 and recorded["observations"] == 25
    assert recorded["actions_equal_fraction"] == 1.0 and all(recorded["nodes_equal"].values())
    closed = result["closed_loop"]
    assert closed["actions"] == 25 and len(closed["lava_returns"]) == 1
    # the same actions on the same reset seed: the same return as the integer simulation's
    assert closed["lava_returns"] == pytest.approx(closed["integer_returns"], rel=1e-9)


@pytest.mark.slow
@needs_lava
def test_lava_without_the_schedule_differs_from_the_integer_simulation(popsan_bundle, tmp_path, capsys):
    """The deployment the docs described before the schedule (bias inputs on at every step, each action from
    zero states) gives layers 2 and 3 extra bias steps in Lava: the command fails (exit 1)."""
    shutil.copytree(popsan_bundle, tmp_path / "b")
    info_file = tmp_path / "b" / "bundle.json"
    info = json.loads(info_file.read_text())
    schedule = info["quantization"]["schedule"]
    for node in schedule["nodes"].values():
        node["bias_input_steps"], node["reset_before_step"] = [0, schedule["steps_per_action"]], 0
    schedule["back_to_back_period"] = None  # every action from zero states, as on a fresh chip
    info_file.write_text(json.dumps(info))
    code, result = lava_result(tmp_path / "b", capsys)
    nodes = result["recorded"]["nodes_equal"]
    assert code == 1 and nodes["lif1"] and not nodes["lif2"] and result["recorded"]["actions_equal_fraction"] < 0.5


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize(("method", "spec"), [("ilcsan", ilcsan_spec("max", 0.7, "intra")), ("dsrl", DSRL_SPEC)])
def test_lava_reads_recurrent_readout_and_graded_input_bundles(method, spec, tmp_path):
    """ILC-SAN: a recurrent synapse group and decoder membranes read as v; DSRL: 8-bit graded input, a layer
    without current memory and an integrator readout."""
    path = make_checkpoint(tmp_path / f"{method}.pt", spec, method=method)
    actor, normalizer = actor_of(path)
    write_bundle(quantized_bundle(build_bundle(checkpoint.load(path), "", actor, normalizer), "loihi"), tmp_path / "b")
    raw = recorded_observations(lambda o: actor(normalizer(o)).detach(), steps=8)
    with LavaRunner(loihi_bundle(tmp_path / "b"), tmp_path / "b") as runner:
        check = compare(runner, raw)
    assert check["actions_equal_fraction"] == 1.0 and all(check["nodes_equal"].values()), check


def test_what_lava_cannot_run_is_refused_in_one_line(popsan_bundle, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "popsan.pt", popsan_spec())
    float_export = [str(path), "--out", str(tmp_path / "float"), "--episodes", "1", "--max-episode-steps", "3"]
    assert export_main(float_export) == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())

    def refused(argv, fragment):
        assert deploy_main(["lava", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("spikerl.deploy: error: ") and "\n" not in err and fragment in err, err

    refused([str(tmp_path / "float")], "holds a float bundle; Lava's Loihi models take a loihi one")
    refused([str(tmp_path / "none")], "is not a bundle folder")
    refused([str(popsan_bundle), "--lava-python", str(tmp_path / "no-env" / "bin" / "python")], "run make lava")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
