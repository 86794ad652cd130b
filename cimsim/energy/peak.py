"""One array at peak: the per-array figure behind a paper's TOPS/W and TOPS (Dazzi 3.2: 10.5 TOPS/W, 1.008 TOPS).

A paper's per-array efficiency is one core kept busy every timestep: one full MVM of the
rows x columns array per timestep, with the core's input SRAM, controller, PWM, ADCs and
digital processor doing one step's work, and nothing idle. `peak_counts` builds those action
counts (and the core's powered cycles) by hand for `timesteps` timesteps; `array_peak` prices
them with a table through `energy_report`, the same pass a simulated run goes through, each
MVM counted as one "image" of rows x columns MACs (2 operations per MAC).

Per timestep: one `crossbar.mvm` and one `crossbar.cycle` on rows x columns cells, one
`dac.drive` of `input_bits` per row, one `adc.convert` of `adc_bits` per column, one
`dfc.step`, the SRAM words the access pattern writes and reads, and the digital processor's
requantise and ReLU per column: what `cimsim.hw.activity` counts for a core's step. Actions
the table lists as uncharged stay in the report's `uncharged_counts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cimsim.energy.actions import Action, ActionCounts, Component
from cimsim.energy.model import energy_report
from cimsim.energy.table import EnergyTable

C, A = Component, Action

POWERED = (C.CORE, C.DFC, C.SRAM, C.CROSSBAR, C.DAC, C.ADC, C.DIGITAL)
"""The components a core powers (as `cimsim.hw.activity.CORE_COMPONENTS`)."""


@dataclass(frozen=True)
class PeakCore:
    """One core kept busy every timestep (defaults: Dazzi 2021's case study)."""

    rows: int = 256
    """Crossbar rows driven per MVM (Dazzi 3.2: 256 x 256 arrays)."""
    cols: int = 256
    """Crossbar columns converted per MVM."""
    input_bits: int = 8
    """Bits of each row's input (Dazzi: one 8-bit PWM pulse)."""
    adc_bits: int = 10
    """ADC resolution (Dazzi cites Kull et al. 2017, a 10-bit ADC)."""
    clock_hz: float = 500e6
    """Clock (Dazzi 3.2: 500 MHz)."""
    timestep_cycles: int = 50
    """Cycles per timestep (Dazzi 3.1.3: 100 ns at 500 MHz)."""
    words_written: int = 1
    """SRAM words written per timestep (Dazzi 2.3.5: one pixel; 1 word for 16 channels with PLIP)."""
    words_read: int = 3
    """SRAM words read per timestep (one input-patch row of 3 pixels, 3 words for 16 channels)."""
    timesteps: int = 1000
    """How many timesteps are counted (the figures do not depend on it)."""


def peak_counts(core: PeakCore) -> ActionCounts:
    """Action counts and powered cycles of `core` busy for `core.timesteps` timesteps."""
    n, cells = core.timesteps, core.rows * core.cols
    counts = ActionCounts()
    counts.add(C.CROSSBAR, A.MVM, n, argument=cells)
    counts.add(C.CROSSBAR, A.CYCLE, n, argument=cells)
    counts.add(C.DAC, A.DRIVE, n * core.rows, argument=core.input_bits)
    counts.add(C.ADC, A.CONVERT, n * core.cols, argument=core.adc_bits)
    counts.add(C.DFC, A.STEP, n)
    counts.add(C.SRAM, A.WORD_WRITE, n * core.words_written)
    counts.add(C.SRAM, A.WORD_READ, n * core.words_read)
    counts.add(C.DIGITAL, A.REQUANTISE, n * core.cols)
    counts.add(C.DIGITAL, A.RELU, n * core.cols)
    for comp in POWERED:
        counts.add_powered(comp, n * core.timestep_cycles, instance="core0")
    return counts


def array_peak(table: EnergyTable, core: PeakCore = PeakCore()) -> dict[str, Any]:
    """`energy_report` of `core` at peak with `table`: `tops_per_w`, `tops`, `average_power_W`, the
    breakdowns by component and action, `uncharged_counts`; one "image" per MVM."""
    return energy_report(peak_counts(core), table, core.clock_hz, cycles=core.timesteps * core.timestep_cycles,
                         images=core.timesteps, macs_per_image=core.rows * core.cols)


def component_power_W(report: dict[str, Any], *components: Component) -> float:
    """Average power of some components in an `energy_report` (W)."""
    return sum(report["by_component"].get(str(c), {}).get("energy_J", 0.0) for c in components) / report["seconds"]


__all__ = ["PeakCore", "array_peak", "component_power_W", "peak_counts"]
