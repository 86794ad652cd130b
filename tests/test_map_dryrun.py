"""`cimsim map` (the mapping dry run) and `chip.array_rows / array_cols = "auto"`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.mapping.sizing import resolve_array, square_array
from cimsim.network import load_model
from cimsim.runner import run_scenario

REPO = Path(__file__).resolve().parents[1]
RESNET = REPO / "scenarios" / "dazzi2021_resnet32.toml"


def test_map_reports_every_layer_and_the_chip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", str(RESNET), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    layers = {lay["name"]: lay for lay in report["layers"]}
    assert report["chip"]["cores"] == sum(lay["cores"] for lay in report["layers"]) == 42  # as the run's summary
    assert layers["conv1"]["crossbar_rows"] == 27 and layers["conv1"]["crossbar_devices"] == 27 * 16
    assert layers["conv31"]["fused"] == ["add31", "pool", "fc"] and layers["conv31"]["cores"] == 2
    assert report["chip"]["min_sram_depth_words"] == max(lay["sram_words"] for lay in report["layers"])
    assert report["chip"]["weights"] == sum(lay["weights"] for lay in report["layers"])
    assert report["problems"] == []


def test_map_lists_every_problem_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A chip too small in two ways: every layer whose SRAM overflows, and the array, in one line."""
    code = main(["map", str(RESNET), "--set", "chip.sram_depth_words=140", "--set", "chip.array_rows=4"])
    captured = capsys.readouterr()
    assert code == 2
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cimsim: error: ")
    overflowing = [line for line in captured.out.splitlines() if line.startswith("problem: layer")]
    # the 2 convs that keep a copy of a resampled residual (146 and 194 words), each named; the other
    # adding cores take their residual from the block's first core (read_res) and need 50-98 words
    assert len(overflowing) == 2
    assert f"{len(overflowing) + 1} mapping problems" in err and "the mapping needs 42 cores" in err


def test_auto_array_is_the_most_square_that_fits(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'model = "{REPO / "models" / "resnet32_cifar10.toml"}"\n[chip]\narray_rows = "auto"\n'
                    'array_cols = "auto"\n')
    scenario = load_scenario(path)
    resolved = resolve_array(load_model(scenario.model), scenario)
    assert (resolved.chip.array_rows, resolved.chip.array_cols) == square_array(42) == (6, 7)
    report = run_scenario(path)
    assert report.summary["cores"] == 42 and report.record.plan.array == (6, 7)


def test_auto_one_side(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'model = "{REPO / "models" / "resnet32_cifar10.toml"}"\n[chip]\narray_rows = 4\n'
                    'array_cols = "auto"\n')
    scenario = load_scenario(path)
    resolved = resolve_array(load_model(scenario.model), scenario)
    assert (resolved.chip.array_rows, resolved.chip.array_cols) == (4, 11)


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 5, 42, 48, 49, 50, 1000])
def test_square_array_fits_and_is_minimal(cores: int) -> None:
    rows, cols = square_array(cores)
    assert rows * cols >= cores and (rows - 1) * cols < cores and rows <= cols


def test_auto_is_the_only_string_an_array_side_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'model = "{REPO / "models" / "resnet32_cifar10.toml"}"\n[chip]\narray_rows = "big"\n')
    assert main(["run", str(path), "--no-trace"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "chip.array_rows" in err and '"auto"' in err
