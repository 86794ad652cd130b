"""Energy tables, the energy model and the Accelergy interchange (cimsim.energy).

The counts here are hand-made (runs: tests/test_energy_run.py); every expected
energy is recomputed from the counts and the table entries, never typed in as a result.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.energy import (
    Action,
    ActionCounts,
    Component,
    Entry,
    Window,
    builtin_tables,
    energy_report,
    load_table,
    resolve_table,
)
from cimsim.energy.accelergy import export_action_counts, import_ert, read_action_counts
from cimsim.energy.table import MAX_TABLE_BYTES
from cimsim.errors import InputError

C, A = Component, Action
CLOCK = 500e6

TABLE = """\
name = "hand"
uncharged = ["digital.relu"]
[sram]
static_power_W = 1.0e-3
area_m2 = 2.0e-9
word_read.energy_J = 3.0e-12
word_write.energy_J = 5.0e-12
[crossbar]
static_power_W = 2.0e-3
area_m2 = 1.0e-8
mvm.energy_J = 1.0e-12
mvm.energy_J_per_argument = 1.0e-15
[adc.convert]
energy_J_by_argument = { 7 = 1.5e-12, 8 = 3.0e-12 }
[link.bit_hop]
energy_J = 1.0e-14
energy_J_per_argument = 2.0e-14
[digital]
requantise.energy_J = 0.5e-12
"""


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def hand_counts() -> ActionCounts:
    counts = ActionCounts()
    counts.add(C.SRAM, A.WORD_READ, 90, layer="conv1")
    counts.add(C.SRAM, A.WORD_WRITE, 10, layer="conv1")
    counts.add(C.CROSSBAR, A.MVM, 10, argument=27 * 16, layer="conv1")
    counts.add(C.ADC, A.CONVERT, 160, argument=7, layer="conv1")
    counts.add(C.ADC, A.CONVERT, 16, argument=8, layer="conv2")
    counts.add(C.LINK, A.BIT_HOP, 1280, argument=3)
    counts.add(C.DIGITAL, A.REQUANTISE, 160, layer="conv1")
    counts.add(C.DIGITAL, A.RELU, 160, layer="conv1")
    counts.add_powered(C.SRAM, 1000, instance="core0", layer="conv1")
    counts.add_powered(C.CROSSBAR, 1000, instance="core0", layer="conv1")
    counts.add_powered(C.SRAM, 400, instance="core1", layer="conv2")
    return counts


def by_hand(counts: ActionCounts, energies: dict[tuple[Component, Action, int], float],
            static: dict[Component, float]) -> float:
    """The total recomputed independently of the model: sum count x energy + power x time."""
    dyn = sum(n * energies[(c, a, arg)] for (_, c, a, arg), n in counts.counts.items() if (c, a, arg) in energies)
    stat = sum(static[c] * cyc / CLOCK for (_, c, _), cyc in counts.powered.items())
    return dyn + stat


HAND_ENERGIES = {
    (C.SRAM, A.WORD_READ, 0): 3.0e-12, (C.SRAM, A.WORD_WRITE, 0): 5.0e-12,
    (C.CROSSBAR, A.MVM, 432): 1.0e-12 + 432 * 1.0e-15,
    (C.ADC, A.CONVERT, 7): 1.5e-12, (C.ADC, A.CONVERT, 8): 3.0e-12,
    (C.LINK, A.BIT_HOP, 3): 1.0e-14 + 3 * 2.0e-14, (C.DIGITAL, A.REQUANTISE, 0): 0.5e-12,
}
HAND_STATIC = {C.SRAM: 1.0e-3, C.CROSSBAR: 2.0e-3}


# --- the model ------------------------------------------------------------------------


def test_total_is_counts_times_table_plus_static_power_times_time(tmp_path: Path) -> None:
    table = load_table(write(tmp_path, TABLE))
    counts = hand_counts()
    rep = energy_report(counts, table, CLOCK, cycles=1000, images=1, macs_per_image=10 * 27 * 16)
    assert math.isclose(rep["energy_J"], by_hand(counts, HAND_ENERGIES, HAND_STATIC), rel_tol=1e-12)
    assert math.isclose(rep["static_J"], (1e-3 * 1400 + 2e-3 * 1000) / CLOCK, rel_tol=1e-12)
    assert math.isclose(sum(v["energy_J"] for v in rep["by_layer"].values()), rep["energy_J"], rel_tol=1e-12)
    assert math.isclose(sum(v["energy_J"] for v in rep["by_component"].values()), rep["energy_J"], rel_tol=1e-12)
    assert math.isclose(sum(v["energy_J"] for v in rep["by_action"].values()), rep["dynamic_J"], rel_tol=1e-12)
    assert rep["uncharged_counts"] == {"digital.relu": 160}
    assert rep["by_action"]["adc.convert[bits=7]"]["count"] == 160
    # 2 ops per MAC over 1000 cycles at 500 MHz
    assert math.isclose(rep["tops"], 2 * 4320 / (1000 / CLOCK) / 1e12)
    assert math.isclose(rep["tops_per_w"], 2 * 4320 / rep["energy_J"] / 1e12)
    assert math.isclose(rep["area_m2"], 2 * 2.0e-9 + 1.0e-8)  # two SRAMs, one crossbar powered
    assert rep["area_complete"] and rep["counts"] == counts.to_dict()


@pytest.mark.parametrize(("comp", "action", "arg", "key", "new"), [
    (C.SRAM, A.WORD_READ, 0, None, Entry(energy_J=4.5e-12)),
    (C.ADC, A.CONVERT, 7, None, Entry(by_argument={7: 2.0e-12, 8: 3.0e-12})),
    (C.LINK, A.BIT_HOP, 3, None, Entry(energy_J=1.0e-14, per_argument_J=5.0e-14)),
])
def test_changing_one_entry_changes_the_total_by_count_times_delta(
        tmp_path: Path, comp: Component, action: Action, arg: int, key: None, new: Entry) -> None:
    table = load_table(write(tmp_path, TABLE))
    counts = hand_counts()
    before = energy_report(counts, table, CLOCK, cycles=1000)["energy_J"]
    old = table.energy(comp, action, arg)
    after = energy_report(counts, table.with_energy(comp, action, new), CLOCK, cycles=1000)["energy_J"]
    delta = new.energy(arg) - old  # type: ignore[operator]
    n = sum(v for (_, c, a, g), v in counts.counts.items() if (c, a, g) == (comp, action, arg))
    assert n > 0 and delta != 0
    assert math.isclose(after - before, n * delta, rel_tol=1e-9)


def test_steady_window_and_fill(tmp_path: Path) -> None:
    table = load_table(write(tmp_path, TABLE))
    run = ActionCounts()
    snapshots = []
    for image in range(4):  # each image: the same work; image 0 also pays the fill
        run.add(C.SRAM, A.WORD_READ, 100, layer="conv1")
        run.add_powered(C.SRAM, 2000 if image == 0 else 500, instance="core0")
        snapshots.append(run.copy())
    steady = Window(snapshots[3].minus(snapshots[1]), images=2, cycles=1000)
    fill = Window(snapshots[0], images=1, cycles=2000)
    rep = energy_report(run, table, CLOCK, cycles=3500, images=4, steady=steady, fill=fill)
    assert math.isclose(rep["steady_state"]["energy_per_image_J"], 100 * 3e-12 + 1e-3 * 500 / CLOCK)
    assert math.isclose(rep["fill"]["static_J"], 1e-3 * 2000 / CLOCK)
    image1 = energy_report(snapshots[1].minus(snapshots[0]), table, CLOCK, cycles=500)["energy_J"]
    assert math.isclose(rep["energy_J"], rep["fill"]["energy_J"] + image1 + rep["steady_state"]["energy_J"])
    with pytest.raises(ValueError):
        snapshots[0].minus(snapshots[1])


def test_counts_round_trip_and_merge() -> None:
    counts = hand_counts()
    assert ActionCounts.from_dict(counts.to_dict()) == counts
    doubled = counts.copy().merge(counts)
    assert doubled.total(C.ADC, A.CONVERT) == 2 * counts.total(C.ADC, A.CONVERT) == 352
    with pytest.raises(InputError, match="does not perform"):
        ActionCounts.from_dict({"counts": [{"component": "adc", "action": "word_read", "count": 1}]})


# --- bad tables -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key", "why"), [
    ("[sram]\nword_erase.energy_J = 1e-12\n", "sram.word_erase", "unknown key"),
    ("[adc.convert]\nenergy_J = -1e-12\n", "adc.convert.energy_J", "must not be negative"),
    ("[adc.convert]\nenergy = 1e-12\n", "adc.convert.energy", "missing or non-SI unit"),
    ("[adc.convert]\nenergy_pJ = 1.0\n", "adc.convert.energy_pJ", "missing or non-SI unit"),
    ("[sram]\nstatic_power = 1e-3\n", "sram.static_power", "missing or non-SI unit"),
    ("[sram]\narea_mm2 = 0.01\n", "sram.area_mm2", "missing or non-SI unit"),
    ("[sram]\nword_read.energy_J = \"1e-12\"\n", "sram.word_read.energy_J", "must be a number"),
    ("[flux_capacitor]\narea_m2 = 1e-9\n", "flux_capacitor", "unknown component"),
    ("[sram.word_read]\nenergy_J_by_argument = { 7 = 1e-12 }\n", "sram.word_read", "takes no argument"),
    ("[adc.convert]\nenergy_J_by_argument = { x = 1e-12 }\n", "adc.convert.energy_J_by_argument.x",
     "non-negative integer"),
    ("uncharged = [\"adc.explode\"]\n", "uncharged", "unknown action"),
])
def test_bad_table_is_one_line_naming_file_and_key(tmp_path: Path, text: str, key: str, why: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_table(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and key in msg and why in msg


def test_performed_action_missing_from_table_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[sram]\nword_read.energy_J = 1e-12\n")
    counts = ActionCounts()
    counts.add(C.SRAM, A.WORD_WRITE, 3)
    with pytest.raises(InputError) as info:
        energy_report(counts, load_table(path), CLOCK, cycles=1)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "'sram.word_write'" in msg
    counts = ActionCounts()
    counts.add(C.ADC, A.CONVERT, 3, argument=6)
    with pytest.raises(InputError, match=r"adc\.convert\.energy_J_by_argument\.6"):
        energy_report(counts, load_table(write(tmp_path, TABLE)), CLOCK, cycles=1)
    counts = ActionCounts()
    counts.add_powered(C.DAC, 10, instance="core0")
    with pytest.raises(InputError, match="no component 'dac'"):
        energy_report(counts, load_table(write(tmp_path, TABLE)), CLOCK, cycles=10)


def test_oversized_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("# " + "x" * MAX_TABLE_BYTES + "\n")
    with pytest.raises(InputError, match="larger than"):
        load_table(path)


# --- shipped tables and the scenario key ----------------------------------------------


def test_shipped_tables_load_and_cover_every_action() -> None:
    assert builtin_tables() == ["dazzi2021_14nm", "raella_like"]
    for name in builtin_tables():
        table = load_table(resolve_table(name))
        for comp in Component:
            assert comp in table.components, f"{name} lacks [{comp}]"
        from cimsim.energy import ALLOWED
        for comp, actions in ALLOWED.items():
            for action in actions:
                assert (comp, action) in table.actions or (comp, action) in table.uncharged, (name, comp, action)
    dazzi = load_table(resolve_table("dazzi2021_14nm"))
    assert dazzi.components[C.DFC].area_m2 == 1.32e-8 and dazzi.components[C.SRAM].area_m2 == 9.1e-9
    raella = load_table(resolve_table("raella_like"))
    e7, e8 = raella.energy(C.ADC, A.CONVERT, 7), raella.energy(C.ADC, A.CONVERT, 8)
    assert e7 is not None and e8 is not None and math.isclose(e8 / e7, 2.0, rel_tol=1e-4)


def test_shipped_tables_cite_every_number() -> None:
    """Every number in a shipped table sits under a comment block naming a source."""
    for name in builtin_tables():
        text = resolve_table(name).read_text()
        comments = " ".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
        assert ("line" in comments) and ("Table" in comments or "section" in comments or "6.1" in comments)


def _scenario(tmp_path: Path, energy: str) -> Path:
    (tmp_path / "m.toml").write_text("# model\n")
    return write(tmp_path, f'model = "m.toml"\n[energy]\n{energy}\n', "s.toml")


def test_scenario_energy_section(tmp_path: Path) -> None:
    assert load_scenario(_scenario(tmp_path, 'enabled = true\ntable = "dazzi2021_14nm"')).energy.table \
        == "dazzi2021_14nm"
    write(tmp_path, TABLE, "mine.toml")
    s = load_scenario(_scenario(tmp_path, 'table = "mine.toml"'))
    assert s.energy.table == str((tmp_path / "mine.toml").resolve()) and not s.energy.enabled
    for bad, why in [('table = "nonesuch"', "unknown energy table"), ('enabled = true', "needs energy.table"),
                     ('table = "missing.toml"', "not found")]:
        with pytest.raises(InputError) as info:
            load_scenario(_scenario(tmp_path, bad))
        assert why in str(info.value) and "\n" not in str(info.value)


def test_cli_bad_energy_table_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "[adc.convert]\nenergy_J = -1.0\n", "bad.toml")
    assert main(["run", str(_scenario(tmp_path, 'table = "bad.toml"')), "--no-trace"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cimsim: error:") and "\n" not in err and "adc.convert.energy_J" in err


# --- Accelergy ------------------------------------------------------------------------

ERT = """\
ERT:
  version: '0.4'
  tables:
  - name: system.chip.core[0..41].adc
    actions:
    - name: convert
      arguments: {bits: 7}
      energy: 1.5
    - name: convert
      arguments: {bits: 8}
      energy: 3.0
    - name: leak
      arguments: null
      energy: 0.002
  - name: system.chip.core[0..41].input_sram
    actions:
    - name: read
      arguments: null
      energy: 3.0
    - name: write
      arguments: null
      energy: 5.0
"""


def test_ert_import_and_action_count_round_trip(tmp_path: Path) -> None:
    ert = write(tmp_path, ERT, "ert.yaml")
    table = import_ert(ert, clock_hz=CLOCK, component_map={"input_sram": C.SRAM},
                       action_map={"read": A.WORD_READ, "write": A.WORD_WRITE})
    assert math.isclose(table.energy(C.ADC, A.CONVERT, 7) or 0, 1.5e-12)
    assert math.isclose(table.components[C.ADC].static_power_W, 0.002e-12 * CLOCK)
    counts = ActionCounts()
    counts.add(C.ADC, A.CONVERT, 160, argument=7, layer="conv23.r1c0")
    counts.add(C.ADC, A.CONVERT, 16, argument=8, layer="conv1")
    counts.add(C.SRAM, A.WORD_READ, 90, layer="conv1")
    counts.add(C.SRAM, A.WORD_WRITE, 10)
    counts.add_powered(C.ADC, 1000, layer="conv1")
    rep = energy_report(counts, table, CLOCK, cycles=1000)
    pj = 160 * 1.5 + 16 * 3.0 + 90 * 3.0 + 10 * 5.0 + 1000 * 0.002  # Accelergy's sum, in pJ
    assert math.isclose(rep["energy_J"], pj * 1e-12, rel_tol=1e-12)
    out = tmp_path / "action_counts.yaml"
    out.write_text(export_action_counts(counts))
    assert "cimsim.conv23.r1c0.adc" in out.read_text()
    assert read_action_counts(out) == counts


@pytest.mark.parametrize(("edit", "why"), [
    (("input_sram", "flux"), "unknown component 'flux'"),
    (("energy: 3.0\n    - name: write", "energy: -3.0\n    - name: write"), "non-negative number"),
    (("name: read", "name: erase"), "unknown action"),
])
def test_bad_ert_is_one_line(tmp_path: Path, edit: tuple[str, str], why: str) -> None:
    ert = write(tmp_path, ERT.replace(*edit), "ert.yaml")
    with pytest.raises(InputError) as info:
        import_ert(ert, clock_hz=CLOCK, component_map={"input_sram": C.SRAM},
                   action_map={"read": A.WORD_READ, "write": A.WORD_WRITE})
    assert why in str(info.value) and str(ert) in str(info.value) and "\n" not in str(info.value)


def test_missing_pyyaml_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(InputError, match=r"needs PyYAML: pip install 'cimsim\[energy\]'"):
        export_action_counts(hand_counts())
