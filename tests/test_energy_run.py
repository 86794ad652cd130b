"""Energy of simulated runs (issue 13): action counts from the run, charged with a table.

Every expected energy is recomputed here from the run's counts and the table file's own
numbers (read with tomllib, not through cimsim's table code); nothing is typed in as a result.
"""

from __future__ import annotations

import json
import math
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cimsim.cli import main
from cimsim.energy import ActionCounts
from cimsim.sim.probe import Probe

ROOT = Path(__file__).resolve().parent.parent

MODEL = """\
name = "tiny_energy"
bits = 8
[input]
height = 8
width = 8
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
relu = true
[[layers]]
name = "add"
type = "add"
inputs = ["conv2", "conv1"]
relu = true
[[layers]]
name = "pool"
type = "avgpool"
input = "add"
[[layers]]
name = "fc"
type = "fc"
input = "pool"
out_features = 10
"""

# Every action the tiny chip performs is charged (no `uncharged`), every component has
# static power, so the test below checks each kind of count.
TABLE = """\
name = "hand"
[core]
static_power_W = 1.0e-4
area_m2 = 1.0e-8
[dfc]
static_power_W = 2.0e-3
clocked_power_W = 4.0e-3
step.energy_J = 2.0e-10
[sram]
static_power_W = 3.0e-5
word_read.energy_J = 2.0e-11
word_write.energy_J = 3.0e-11
[crossbar]
mvm.energy_J_per_argument = 7.0e-15
cycle.energy_J = 1.0e-13
pulse.energy_J = 4.0e-14
[dac]
drive.energy_J_per_argument = 1.0e-14
[adc]
static_power_W = 1.0e-5
convert.energy_J_by_argument = { 7 = 1.3e-12, 8 = 2.6e-12 }
[digital]
requantise.energy_J = 1.0e-13
relu.energy_J = 1.0e-14
add.energy_J = 2.0e-14
pool.energy_J = 2.0e-14
fc_mac.energy_J = 5.0e-13
[router]
static_power_W = 1.0e-4
traversal.energy_J = 1.0e-13
[link]
bit_hop.energy_J = 4.0e-14
bit_hop.energy_J_per_argument = 3.0e-14
[dram]
static_power_W = 1.0e-3
byte_read.energy_J = 2.0e-11
byte_write.energy_J = 2.0e-11
"""


def scenario(tmp_path: Path, table: str = "hand.toml", *, noc: str = "ideal", clocking: str = "timestep",
             functional: bool = False, dram: bool = False, name: str = "tiny") -> Path:
    (tmp_path / "model_tiny.toml").write_text(MODEL)
    if not (tmp_path / "hand.toml").exists():
        (tmp_path / "hand.toml").write_text(TABLE)
    text = f"""\
    name = "{name}"
    model = "model_tiny.toml"
    [chip]
    array_rows = 3
    array_cols = 3
    crossbar_rows = 64
    crossbar_cols = 64
    clock_mhz = 500.0
    cycles_per_timestep = 50
    clocking = "{clocking}"
    [noc]
    topology = "{noc}"
    [dram]
    enabled = {str(dram).lower()}
    [functional]
    enabled = {str(functional).lower()}
    policy = "on_failure"
    [energy]
    enabled = true
    table = "{table}"
    """
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def run_json(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> dict[str, Any]:
    assert main(["run", str(path), "--json", "--no-trace", *args]) == 0
    return json.loads(capsys.readouterr().out)


def counts_of(energy: dict[str, Any]) -> ActionCounts:
    """The run's action counts."""
    return ActionCounts.from_dict(energy["counts"])


def by_hand(energy: dict[str, Any], table: dict[str, Any]) -> tuple[float, float, float]:
    """(dynamic, static, clocked) joules of the run's counts with `table`'s numbers."""
    dynamic = 0.0
    for rec in energy["counts"]["counts"]:
        entry = table[rec["component"]][rec["action"]]
        if "energy_J_by_argument" in entry:
            e = entry["energy_J_by_argument"][str(rec["argument"])]
        else:
            e = entry.get("energy_J", 0.0) + entry.get("energy_J_per_argument", 0.0) * rec["argument"]
        dynamic += rec["count"] * e
    static, clocked = (sum(table[rec["component"]].get(key, 0.0) * rec["cycles"] / energy["clock_hz"]
                           for rec in energy["counts"]["powered"]) for key in ("static_power_W", "clocked_power_W"))
    return dynamic, static, clocked


@pytest.mark.parametrize("variant", [
    {}, {"noc": "mesh"}, {"noc": "mesh", "clocking": "elastic", "dram": True}, {"functional": True},
], ids=["ideal", "mesh", "mesh_elastic_dram", "functional"])
def test_total_is_counts_times_table_plus_static_power_times_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], variant: dict[str, Any]) -> None:
    s = run_json(capsys, scenario(tmp_path, **variant), "--batch", "2")
    e = s["energy"]
    table = tomllib.loads(TABLE)
    dynamic, static, clocked = by_hand(e, table)
    assert math.isclose(e["dynamic_J"], dynamic, rel_tol=1e-12) and dynamic > 0
    assert math.isclose(e["static_J"], static, rel_tol=1e-12) and static > 0
    assert math.isclose(e["clocked_J"], clocked, rel_tol=1e-12) and clocked > 0
    assert math.isclose(e["energy_J"], dynamic + static + clocked, rel_tol=1e-12)
    # one controller step per core step: per crossbar core, as many as its MVMs
    assert counts_of(e).total("dfc", "step") >= counts_of(e).total("crossbar", "mvm") > 0
    assert e["uncharged_counts"] == {}
    # every instance is powered for the whole run, and every core is one
    assert {r["cycles"] for r in e["counts"]["powered"]} == {s["simulated_cycles"]}
    cores = {r["instance"] for r in e["counts"]["powered"] if r["component"] == "core"}
    assert len(cores) == s["cores"]
    counts = ActionCounts.from_dict(e["counts"])
    # the network's MACs, twice per MAC, over the run's time
    assert math.isclose(e["tops"], e["ops"] / e["seconds"] / 1e12)
    if variant.get("noc") == "mesh":
        # bits over links = flits the links carried x link width (ejection ports excluded)
        flits = sum(link.get("flits", 0) for link in s["noc"]["links"] if not link["link"].endswith("->core"))
        assert counts.total("link", "bit_hop") == flits * 64
        assert counts.total("router", "traversal") > 0
    if variant.get("dram"):
        assert counts.total("dram", "byte_read") == s["dram"]["bytes_read"]
        assert counts.total("dram", "byte_write") == s["dram"]["bytes_written"]
    if variant.get("functional"):
        assert counts.total("adc", "convert") == s["functional"]["totals"]["adc_converts"]
        assert counts.total("crossbar", "pulse") > 0


def test_changing_one_entry_changes_the_total_by_count_times_delta(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = run_json(capsys, scenario(tmp_path, noc="mesh"), "--batch", "2")["energy"]
    (tmp_path / "hand2.toml").write_text(TABLE.replace("word_read.energy_J = 2.0e-11", "word_read.energy_J = 2.5e-11"))
    changed = run_json(capsys, scenario(tmp_path, "hand2.toml", noc="mesh", name="tiny2"), "--batch", "2")["energy"]
    reads = ActionCounts.from_dict(base["counts"]).total("sram", "word_read")
    assert reads > 0 and changed["counts"] == base["counts"]
    assert math.isclose(changed["energy_J"] - base["energy_J"], reads * 0.5e-11, rel_tol=1e-9)
    assert changed["static_J"] == base["static_J"]


def test_steady_state_energy_per_image_is_independent_of_the_batch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = scenario(tmp_path, noc="mesh")
    one, four, eight = (run_json(capsys, path, "--batch", str(b))["energy"] for b in (1, 4, 8))
    s4, s8 = four["steady_state"]["energy_per_image_J"], eight["steady_state"]["energy_per_image_J"]
    assert abs(s4 - s8) / s8 < 0.01
    # batch 1 has no steady state; its fill window is the whole run, image 0 alone
    assert one["steady_state"] is None
    fill = one["fill"]
    assert fill["cycles"] == one["cycles"] and math.isclose(fill["energy_J"], one["energy_J"], rel_tol=1e-12)
    table = tomllib.loads(TABLE)
    leak = sum(table[r["component"]].get("static_power_W", 0.0) for r in one["counts"]["powered"])
    assert math.isclose(fill["static_J"], leak * fill["cycles"] / one["clock_hz"], rel_tol=1e-12)
    # the fill leaks more than a steady image: the pipeline is mostly idle while it fills
    assert fill["static_J"] > eight["steady_state"]["static_per_image_J"]
    # the dynamic energy of image 0 is that of any image (timing only)
    assert math.isclose(fill["dynamic_J"], eight["steady_state"]["dynamic_per_image_J"], rel_tol=0.01)


def test_action_the_table_lacks_is_one_line_naming_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lacks.toml").write_text(TABLE.replace("word_read.energy_J = 2.0e-11\n", ""))
    path = scenario(tmp_path, "lacks.toml")
    assert main(["run", str(path), "--json", "--trace", str(tmp_path / "t.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cimsim: error: ")
    assert str(tmp_path / "lacks.toml") in err[0] and "sram.word_read" in err[0]
    assert not list(tmp_path.glob("t.h5*"))  # the failed run leaves no trace behind


def test_trace_stores_counts_and_report_reproduces_the_energy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cimsim import trace as tracelib

    path = scenario(tmp_path, noc="mesh")
    h5 = tmp_path / "t.h5"
    assert main(["run", str(path), "--json", "--batch", "2", "--trace", str(h5)]) == 0
    run_out = capsys.readouterr().out
    assert main(["report", str(h5), "--json"]) == 0
    rep = capsys.readouterr()
    assert rep.out == run_out and rep.err == ""
    with tracelib.open(h5) as tr:
        assert tr.energy_counts == ActionCounts.from_dict(json.loads(run_out)["energy"]["counts"])
    assert main(["report", str(h5)]) == 0
    table = capsys.readouterr().out
    assert "uJ/img" in table and "TOPS/W" in table


def test_energy_off_leaves_the_summary_and_the_probe_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = run_json(capsys, scenario(tmp_path), "--set", "energy.enabled=false")
    assert "energy" not in s
    probe = Probe([object()])
    assert not probe.counts_actions
    probe.action(0, "conv1", "sram", "word_read", 0, 1, False)  # a no-op without subscribers

    class Listener:
        def __init__(self) -> None:
            self.seen: list[tuple[object, ...]] = []

        def action(self, *args: object) -> None:
            self.seen.append(args)

    listener = Listener()
    probe.subscribe(listener)
    assert probe.counts_actions
    probe.action(0, "conv1", "sram", "word_read", 0, 1, False)
    assert listener.seen == [(0, "conv1", "sram", "word_read", 0, 1, False)]


def _raella(capsys: pytest.CaptureFixture[str], policy: str) -> dict[str, Any]:
    return run_json(capsys, ROOT / "scenarios" / f"raella_resnet32_{policy}.toml",
                    "--set", "energy.enabled=true", "--set", "energy.table=raella_like")


def test_raella_adc_energy_with_speculation_against_off(capsys: pytest.CaptureFixture[str]) -> None:
    runs = {p: _raella(capsys, p) for p in ("off", "always", "on_failure")}
    table = tomllib.loads((ROOT / "cimsim" / "energy" / "tables" / "raella_like.toml").read_text())
    per_convert = table["adc"]["convert"]["energy_J_by_argument"]["7"]
    adc = {}
    for policy, s in runs.items():
        converts = s["functional"]["totals"]["adc_converts"]
        adc[policy] = s["energy"]["by_component"]["adc"]["energy_J"]
        assert math.isclose(adc[policy], converts * per_convert, rel_tol=1e-12)
        recovery = s["energy"]["recovery"]
        rec_converts = recovery["by_action"].get("adc.convert[bits=7]", {}).get("count", 0)
        assert rec_converts == (0 if policy == "off" else s["functional"]["totals"]["recovery_converts"])
    # the same images: speculation converts fewer columns (RAELLA: ~60 % fewer)
    assert adc["always"] == adc["on_failure"] < adc["off"]
    # on_failure ran recovery slices only where a column failed: fewer recovery cycles than always
    rec = {p: runs[p]["energy"]["recovery"]["by_action"] for p in ("always", "on_failure")}
    cyc = {p: sum(v["count"] for k, v in rec[p].items() if k.startswith("crossbar.cycle")) for p in rec}
    assert 0 < cyc["on_failure"] < cyc["always"]
    assert 0 < runs["on_failure"]["energy"]["recovery"]["dynamic_J"] < runs["always"]["energy"]["recovery"]["dynamic_J"]


def test_plot_energy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    h5 = tmp_path / "t.h5"
    assert main(["run", str(scenario(tmp_path)), "--trace", str(h5), "--trace-level", "summary"]) == 0
    out = tmp_path / "e.png"
    assert main(["plot", str(h5), "--kind", "energy", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain = tmp_path / "plain.h5"
    assert main(["run", str(scenario(tmp_path, name="off")), "--set", "energy.enabled=false",
                 "--trace", str(plain)]) == 0
    capsys.readouterr()
    assert main(["plot", str(plain), "--kind", "energy", "-o", str(tmp_path / "x.png")]) == 2
    assert "no energy in this trace" in capsys.readouterr().err


@pytest.mark.parametrize("steps,groups,period", [(0, 3, 2), (2, 3, 1), (7, 3, 2), (25, 4, 3), (12, 4, 3)])
def test_step_hits_match_the_steps_in_order(steps: int, groups: int, period: int) -> None:
    import numpy as np

    from cimsim.sim.energy import step_hits

    expected = np.zeros((period, groups), dtype=np.int64)
    for s in range(steps):  # a core computes group s % groups of image s // groups
        expected[(s // groups) % period, s % groups] += 1
    assert (step_hits(steps, groups, period) == expected).all()


def test_functional_counts_do_not_depend_on_the_evaluation_mode(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = scenario(tmp_path, functional=True)
    batched = run_json(capsys, path, "--batch", "2")["energy"]
    per_group = run_json(capsys, path, "--batch", "2", "--set", "functional.mode=per_group")["energy"]
    assert per_group["counts"] == batched["counts"]
    assert ActionCounts.from_dict(batched["counts"]).total("dac", "drive") > 0
