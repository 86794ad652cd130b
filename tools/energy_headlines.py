"""What the dazzi2021_14nm table gives for Dazzi et al. 2021's headline figures (3.2).

Analytical, not simulated (the per-array peak figures; runs: README "Energy, power and area"): hand-built counts
for one core or the chip, charged by `cimsim.energy.energy_report`. Prints each paper
figure, what it implies, and what the table accounts for. Not a validation: the table
lacks the ADC, PWM and digital-processor energies the paper does not publish.

    python tools/energy_headlines.py
"""

from __future__ import annotations

from pathlib import Path

from cimsim.energy import Action, ActionCounts, Component, energy_report, load_table, resolve_table
from cimsim.network import load_model

ROOT = Path(__file__).resolve().parent.parent
CLOCK_HZ = 500e6                      # Dazzi 3.2
TIMESTEP_CYCLES = 50                  # 100 ns at 500 MHz (Dazzi 3.1.3)
PAPER = {"tops_per_w_256": 10.5, "tops_per_w_512": 16.3, "tops": 1.008, "tops_per_mm2": 1.59,
         "dfc_sram_mw": 10.54, "images_per_s_regular": 9650, "images_per_s_speedup": 38600}


def core_counts(cells: int, timesteps: int, words_per_timestep: int) -> ActionCounts:
    """One core for `timesteps` timesteps: one MVM on `cells` cells and `words_per_timestep` SRAM words each."""
    counts = ActionCounts()
    counts.add(Component.CROSSBAR, Action.MVM, timesteps, argument=cells)
    counts.add(Component.SRAM, Action.WORD_WRITE, timesteps)
    counts.add(Component.SRAM, Action.WORD_READ, (words_per_timestep - 1) * timesteps)
    for comp in (Component.DFC, Component.SRAM, Component.CROSSBAR):
        counts.add_powered(comp, timesteps * TIMESTEP_CYCLES, instance="core0")
    return counts


def main() -> None:
    table = load_table(resolve_table("dazzi2021_14nm"))
    n = 1000
    print("Dazzi 2021 3.2 headline figures against the dazzi2021_14nm table (analytical)")
    # --- one core at one full 256 x 256 MVM per 100-ns timestep, 16-channel SRAM traffic
    rep = energy_report(core_counts(256 * 256, n, 10), table, CLOCK_HZ, cycles=n * TIMESTEP_CYCLES,
                        macs_per_image=256 * 256, images=n)
    p_dfc_sram = (rep["by_component"]["dfc"]["energy_J"] + rep["by_component"]["sram"]["energy_J"]) / rep["seconds"]
    p_xbar = rep["by_component"]["crossbar"]["energy_J"] / rep["seconds"]
    print(f"  table: DFC+SRAM power at 10 word accesses per 100 ns = {p_dfc_sram * 1e3:.3f} mW "
          f"(paper Table 4: {PAPER['dfc_sram_mw']} mW; equal by construction of the SRAM entry)")
    print(f"  table: PCM analog power, full 256x256 MVM every 100 ns (70 ns read, upper bound) = {p_xbar * 1e3:.3f} mW")
    print(f"  table: peak of one core at one MVM per 100 ns = {rep['tops']:.3f} TOPS, "
          f"{rep['tops_per_w']:.1f} TOPS/W on the charged parts only (ADC, PWM, digital uncharged), "
          f"area {rep['area_mm2']:.4f} mm2 (DFC+SRAM only: crossbar/ADC area not published)")
    t_mvm = 2 * 256 * 256 / (PAPER["tops"] * 1e12)
    print(f"  paper 1.008 TOPS = 2 x 256 x 256 ops per {t_mvm * 1e9:.1f} ns (per array; the paper gives no MVM time)")
    p_core = PAPER["tops"] / PAPER["tops_per_w_256"]
    print(f"  paper 10.5 TOPS/W at 1.008 TOPS -> {p_core * 1e3:.1f} mW per core; DFC+SRAM share "
          f"{PAPER['dfc_sram_mw'] / (p_core * 1e3):.1%}; unpublished rest (ADC, PWM, digital, regulators, "
          f"minus the table's PCM) ~{(p_core - p_dfc_sram - p_xbar * 100 / (t_mvm * 1e9)) * 1e3:.0f} mW")
    print(f"  paper 1.59 TOPS/mm2 at 1.008 TOPS -> {PAPER['tops'] / PAPER['tops_per_mm2']:.3f} mm2 per array; "
          f"DFC+SRAM ({rep['area_mm2']:.4f} mm2) would be {rep['area_mm2'] / (PAPER['tops'] / PAPER['tops_per_mm2']):.1%}")
    print(f"  paper 16.3 TOPS/W at 512x512: 4x the ops per MVM; at the same MVM time "
          f"{4 * PAPER['tops']:.3f} TOPS -> {4 * PAPER['tops'] / PAPER['tops_per_w_512'] * 1e3:.0f} mW per core")
    # --- the chip on ResNet-32: 42 cores powered, the network's MACs at the paper's throughput
    net = load_model(ROOT / "models" / "resnet32_cifar10.toml")
    macs = sum(layer.kernel_rows * layer.kernel_cols * layer.pixels_out for layer in net.layers)
    for label, ips in (("regular", PAPER["images_per_s_regular"]), ("speed-up", PAPER["images_per_s_speedup"])):
        seconds = 1.0
        chip = ActionCounts()
        for core in range(42):
            chip.add_powered(Component.DFC, int(seconds * CLOCK_HZ), instance=f"core{core}")
            chip.add_powered(Component.SRAM, int(seconds * CLOCK_HZ), instance=f"core{core}")
        rep = energy_report(chip, table, CLOCK_HZ, cycles=int(seconds * CLOCK_HZ), images=ips, macs_per_image=macs)
        print(f"  ResNet-32 {label}: {macs:,} MACs/image x {ips:,} images/s = {rep['tops']:.3f} TOPS for the chip; "
              f"42 cores' DFC+SRAM static power alone ({rep['average_power_W'] * 1e3:.0f} mW) caps it at "
              f"{rep['tops_per_w']:.2f} TOPS/W")


if __name__ == "__main__":
    main()
