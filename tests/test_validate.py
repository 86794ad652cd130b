"""`cimsim validate`: every reproduced number within its tolerance; a number outside fails it."""

from __future__ import annotations

import json

import pytest

from cimsim import validate as v
from cimsim.cli import main


def test_every_reproduction_within_its_tolerance(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["all_within_tolerance"]
    compared = [r for r in out["checks"] if r["tolerance"] is not None]
    assert len(compared) >= 15
    for r in compared:
        assert r["status"] == "ok", r
        assert r["source"] and r["reason"]
    sources = " ".join(r["source"] for r in out["checks"])
    for paper in ("Dazzi 2021", "RAELLA", "Ottavi 2021", "Meng & Lu 2024"):
        assert paper in sources
    readme = (v.ROOT / "README.md").read_text()
    for line in v.format_markdown(out["checks"]).splitlines():  # the README's table is `validate --markdown`
        assert line in readme, line


def test_a_number_out_of_tolerance_exits_5(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = v.Check("test", "reloading MLP at a wrong paper value", 0.5, "TOPS", "meng_lu", "tops_batch1", 0.1, "test")
    monkeypatch.setattr(v, "CHECKS", (*v.CHECKS, wrong))
    assert main(["validate", "--only", "meng_lu"]) == v.EXIT_OUT_OF_TOLERANCE
    out = capsys.readouterr().out
    assert "OUT OF TOLERANCE" in out and "1 out of tolerance" in out


def test_unknown_measurement_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--only", "nope"]) == 2
    assert capsys.readouterr().err.startswith("cimsim: error: --only: unknown measurement 'nope'")


def test_markdown_is_the_readme_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--markdown", "--only", "meng_lu,ottavi"]) == 0
    lines = capsys.readouterr().out.splitlines()
    readme = (v.ROOT / "README.md").read_text()
    assert lines[0].startswith("| source |") and len(lines) == 2 + 4
    for line in lines:  # the README's table is this command's output (regenerate it with --markdown)
        assert line in readme, line
