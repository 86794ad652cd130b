"""The dazzi2021_14nm table against what Dazzi et al. 2021 measured (3.2, Tables 3 and 4), and the
per-array figure at peak that `cimsim validate` compares with the paper's 10.5 TOPS/W."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.energy import Action, ActionCounts, Component, energy_report, load_table, resolve_table
from cimsim.energy.peak import PeakCore, array_peak, component_power_W
from cimsim.energy.table import table_from_dict
from cimsim.errors import InputError
from cimsim.validate import checks, measure

C, A = Component, Action
ROOT = Path(__file__).resolve().parent.parent
CLOCK_HZ = 500e6          # Dazzi 3.2
TIMESTEP_CYCLES = 50      # 100 ns (3.1.3)
TABLE4_MW = {             # Table 4, mW: internal, switching, leakage
    "sequential": (4.052, 0.3429, 0.06095),
    "sram": (2.548, 0.03460, 0.02155),
    "combinational": (0.5563, 1.625, 0.04357),
    "clock": (0.1884, 1.071, 0.001539),
}


@pytest.fixture(scope="module")
def dazzi():
    return load_table(resolve_table("dazzi2021_14nm"))


def measured_pattern(timesteps: int) -> ActionCounts:
    """One core for `timesteps` 100-ns timesteps in Dazzi's access pattern (2.3.5, 16 channels, PLIP):
    one pixel (1 word) written, one input-patch row (3 words) read and one controller step each."""
    counts = ActionCounts()
    counts.add(C.SRAM, A.WORD_WRITE, timesteps)
    counts.add(C.SRAM, A.WORD_READ, 3 * timesteps)
    counts.add(C.DFC, A.STEP, timesteps)
    for comp in (C.DFC, C.SRAM):
        counts.add_powered(comp, timesteps * TIMESTEP_CYCLES, instance="core0")
    return counts


def test_table4_dfc_sram_power_on_the_measured_access_pattern(dazzi) -> None:
    n = 1000
    rep = energy_report(measured_pattern(n), dazzi, CLOCK_HZ, cycles=n * TIMESTEP_CYCLES)
    power_mw = rep["energy_J"] / rep["seconds"] * 1e3
    assert math.isclose(power_mw, 10.54, rel_tol=1e-3)  # Table 4 total (Table 3: 10.544)
    assert math.isclose(power_mw, sum(sum(row) for row in TABLE4_MW.values()), rel_tol=1e-9)
    # the split: leakage is static, sequential + clock are clocked, combinational and SRAM per action
    leak = sum(row[2] for row in TABLE4_MW.values())
    assert math.isclose(rep["static_J"] / rep["seconds"] * 1e3, leak, rel_tol=1e-9)
    assert math.isclose(leak, 0.1276, rel_tol=1e-3)  # Table 4's leakage total: not the 10.54 mW
    clocked = sum(TABLE4_MW[k][0] + TABLE4_MW[k][1] for k in ("sequential", "clock"))
    assert math.isclose(rep["clocked_J"] / rep["seconds"] * 1e3, clocked, rel_tol=1e-9)
    by = rep["by_action"]
    assert math.isclose(by["dfc.step"]["energy_J"] / rep["seconds"] * 1e3, sum(TABLE4_MW["combinational"][:2]),
                        rel_tol=1e-9)
    sram = (by["sram.word_read"]["energy_J"] + by["sram.word_write"]["energy_J"]) / rep["seconds"] * 1e3
    assert math.isclose(sram, sum(TABLE4_MW["sram"][:2]), rel_tol=1e-9)


def test_an_idle_powered_core_draws_leakage_and_clock_only(dazzi) -> None:
    counts = ActionCounts()
    for comp in (C.DFC, C.SRAM):
        counts.add_powered(comp, 1000 * TIMESTEP_CYCLES, instance="core0")
    rep = energy_report(counts, dazzi, CLOCK_HZ, cycles=1000 * TIMESTEP_CYCLES)
    assert rep["dynamic_J"] == 0
    assert math.isclose(rep["energy_J"] / rep["seconds"] * 1e3, 0.1276 + 5.6543, rel_tol=1e-3)


def test_cimsim_counts_the_pattern_the_table_is_calibrated_on(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """conv3 of the shipped energy scenario (an add core, which keeps no residual copy): ~4 SRAM words
    and one controller step per MVM, one MVM per timestep in steady state (an image every 1,024
    timesteps, 1,024 outputs). conv2, the block's first core, reads each pixel once more for read_res."""
    assert main(["run", str(ROOT / "scenarios" / "dazzi2021_resnet32_energy.toml"), "--json", "--no-trace"]) == 0
    s = json.loads(capsys.readouterr().out)
    counts = s["energy"]["counts"]["counts"]

    def total(component: str, action: str, layer: str = "conv3") -> int:
        return sum(r["count"] for r in counts if r["layer"] == layer and r["component"] == component
                   and r["action"] == action)

    mvms = total("crossbar", "mvm")
    words = total("sram", "word_write") + total("sram", "word_read")
    assert total("dfc", "step") == mvms == 1024 * s["batch"]
    assert s["image_interval_timesteps"] == 1024
    assert words / mvms == pytest.approx(4.0625)  # 1 written + 3.06 read per timestep
    first = total("sram", "word_write", "conv2") + total("sram", "word_read", "conv2")
    assert first / mvms == pytest.approx(5.0625)  # + its read_res read of every input pixel
    assert total("adc", "convert") == 16 * mvms and s["energy"]["by_action"]["adc.convert[bits=10]"]["count"] > 0


def test_per_array_peak_figure_from_the_table(dazzi) -> None:
    rep = array_peak(dazzi, PeakCore(timesteps=100))
    # one 256 x 256 MVM (2 x 65,536 ops) per 100 ns
    assert math.isclose(rep["tops"], 2 * 65536 / 100e-9 / 1e12, rel_tol=1e-12)
    per_mvm = (2.1813e-10 + 4 * 6.4565e-11                     # controller step, SRAM words
               + (1.06059e-4 + 2.155e-5 + 5.6543e-3) * 100e-9   # leakage and clocked power
               + 65536 * 7.0e-15                                # PCM cells
               + 256 * 6.92e-3 / 1.5e9)                         # Kull 2017: 6.92 mW at 1.5 GS/s
    assert math.isclose(rep["tops_per_w"], 2 * 65536 / per_mvm / 1e12, rel_tol=1e-4)
    assert math.isclose(component_power_W(rep, C.DFC, C.SRAM) * 1e3, 10.54, rel_tol=1e-3)
    assert set(rep["uncharged_counts"]) == {"dac.drive[bits=8]", "digital.requantise", "digital.relu"}


def test_per_array_measurement_and_its_spread() -> None:
    got = measure.MEASUREMENTS["dazzi_array"][1]()
    assert got["tops_per_w_long_read"] < got["tops_per_w"] < got["tops_per_w_survey_adc"]
    assert got["tops_per_w"] == pytest.approx(48.65, abs=0.01)
    # the spread of the sources moves the figure by less than 15 %; the paper's 10.5 lies far outside it,
    # so validate lists the number as a miss instead of comparing it
    check = next(c for c in checks.CHECKS if c.measurement == "dazzi_array")
    assert check.tolerance is None and "MISS" in check.reason
    for end in (got["tops_per_w_long_read"], got["tops_per_w_survey_adc"]):
        assert abs(end / got["tops_per_w"] - 1) <= 0.15
    assert check.paper < got["tops_per_w_long_read"] / 4


def test_clocked_power_needs_its_si_unit() -> None:
    table = table_from_dict({"dfc": {"clocked_power_W": 1e-3, "static_power_W": 1e-4}}, "t.toml")
    assert table.components[C.DFC].clocked_power_W == 1e-3
    with pytest.raises(InputError, match="write clocked_power_W"):
        table_from_dict({"dfc": {"clocked_power_mW": 1.0}}, "t.toml")
    with pytest.raises(InputError, match="must not be negative"):
        table_from_dict({"dfc": {"clocked_power_W": -1.0}}, "t.toml")
