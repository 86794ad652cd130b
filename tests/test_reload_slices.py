"""Reloading a layer too large for the array: its output channels sliced over segments of their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import layer

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.hw import datapath
from cimsim.mapping.segments import plan_segments
from cimsim.network import load_model
from cimsim.runner import run_scenario

CNN = """name = "slice_cnn"
bits = 8
[input]
height = 6
width = 6
channels = 8
""" + layer(name='"conv1"', type='"conv"', input='"input"', out_channels="16", kernel="3", padding="1",
            relu="true") + layer(name='"conv2"', type='"conv"', input='"conv1"', out_channels="64", kernel="3",
                                 padding="1", relu="true") + layer(
    name='"pool"', type='"maxpool"', input='"conv2"', kernel="2", stride="2") + layer(
    name='"conv3"', type='"conv"', input='"pool"', out_channels="8", kernel="3", padding="1")
POOLED = """name = "pooled"
bits = 8
[input]
height = 4
width = 4
channels = 64
""" + layer(name='"conv1"', type='"conv"', input='"input"', out_channels="16", kernel="1", relu="true") + layer(
    name='"pool"', type='"avgpool"', input='"conv1"') + layer(name='"fc"', type='"fc"', input='"pool"',
                                                               out_features="10")
SCENARIO = """model = "model.toml"
[chip]
array_rows = 1
array_cols = 2
crossbar_rows = 1024
crossbar_cols = 16
[mapping]
weights = "reload"
[dram]
enabled = true
[functional]
enabled = true
[run]
batch = 3
"""


def scenario(tmp_path: Path, model: str = CNN) -> Path:
    (tmp_path / "model.toml").write_text(model)
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    return path


def test_a_layer_wider_than_the_array_runs_in_channel_bands(tmp_path: Path) -> None:
    """conv2 (64 output channels on 16-column crossbars: 4 cores) on a 2-core chip: two slices of
    32 channels, each reading the whole conv1 map and writing its band of conv2's map; the pool
    (a digital stage) and conv3 read the bands side by side. Spill bytes add up, and every value equals the stationary run's."""
    path = scenario(tmp_path)
    sc = load_scenario(path)
    segments = plan_segments(load_model(sc.model), sc)
    assert [(s.layers, s.channels, s.cores) for s in segments] == [
        (("conv1",), None, 1), (("conv2",), (0, 32), 2), (("conv2",), (32, 64), 2), (("pool", "conv3"), None, 2)]
    assert segments[1].input == segments[2].input == "conv1" and segments[3].input == "conv2"
    seen: dict[bool, dict[int, np.ndarray]] = {True: {}, False: {}}
    check = datapath.Datapath._check

    def spy(self: datapath.Datapath, image: int, chip_out: np.ndarray, name: str) -> None:
        if name == "conv3":
            seen[self.values is None][image] = chip_out.copy()
        check(self, image, chip_out, name)

    mp = pytest.MonkeyPatch()
    mp.setattr(datapath.Datapath, "_check", spy)
    try:
        report = run_scenario(path)
        stationary = run_scenario(path, ["chip.array_cols=8"]).summary["functional"]
    finally:
        mp.undo()
    s = report.summary
    rows = s["segments"]
    assert [r["channels"] for r in rows] == [None, [0, 32], [32, 64], None]
    conv1_map, band, conv2_map = 6 * 6 * 16 * 3, 6 * 6 * 32 * 3, 6 * 6 * 64 * 3
    assert [r["dram_bytes"]["input"] for r in rows[1:]] == [conv1_map, conv1_map, conv2_map]
    assert [r["dram_bytes"]["output"] for r in rows[:3]] == [conv1_map, band, band]
    f = s["functional"]
    assert f["reference_match"] and all(p["reference_match"] for p in f["segments"])
    assert sorted(seen[False]) == [0, 1, 2]
    assert all(np.array_equal(seen[False][i], seen[True][i]) for i in range(3))
    assert f["totals"]["mvms"] == stationary["totals"]["mvms"]  # the bands' MVMs are the layer's
    assert f["totals"]["adc_converts"] == stationary["totals"]["adc_converts"]


@pytest.mark.parametrize(("model", "overrides", "fragment"), [
    (CNN, ["chip.crossbar_rows=4"], "even one of its input channels"),  # one channel's 3x3 rows: 3 crossbars > 2
    (POOLED, ["chip.crossbar_rows=32", "chip.array_cols=1", "mapping.fc_on=crossbar"],
     "split by input rows over segments can have nothing fused (pool)"),
    (CNN.replace('out_channels = 8\nkernel = 3\npadding = 1\n', 'out_channels = 64\nkernel = 3\npadding = 1\n'),
     [], "the network's output"),
])
def test_layers_that_cannot_be_sliced_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str,
                                                   overrides: list[str], fragment: str) -> None:
    argv = ["run", str(scenario(tmp_path, model)), "--no-trace"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_a_wide_layer_inside_a_residual_block_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """conv2 reads conv1 while conv1 is also the block's skip input: no cut before conv2."""
    model = """name = "block"
bits = 8
[input]
height = 4
width = 4
channels = 16
""" + layer(name='"conv1"', type='"conv"', input='"input"', out_channels="16", kernel="1", relu="true") + layer(
        name='"conv2"', type='"conv"', input='"conv1"', out_channels="64", kernel="1", relu="true") + layer(
        name='"conv3"', type='"conv"', input='"conv2"', out_channels="16", kernel="1") + layer(
        name='"add"', type='"add"', inputs='["conv3", "conv1"]', relu="true") + layer(
        name='"head"', type='"conv"', input='"add"', out_channels="8", kernel="1")
    assert main(["run", str(scenario(tmp_path, model)), "--no-trace", "--set", "functional.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "alone between two cut points" in err, err


MLP = """name = "rows_mlp"
bits = 8
[input]
height = 1
width = 1
channels = 32
""" + layer(name='"fc1"', type='"fc"', input='"input"', out_features="64", relu="true") + layer(
    name='"fc2"', type='"fc"', input='"fc1"', out_features="16", relu="true") + layer(
    name='"fc3"', type='"fc"', input='"fc2"', out_features="10")
ROWS = """model = "model.toml"
[chip]
array_rows = 1
array_cols = 1
crossbar_rows = 32
crossbar_cols = 64
[mapping]
fc_on = "crossbar"
weights = "reload"
[dram]
enabled = true
[run]
batch = 2
"""


def test_a_layer_taller_than_the_array_runs_in_row_bands_through_partial_sums(tmp_path: Path) -> None:
    """fc2's 64 input rows need two 32-row crossbars, the chip has one core: two row bands. The
    first reads fc1's outputs 0-31 and writes 16 int32 partial sums (64 bytes); the second reads
    outputs 32-63 with those partial sums (32 + 64 bytes) and writes the 16 int8 outputs."""
    (tmp_path / "model.toml").write_text(MLP)
    path = tmp_path / "s.toml"
    path.write_text(ROWS)
    s = run_scenario(path).summary
    rows = s["segments"]
    assert [(r["first_layer"], r["channels"], r["rows"]) for r in rows] == [
        ("fc1", None, None), ("fc2", [0, 16], [0, 32]), ("fc2", [0, 16], [32, 64]), ("fc3", None, None)]
    assert [r["dram_bytes"]["input"] for r in rows] == [2 * 32, 2 * 32, 2 * (32 + 16 * 4), 2 * 16]
    assert [r["dram_bytes"]["output"] for r in rows] == [2 * 64, 2 * 16 * 4, 2 * 16, 2 * 10]
    assert [r["dram_bytes"]["weights"] for r in rows] == [32 * 64, 32 * 16, 32 * 16, 16 * 10]


def test_row_bands_carry_exact_values(tmp_path: Path) -> None:
    """The row bands' partial sums are checked against the exact accumulators over their rows, and
    the network's outputs equal the stationary run's (and the reference) value for value."""
    (tmp_path / "model.toml").write_text(MLP)
    path = tmp_path / "s.toml"
    path.write_text(ROWS)
    seen: dict[bool, dict[tuple[int, str], np.ndarray]] = {True: {}, False: {}}
    check = datapath.Datapath._check

    def spy(self: datapath.Datapath, image: int, chip_out: np.ndarray, name: str) -> None:
        seen[self.values is None][(image, name)] = chip_out.copy()
        check(self, image, chip_out, name)

    mp = pytest.MonkeyPatch()
    mp.setattr(datapath.Datapath, "_check", spy)
    try:
        f = run_scenario(path, ["functional.enabled=true", "functional.adc_bits=9"]).summary["functional"]
        stationary = run_scenario(path, ["functional.enabled=true", "functional.adc_bits=9",
                                         "chip.array_cols=4"]).summary["functional"]
    finally:
        mp.undo()
    assert len(f["segments"]) == 4 and all(p["reference_match"] for p in f["segments"]) and f["reference_match"]
    assert [p["images_checked"] for p in f["segments"]] == [2, 2, 2, 2]
    assert all(np.array_equal(seen[False][(i, "fc3")], seen[True][(i, "fc3")]) for i in range(2))
    assert f["totals"] == stationary["totals"]
