"""Real values through the simulated chip: reference match, speculation and recovery timing (issue 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simpy

from cimsim.config import load_scenario
from cimsim.functional.weights import LayerParams, save_params
from cimsim.hw.chip import build_chip
from cimsim.mapping import map_network
from cimsim.network import load_model
from cimsim.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent

TWO_CONVS = """
name = "two_convs"
[input]
height = 4
width = 4
channels = 8
[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 8
kernel = 1
[[layers]]
name = "conv2"
type = "conv"
input = "conv1"
out_channels = 8
kernel = 1
"""


class _Computes:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, int, int, int]] = []

    def compute(self, cycle, timestep, core, layer, image, first, count, cycles, row, col):
        self.events.append((layer, timestep, row, col, count, cycles))

    def stall(self, *args):
        pass

    def image_done(self, *args):
        pass


def _crafted(tmp_path: Path, policy: str, hot: bool) -> tuple[dict, _Computes]:
    """conv1 sees one pixel, (1, 2), of large values: its column sums saturate the ADC in
    speculation; every other pixel is zero and speculates fine."""
    (tmp_path / "m.toml").write_text(TWO_CONVS)
    weights = np.full((1, 1, 8, 8), 90, dtype=np.int8)
    weights[..., 1::2] = -70
    params = {n: LayerParams(weights, np.zeros(8, np.int32), np.ones(8, np.int32), 6) for n in ("conv1", "conv2")}
    save_params(tmp_path / "w.npz", params)
    image = np.zeros((1, 4, 4, 8), dtype=np.int8)
    if hot:
        image[0, 1, 2, :] = 120
    np.savez(tmp_path / "i.npz", images=image)
    (tmp_path / "s.toml").write_text(f"""
model = "m.toml"
[chip]
crossbar_rows = 64
crossbar_cols = 64
cycles_per_timestep = 12
mvm_cycles = 3
digital_cycles = 4
[functional]
enabled = true
weights = "w.npz"
images = "i.npz"
policy = "{policy}"
weight_encoding = "differential"
crossbar_cycle_cycles = 1
""")
    scenario = load_scenario(tmp_path / "s.toml")
    events = _Computes()
    net = load_model(scenario.model)
    chip = build_chip(simpy.Environment(), scenario, net, map_network(net, scenario), [events])
    from cimsim.report import make_report

    summary = make_report(chip.run()).summary
    events.mvm = chip.datapath.group_cycles  # crossbar cycles of every group, in firing order
    return summary, events


def test_on_failure_recovers_exactly_the_failing_mvm_and_delays_downstream(tmp_path: Path) -> None:
    summary, events = _crafted(tmp_path, "on_failure", hot=True)
    conv1 = [e for e in events.events if e[0] == "conv1"]
    mvm = events.mvm["conv1"]
    assert [(e[2], e[3]) for e, c in zip(conv1, mvm, strict=False) if c == 11] == [(1, 2)]  # the MVM whose sums saturated
    assert sorted(set(mvm)) == [3, 11]  # 3 speculative crossbar cycles; + 8 recovery at that one pixel
    hot_step = next(e[5] for e in conv1 if (e[2], e[3]) == (1, 2))
    assert hot_step > 12  # its step no longer fits the 12-cycle timestep
    layer1 = next(lay for lay in summary["layers"] if lay["name"] == "conv1")
    assert layer1["stall_timesteps"]["recovery"] == 1  # 20 cycles do not fit a 12-cycle timestep
    quiet, _ = _crafted(tmp_path, "on_failure", hot=False)
    assert summary["latency_timesteps"] == quiet["latency_timesteps"] + 1  # downstream waits one timestep
    conv2 = {lay["name"]: lay for lay in summary["layers"]}["conv2"]
    conv2_quiet = {lay["name"]: lay for lay in quiet["layers"]}["conv2"]
    assert conv2["stall_timesteps"]["recovery"] == 1 and conv2_quiet["stall_timesteps"]["recovery"] == 0
    assert summary["functional"]["totals"]["recovery_mvms"] >= 1


def test_always_has_constant_mvm_time(tmp_path: Path) -> None:
    _, events = _crafted(tmp_path, "always", hot=True)
    assert set(events.mvm["conv1"]) == {11} and set(events.mvm["conv2"]) == {11}


def _random_model(tmp_path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    c1, c2 = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    (tmp_path / f"m{seed}.toml").write_text(f"""
name = "rand{seed}"
[input]
height = 6
width = 6
channels = 3
[[layers]]
name = "a"
type = "conv"
input = "input"
out_channels = {c1}
kernel = 3
padding = 1
relu = true
[[layers]]
name = "b"
type = "conv"
input = "a"
out_channels = {c1}
kernel = 3
padding = 1
stride = {1 + seed % 2}
[[layers]]
name = "r"
type = "conv"
input = "a"
out_channels = {c1}
kernel = 1
stride = {1 + seed % 2}
[[layers]]
name = "add"
type = "add"
inputs = ["b", "r"]
relu = true
[[layers]]
name = "c"
type = "conv"
input = "add"
out_channels = {c2}
kernel = 3
padding = 1
[[layers]]
name = "pool"
type = "avgpool"
input = "c"
[[layers]]
name = "fc"
type = "fc"
input = "pool"
out_features = 4
""")
    scen = tmp_path / f"s{seed}.toml"
    scen.write_text(f"""
model = "m{seed}.toml"
[chip]
crossbar_rows = 32
crossbar_cols = 16
[functional]
enabled = true
adc_bits = 12
policy = "always"
[run]
batch = 2
seed = {seed}
""")
    return scen


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_small_random_networks_match_the_reference_bit_for_bit(tmp_path: Path, seed: int) -> None:
    scen = _random_model(tmp_path, seed)
    batched = run_scenario(scen).summary
    f = batched["functional"]
    assert f["saturations_accepted"] == 0
    assert f["reference_match"] and f["images_checked"] == 2 and f["mismatching_values"] == 0
    per_group = run_scenario(scen, ["functional.mode=per_group"]).summary
    assert per_group["functional"] == f
    assert per_group["latency_timesteps"] == batched["latency_timesteps"]


def test_accepted_saturation_is_counted_and_its_error_measured(tmp_path: Path) -> None:
    scen = _random_model(tmp_path, 5)
    f = run_scenario(scen, ["functional.adc_bits=4"]).summary["functional"]
    assert f["saturations_accepted"] > 0
    assert f["output_values"] == 8 and f["mismatching_values"] > 0 and f["max_abs_error"] > 0
    assert not f["reference_match"]


def test_resnet32_on_the_dazzi_chip_matches_the_reference_without_saturation() -> None:
    s = run_scenario(ROOT / "scenarios/dazzi2021_resnet32.toml",
                     ["functional.enabled=true", "functional.adc_bits=9", "functional.policy=always"]).summary
    f = s["functional"]
    assert f["saturations_accepted"] == 0 and f["reference_match"]
    assert s["latency_timesteps"] == 1630  # 11 crossbar cycles of 1 clock fit the timestep


def test_a_read_before_write_is_caught(tmp_path: Path) -> None:
    scen = _random_model(tmp_path, 0)
    scenario = load_scenario(scen)
    net = load_model(scenario.model)
    plan = map_network(net, scenario)
    chip = build_chip(simpy.Environment(), scenario, net, plan)
    chip.datapath.filled[("a", 0)] = np.zeros((6, 6), dtype=bool)  # pretend 'a' wrote nothing yet
    chip.datapath.act[("a", 0)] = np.zeros((6, 6, 1), dtype=np.int8)
    from cimsim.errors import SimulationError

    with pytest.raises(SimulationError, match="not produced yet"):
        chip.datapath._check_window("b", 0, [(0, 0)])
