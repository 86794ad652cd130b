"""Every shipped scenario's Perfetto export is valid: every track named, and no two slices
on one track partially overlap (Perfetto drops such slices)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.report.perfetto import check_perfetto

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.toml") if p.name != "template.toml")
CASES = {p.stem: (p, ["--batch", "2"]) for p in SCENARIOS}


@pytest.mark.parametrize("name", sorted(CASES))
def test_perfetto_export_is_valid(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario, extra = CASES[name]
    trace, out = tmp_path / "t.h5", tmp_path / "t.json"
    assert main(["run", str(scenario), "--trace", str(trace), *extra]) == 0
    if not trace.exists():  # a reloading run traces each segment: export the first
        trace = tmp_path / "t.segment0.h5"
    assert main(["export", str(trace), "--perfetto", str(out)]) == 0
    capsys.readouterr()
    assert check_perfetto(out) == []
    kinds = {e.get("cat") for e in json.loads(out.read_text())["traceEvents"]}
    assert "compute" in kinds


def test_checker_finds_partial_overlap_and_unnamed_tracks(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    events = [
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "core"}},
        {"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 0.0, "dur": 2.0},
        {"ph": "X", "name": "b", "pid": 1, "tid": 1, "ts": 0.5, "dur": 1.0},  # nested: fine
        {"ph": "X", "name": "c", "pid": 1, "tid": 1, "ts": 1.5, "dur": 1.0},  # partial overlap
        {"ph": "X", "name": "d", "pid": 1, "tid": 2, "ts": 0.0, "dur": 1.0},  # unnamed track
    ]
    path.write_text(json.dumps({"traceEvents": events}))
    problems = check_perfetto(path)
    assert len(problems) == 2
    assert "no thread_name" in problems[0] and "partially overlaps" in problems[1]
    events.pop(3)
    events.pop()
    path.write_text(json.dumps({"traceEvents": events}))
    assert check_perfetto(path) == []
