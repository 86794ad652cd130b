"""Every summary records the overrides that produced it; `--set` runs get their own default trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.runner import default_trace_path, overrides_hash

MODEL = """\
name = "tiny"
bits = 8

[input]
height = 6
width = 6
channels = 3

[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 8
kernel = 3
padding = 1
relu = true

[[layers]]
name = "conv2"
type = "conv"
input = "conv1"
out_channels = 8
kernel = 3
padding = 1
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "tiny.toml").write_text(MODEL)
    path = tmp_path / "tiny_scenario.toml"
    path.write_text('model = "tiny.toml"\nname = "tiny"\n')
    return path


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_lists_overrides_in_order(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    code, out, _ = _cli(capsys, ["run", str(tiny), "--json", "--no-trace"])
    assert code == 0 and json.loads(out)["overrides"] == []
    code, out, _ = _cli(capsys, ["run", str(tiny), "--json", "--no-trace", "--set", "chip.mvm_cycles=12",
                                 "--set", "dataflow.layer_rates={conv1=2}", "--batch", "2"])
    summary = json.loads(out)
    assert code == 0 and summary["overrides"] == ["chip.mvm_cycles=12", "dataflow.layer_rates={conv1=2}",
                                                  "run.batch=2"]
    assert list(summary)[:2] == ["scenario", "overrides"] and summary["batch"] == 2


def test_table_shows_overrides_under_the_header(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    code, out, _ = _cli(capsys, ["run", str(tiny), "--no-trace"])
    assert code == 0 and not out.splitlines()[1].startswith("overrides")
    code, out, _ = _cli(capsys, ["run", str(tiny), "--no-trace", "--set", "dataflow.layer_rates={conv1=2, conv2=2}"])
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("scenario tiny:")
    assert lines[1] == "overrides   'dataflow.layer_rates={conv1=2, conv2=2}'"


def test_default_trace_name_has_the_overrides_hash(capsys: pytest.CaptureFixture[str], tiny: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_trace_path(load_scenario(tiny)) == Path("traces/tiny.h5")
    a, b = ["chip.mvm_cycles=12"], ["chip.mvm_cycles=14"]
    assert default_trace_path(load_scenario(tiny, a)) == Path(f"traces/tiny-{overrides_hash(a)}.h5")
    assert overrides_hash(a) != overrides_hash(b) and len(overrides_hash(a)) == 8
    for argv in ([], ["--set", a[0]], ["--set", b[0]]):
        assert _cli(capsys, ["run", str(tiny), *argv])[0] == 0
    names = sorted(p.name for p in (tmp_path / "traces").glob("*.h5"))
    assert names == sorted(["tiny.h5", f"tiny-{overrides_hash(a)}.h5", f"tiny-{overrides_hash(b)}.h5"])


def test_report_replays_the_overrides(capsys: pytest.CaptureFixture[str], tiny: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    code, run_out, _ = _cli(capsys, ["run", str(tiny), "--json", "--trace", str(path), "--set", "chip.mvm_cycles=12"])
    assert code == 0 and json.loads(run_out)["overrides"] == ["chip.mvm_cycles=12"]
    code, rep_out, err = _cli(capsys, ["report", str(path), "--json"])
    assert code == 0 and rep_out == run_out and err == ""
    code, table, _ = _cli(capsys, ["report", str(path)])
    assert code == 0 and table.splitlines()[1] == "overrides   chip.mvm_cycles=12"
