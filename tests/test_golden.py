"""Golden summaries: every shipped scenario's `--json` summary, byte for byte.

A change to any of these files needs a modelling reason, stated in the commit and the
README. To regenerate after such a change (never to make a failing test pass without
one): `CIMSIM_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cimsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.toml") if p.name != "template.toml")

# Variants that pin what the defaults do not reach: several images, elastic routers, the
# functional datapath on a NoC.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "dazzi2021_resnet32_speedup__batch3": ("dazzi2021_resnet32_speedup.toml", ["--batch", "3"]),
    "dazzi2021_resnet32__batch3": ("dazzi2021_resnet32.toml", ["--batch", "3"]),
    "noc_mesh_regular__elastic_batch2": ("noc_mesh_regular.toml", ["--set", "chip.clocking=elastic", "--batch", "2"]),
    "noc_prism_regular__elastic_functional": (
        "noc_prism_regular.toml", ["--set", "chip.clocking=elastic", "--set", "functional.enabled=true"]),
    "raella_resnet32_on_failure__batch2": ("raella_resnet32_on_failure.toml", ["--batch", "2"]),
}

CASES = {p.stem: (p.name, []) for p in SCENARIOS} | VARIANTS


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_matches_golden(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    scenario, extra = CASES[name]
    assert main(["run", str(ROOT / "scenarios" / scenario), "--json", "--no-trace", *extra]) == 0
    out = capsys.readouterr().out
    path = GOLDEN / f"{name}.json"
    if os.environ.get("CIMSIM_UPDATE_GOLDEN") == "1":
        path.write_text(out)
    assert path.exists(), f"no golden file {path.name}: generate it with CIMSIM_UPDATE_GOLDEN=1"
    assert out == path.read_text(), f"{name}: summary differs from {path.name}"


def test_every_shipped_scenario_has_a_golden() -> None:
    names = {p.stem for p in GOLDEN.glob("*.json")}
    assert {p.stem for p in SCENARIOS} <= names
