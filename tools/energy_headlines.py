"""What the dazzi2021_14nm table gives for Dazzi et al. 2021's headline figures (3.2), and why the chip falls short.

- The calibration (not a validation): one core in the access pattern Table 4 is calibrated on (1 word
  written, 3 read and one controller step per 100-ns timestep) draws Table 4's 10.54 mW again.
- The per-array figure at peak, the quantity behind the paper's 10.5 TOPS/W and 1.008 TOPS
  (`cimsim.energy.peak`, what `cimsim validate` compares), and the power the unpublished blocks leave.
- ResNet-32's use of its arrays, from the mapping and a run: the MACs each 256 x 256 array does per
  timestep against the 65,536 it could do, the reason the chip's TOPS/W is far below the array's.

    python tools/energy_headlines.py
"""

from __future__ import annotations

from pathlib import Path

from cimsim.config import load_scenario
from cimsim.energy import Action, ActionCounts, Component, energy_report, load_table, resolve_table
from cimsim.energy.peak import PeakCore, array_peak, component_power_W
from cimsim.functional.options import layer_macs
from cimsim.mapping import map_network
from cimsim.network import load_model
from cimsim.runner import run

ROOT = Path(__file__).resolve().parent.parent
PAPER = {"tops_per_w_256": 10.5, "tops_per_w_512": 16.3, "tops": 1.008, "tops_per_mm2": 1.59, "dfc_sram_mw": 10.54}


def calibration(table_name: str = "dazzi2021_14nm") -> float:
    """DFC+SRAM power (mW) of one core in Table 4's access pattern."""
    core = PeakCore()
    counts = ActionCounts()
    counts.add(Component.SRAM, Action.WORD_WRITE, core.timesteps * core.words_written)
    counts.add(Component.SRAM, Action.WORD_READ, core.timesteps * core.words_read)
    counts.add(Component.DFC, Action.STEP, core.timesteps)
    for comp in (Component.DFC, Component.SRAM):
        counts.add_powered(comp, core.timesteps * core.timestep_cycles, instance="core0")
    rep = energy_report(counts, load_table(resolve_table(table_name)), core.clock_hz,
                        cycles=core.timesteps * core.timestep_cycles)
    return rep["energy_J"] / rep["seconds"] * 1e3


def array_use(scenario: str) -> dict[str, float]:
    """How much of its arrays ResNet-32 uses: crossbar MACs per image over (arrays x cells x image interval),
    and its two factors: the share of the cells mapped and the (full-use equivalent) MVMs per array per
    timestep."""
    sc = load_scenario(ROOT / "scenarios" / scenario, ["run.batch=2"])
    net = load_model(sc.model)
    plan = map_network(net, sc)
    summary = run(sc).summary
    cells = sc.chip.crossbar_rows * sc.chip.crossbar_cols
    arrays = [c for c in plan.cores if c.rows_used * c.cols_used > 0]
    macs = sum(layer_macs(layer) for layer in net.layers
               if layer.kind.value == "conv" and plan.layers[layer.name].unit.value == "crossbar")
    interval = summary["image_interval_timesteps"]
    mapped = sum(c.rows_used * c.cols_used for c in arrays) / (len(arrays) * cells)
    return {"arrays": len(arrays), "macs": macs, "interval": interval,
            "use": macs / (len(arrays) * cells * interval), "mapped": mapped,
            "mvms_per_timestep": macs / (len(arrays) * cells * interval) / mapped}


def main() -> None:
    table = load_table(resolve_table("dazzi2021_14nm"))
    print("Dazzi 2021 3.2 headline figures against the dazzi2021_14nm table")
    print(f"  calibration: one core, 1 word written + 3 read + 1 controller step per 100 ns: DFC+SRAM "
          f"{calibration():.3f} mW (Table 4: {PAPER['dfc_sram_mw']} mW; the table is calibrated on this pattern)")
    rep = array_peak(table)
    print(f"  one 256x256 array at peak (one MVM per 100 ns): {rep['tops']:.3f} TOPS, {rep['tops_per_w']:.1f} TOPS/W, "
          f"{rep['average_power_W'] * 1e3:.1f} mW: DFC+SRAM "
          f"{component_power_W(rep, Component.DFC, Component.SRAM) * 1e3:.2f}, ADC "
          f"{component_power_W(rep, Component.ADC) * 1e3:.2f}, PCM {component_power_W(rep, Component.CROSSBAR) * 1e3:.2f} "
          f"mW; uncharged: {', '.join(sorted(rep['uncharged_counts']))}")
    t_mvm = 2 * 256 * 256 / (PAPER["tops"] * 1e12)
    p_core = PAPER["tops"] / PAPER["tops_per_w_256"]
    e_mvm = rep["energy_J"] / rep["images"]
    print(f"  paper: 1.008 TOPS = one MVM per {t_mvm * 1e9:.1f} ns; 10.5 TOPS/W at it = {p_core * 1e3:.1f} mW per array, "
          f"{p_core * t_mvm * 1e9:.2f} nJ per MVM; the table charges {e_mvm * 1e9:.2f} nJ per MVM, leaving "
          f"{(p_core * t_mvm - e_mvm) * 1e9:.2f} nJ ({1 - e_mvm / (p_core * t_mvm):.0%}) to the PWM, the digital processor "
          "and the column regulators, which no source gives")
    print(f"  paper 16.3 TOPS/W at 512x512: 4x the ops per MVM; at the same MVM time "
          f"{4 * PAPER['tops'] / PAPER['tops_per_w_512'] * 1e3:.0f} mW per array")
    for scenario in ("dazzi2021_resnet32.toml", "dazzi2021_resnet32_speedup.toml"):
        u = array_use(scenario)
        print(f"  {scenario}: {u['macs']:,} crossbar MACs per image on {u['arrays']} arrays of 65,536 cells, an image "
              f"every {u['interval']:,.1f} timesteps: {u['use']:.2%} of each array per timestep ({u['mapped']:.1%} of "
              f"the cells mapped, {u['mvms_per_timestep']:.2f} MVMs per array per timestep)")


if __name__ == "__main__":
    main()
