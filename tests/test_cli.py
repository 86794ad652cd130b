"""Tests of the `cimsim` command line: JSON and table output, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cimsim.cli import main

REPO = Path(__file__).resolve().parents[1]
REGULAR = str(REPO / "scenarios" / "dazzi2021_resnet32.toml")
SPEEDUP = str(REPO / "scenarios" / "dazzi2021_resnet32_speedup.toml")

from harness import TINY_MODEL

# conv2 (stride 2) is 4 x 4 x 8, conv1 8 x 8 x 8: the add's inputs do not match.
UNCHAINED_MODEL = TINY_MODEL.replace('name = "pool"\ntype = "avgpool"\ninput = "conv2"',
                                     'name = "add"\ntype = "add"\ninputs = ["conv2", "conv1"]\n\n'
                                     '[[layers]]\nname = "pool"\ntype = "avgpool"\ninput = "add"')

LAYER_KEYS = {"name", "cores", "first_output_timestep", "last_output_timestep", "pixels", "active_timesteps",
              "stall_timesteps"}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A scenario of a two-conv CNN (fast to simulate)."""
    (tmp_path / "tiny.toml").write_text(TINY_MODEL)
    path = tmp_path / "tiny_scenario.toml"
    path.write_text('model = "tiny.toml"\nname = "tiny"\n')
    return path


def _ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI expecting success; return stdout."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    return out


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI expecting exit code 2 and one `cimsim: error:` line; return that line."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cimsim: error: "), err
    return lines[0]


# --- successful runs ------------------------------------------------------------


def test_run_json(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    out = _ok(capsys, ["run", str(tiny), "--json", "--batch", "2"])
    summary = json.loads(out)  # exactly one JSON object, nothing else on stdout
    assert isinstance(summary, dict)
    for key in ("latency_timesteps", "latency_ns", "throughput_images_per_s", "batch", "cores", "layers"):
        assert key in summary, key
    assert summary["batch"] == 2
    assert summary["cores"] == 2
    assert summary["latency_timesteps"] > 0 and summary["throughput_images_per_s"] > 0
    assert [lay["name"] for lay in summary["layers"]] == ["conv1", "conv2"]
    for lay in summary["layers"]:
        assert set(lay) >= LAYER_KEYS, lay.keys()
        assert isinstance(lay["stall_timesteps"], dict)
    assert [lay["pixels"] for lay in summary["layers"]] == [64, 16]


def test_run_json_resnet(capsys: pytest.CaptureFixture[str]) -> None:
    summary = json.loads(_ok(capsys, ["run", REGULAR, "--json"]))
    assert summary["cores"] == 42
    assert 1620 <= summary["latency_timesteps"] <= 1640
    assert len(summary["layers"]) == 33
    for lay in summary["layers"]:
        assert set(lay) >= LAYER_KEYS


def test_run_table_mentions_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    out = _ok(capsys, ["run", REGULAR, "--set", "run.batch=1"])
    names = {line.split()[0] for line in out.splitlines() if line.split()}
    for layer in [f"conv{i}" for i in range(1, 32)] + ["rs1", "rs2"]:
        assert layer in names, layer
    assert "latency" in out and "throughput" in out


def test_run_table_tiny(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    out = _ok(capsys, ["run", str(tiny)])
    rows = [line.split()[0] for line in out.splitlines() if line.split()]
    assert "conv1" in rows and "conv2" in rows


def test_python_m_cimsim(tiny: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "cimsim", "run", str(tiny), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tiny.parent, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cores"] == 2
    bad = subprocess.run([sys.executable, "-m", "cimsim", "run", str(tiny), "--batch", "0"],
                         capture_output=True, text=True, timeout=120, cwd=tiny.parent, check=False)
    assert bad.returncode == 2
    assert bad.stderr.startswith("cimsim: error:") and len(bad.stderr.splitlines()) == 1


# --- bad input: exit code 2, one line on stderr ------------------------------------


def test_missing_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _fails(capsys, ["run", str(tmp_path / "nope.toml")])
    assert "nope.toml" in line


def test_malformed_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('model = "m.toml\n[chip\n')
    line = _fails(capsys, ["run", str(path)])
    assert "bad.toml" in line


def test_unknown_key_in_file(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    tiny.write_text(tiny.read_text() + "\n[chip]\ncrossbar_size = 256\n")
    line = _fails(capsys, ["run", str(tiny)])
    assert "crossbar_size" in line


def test_unknown_key_set(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    line = _fails(capsys, ["run", str(tiny), "--set", "chip.bogus=1"])
    assert "chip.bogus" in line


def test_negative_size(capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, ["run", REGULAR, "--set", "chip.crossbar_rows=-1"])
    assert "crossbar_rows" in line and "-1" in line


def test_bad_set_syntax(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    line = _fails(capsys, ["run", str(tiny), "--set", "chip.crossbar_rows"])
    assert "chip.crossbar_rows" in line


def test_batch_zero(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    line = _fails(capsys, ["run", str(tiny), "--batch", "0"])
    assert "--batch" in line


def test_shapes_do_not_chain(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    (tiny.parent / "tiny.toml").write_text(UNCHAINED_MODEL)
    line = _fails(capsys, ["run", str(tiny)])
    assert "add" in line and "conv1" in line and "conv2" in line


def test_sram_too_small(capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, ["run", REGULAR, "--set", "chip.sram_depth_words=8"])
    assert "sram_depth_words" in line and "8" in line


def test_array_too_small(capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, ["run", REGULAR, "--set", "chip.array_rows=2"])
    assert "42" in line and "array_rows" in line


def test_malformed_model(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    (tiny.parent / "tiny.toml").write_text('name = "m"\n[input\nheight = 8\n')
    line = _fails(capsys, ["run", str(tiny)])
    assert "tiny.toml" in line


def test_replica_fit_error(capsys: pytest.CaptureFixture[str]) -> None:
    line = _fails(capsys, ["run", SPEEDUP, "--set", "mapping.replica_fit=error"])
    assert "replica_fit" in line
