"""GPS-UP arithmetic and aggregation over seeds."""

import pytest

from spikerl.analysis.gpsup import compare, gps_up, mean_by_method


def summary(method, seed, wall, energy, ret, env="HalfCheetah-v4", carbon=None):
    return {"env_id": env, "method": method, "seed": seed, "wall_seconds": wall, "energy_kwh": energy,
            "emissions_kg": carbon if carbon is not None else energy * 0.4, "eval_return_mean": ret}


def test_gps_up_of_hand_computed_example():
    # baseline: 100 s, 0.01 kWh -> 360 W; method: 50 s, 0.006 kWh -> 432 W
    base = mean_by_method([summary("popsan", 0, 100.0, 0.01, 1000.0)])[("HalfCheetah-v4", "popsan")]
    method = mean_by_method([summary("spikerl", 0, 50.0, 0.006, 1037.2)])[("HalfCheetah-v4", "spikerl")]
    assert base["power_w"] == pytest.approx(360.0) and method["power_w"] == pytest.approx(432.0)
    g = gps_up(method, base)
    assert g["speedup"] == pytest.approx(2.0)
    assert g["powerup"] == pytest.approx(1.2)
    assert g["greenup"] == pytest.approx(0.01 / 0.006)
    assert g["greenup"] == pytest.approx(g["speedup"] / g["powerup"])  # the identity the paper uses
    assert g["reward_diff_percent"] == pytest.approx(3.72)
    assert g["carbon_diff_percent"] == pytest.approx(-40.0)


def test_means_over_seeds_and_tasks_without_a_baseline():
    runs = [summary("popsan", 0, 100.0, 0.01, 900.0), summary("popsan", 1, 120.0, 0.014, 1100.0),
            summary("dsrl", 0, 80.0, 0.008, 500.0), summary("dsrl", 0, 80.0, 0.008, 500.0, env="Hopper-v4")]
    rows = {(r["env_id"], r["method"]): r for r in compare(runs)}
    pop = rows[("HalfCheetah-v4", "popsan")]
    assert pop["runs"] == 2 and pop["wall_seconds"] == 110.0 and pop["eval_return_mean"] == 1000.0
    assert pop["speedup"] == 1.0 and pop["greenup"] == pytest.approx(1.0)
    assert rows[("HalfCheetah-v4", "dsrl")]["speedup"] == pytest.approx(110.0 / 80.0)
    assert rows[("HalfCheetah-v4", "dsrl")]["reward_diff_percent"] == pytest.approx(-50.0)
    assert "speedup" not in rows[("Hopper-v4", "dsrl")]  # no PopSAN run on Hopper: no GPS-UP


def test_runs_without_energy_get_speedup_only():
    runs = [summary("popsan", 0, 100.0, 0.01, 1.0), summary("spikerl", 0, 50.0, 0.01, 1.0)]
    del runs[1]["energy_kwh"]
    row = {r["method"]: r for r in compare(runs)}["spikerl"]
    assert row["speedup"] == 2.0 and "powerup" not in row and "greenup" not in row


def test_one_time_base_per_row_so_greenup_is_speedup_over_powerup():
    # the energy meter spans more than training (setup, final evaluation), by different amounts per method
    runs = [{**summary("popsan", 0, 100.0, 0.01, 1000.0), "energy_seconds": 130.0},
            {**summary("popsan", 1, 120.0, 0.012, 1000.0), "energy_seconds": 150.0},
            {**summary("spikerl", 0, 50.0, 0.006, 1000.0), "energy_seconds": 90.0},
            {**summary("dsrl", 0, 80.0, 0.008, 1000.0), "energy_seconds": 81.0}]
    no_energy = {**summary("mlp", 0, 40.0, 0.0, 1000.0)}
    del no_energy["energy_kwh"]
    rows = {r["method"]: r for r in compare([*runs, no_energy])}
    for method in ("popsan", "spikerl", "dsrl"):
        r = rows[method]
        assert r["time_basis"] == "energy_seconds"
        assert r["greenup"] == pytest.approx(r["speedup"] / r["powerup"], rel=1e-12)
    assert rows["spikerl"]["speedup"] == pytest.approx(140.0 / 90.0)  # the energy's own span
    assert rows["spikerl"]["wall_seconds"] == 50.0 and rows["spikerl"]["energy_seconds"] == 90.0  # for display
    assert rows["spikerl"]["greenup"] == pytest.approx(0.011 / 0.006)
    mlp = rows["mlp"]  # no energy on one side: training wall time, and no powerup/greenup
    assert mlp["time_basis"] == "wall_seconds" and mlp["speedup"] == pytest.approx(110.0 / 40.0)
    assert "powerup" not in mlp and "greenup" not in mlp


def test_gps_up_compares_steady_time_so_the_job_that_compiled_first_is_not_slower():
    """Two methods computing the same thing at the same rate; one paid a 40 s compile (it ran first, or on
    a cold cache). Steady time leaves the compiling out: Speedup 1, and the start-up in its own column."""
    base = {**summary("popsan", 0, 100.0, 0.0100, 1000.0), "energy_seconds": 110.0, "compile_seconds": 40.0}
    warm = {**summary("spikerl", 0, 60.0, 0.0060, 1000.0), "energy_seconds": 70.0, "compile_seconds": 0.0}
    rows = {r["method"]: r for r in compare([base, warm])}
    r = rows["spikerl"]
    assert r["time_basis"] == "steady_seconds" and r["speedup"] == pytest.approx(1.0)  # 60 s each
    assert rows["popsan"]["startup_seconds"] == pytest.approx(50.0) and r["startup_seconds"] == pytest.approx(10.0)
    # the energy of the steady span: mean power x steady time
    p_base, p_warm = 0.0100 * 3.6e6 / 110.0, 0.0060 * 3.6e6 / 70.0
    assert r["powerup"] == pytest.approx(p_warm / p_base)
    assert r["greenup"] == pytest.approx((p_base * 60.0) / (p_warm * 60.0))
    assert r["greenup"] == pytest.approx(r["speedup"] / r["powerup"], rel=1e-12)
    assert r["carbon_diff_percent"] == pytest.approx(100.0 * (p_warm / p_base - 1.0))
    # a run from before the compile record: the whole-job span, as before
    old = {k: v for k, v in warm.items() if k != "compile_seconds"}
    assert {x["method"]: x for x in compare([base, old])}["spikerl"]["time_basis"] == "energy_seconds"
