"""The energy collector: action counts of a run from its events, and the run's `energy` section.

`EnergyCollector` is a probe subscriber of action events only (the functional
datapath's data-dependent ADC converts, DAC drives, crossbar pulses and cycles, the
DRAM's bytes), added to a dict. The cores' own work needs no event of its own: the
stats collector already counts each core's compute events, a core computes its groups
in order, and each (SRAM phase, group) step does fixed work (`cimsim.hw.activity`), so
after the run the step counts are multiplied out into `ActionCounts`; only then does
`energy_section` charge them with a table (`cimsim.energy.energy_report`). Nothing in
the timing code knows an energy, and the compute path costs nothing more.

Windows. Every count belongs to one image (the step's or the action's), so the
collector keeps image 0's counts apart:

- fill = image 0's actions, and every instance powered from the start to image 0's
  completion: its static energy is what the idle cores leak while the pipeline fills;
- steady state (batch >= 2) = the actions of images 1..B-1, and every instance powered
  from image 0's completion to image B-1's: energy per image = one image's dynamic
  energy + static power x the image interval, whatever the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from cimsim.energy import ActionCounts, EnergyTable, Window, energy_report
from cimsim.energy.actions import Action, Component, CountKey
from cimsim.hw.activity import CoreSteps


class EnergyCollector:
    """Counts the steps each core computed and the action events; see the module docstring."""

    def __init__(self, steps: Iterable[CoreSteps], powered: Iterable[tuple[str, Component, str]]) -> None:
        self.tables = {t.core: t for t in steps}
        """Core id -> its step table."""
        self.powered = list(powered)
        """(layer, component, instance) powered for the whole run."""
        self.events = ActionCounts()
        """Counts from action events, all images."""
        self.events_first = ActionCounts()
        """Counts from action events of image 0."""
        self.recovery = ActionCounts()
        """Counts from action events of work that speculation's recovery ran."""

    # --- probe subscriber -----------------------------------------------------------------------
    def action(self, image: int, layer: str, component: Component, action: Action, argument: int, n: int,
               recovery: bool) -> None:
        """Count an action event."""
        key = (layer, component, action, argument)
        counts = self.events.counts
        counts[key] = counts.get(key, 0) + n
        if image == 0:
            self.events_first.add_key(key, n)
        if recovery:
            self.recovery.add_key(key, n)

    # --- after the run ----------------------------------------------------------------------------
    def dynamic(self, steps: Mapping[int, int]) -> tuple[ActionCounts, ActionCounts]:
        """(all images, image 0) action counts: the events, plus the step tables multiplied by
        the steps each core computed (`steps`: core id -> compute events, as the stats
        collector counted them; a core computes its groups in order, image after image)."""
        total = ActionCounts().merge(self.events)
        first = ActionCounts().merge(self.events_first)
        for core, t in sorted(self.tables.items()):
            _add(total, t.counts(step_hits(steps.get(core, 0), t.n_groups, t.period)))
            _add(first, t.counts(step_hits(min(steps.get(core, 0), t.n_groups), t.n_groups, t.period)))
        return total, first

    def with_power(self, counts: ActionCounts, cycles: int) -> ActionCounts:
        """`counts` with every instance powered for `cycles` cycles."""
        for layer, comp, inst in self.powered:
            counts.add_powered(comp, cycles, inst, layer)
        return counts


def step_hits(steps: int, n_groups: int, period: int) -> np.ndarray:
    """(period, n_groups) counts of the (phase, group) steps among a core's first `steps`."""
    images, rest = divmod(steps, n_groups)
    hits = np.zeros((period, n_groups), dtype=np.int64)
    full, extra = divmod(images, period)
    hits += full
    hits[:extra] += 1
    hits[images % period, :rest] += 1
    return hits


def _add(counts: ActionCounts, more: dict[CountKey, int]) -> None:
    c = counts.counts
    for key, n in more.items():
        c[key] = c.get(key, 0) + n


def energy_section(collector: EnergyCollector, steps: Mapping[int, int], table: EnergyTable, clock_hz: float,
                   cycles: int, done_cycles: list[int], macs_per_image: int) -> dict[str, Any]:
    """The `energy` object of the summary: `energy_report` of the run (`steps`: compute events
    per core), its fill and steady windows, and the energy of the recovery work speculation ran."""
    total, first = collector.dynamic(steps)
    batch = len(done_cycles)
    fill = Window(collector.with_power(first.copy(), done_cycles[0]), 1, done_cycles[0])
    steady = None
    if batch > 1:
        span = done_cycles[-1] - done_cycles[0]
        steady = Window(collector.with_power(total.minus(first), span), batch - 1, span)
    run = collector.with_power(total, cycles)
    rep = energy_report(run, table, clock_hz, cycles=cycles, images=batch, macs_per_image=macs_per_image,
                        steady=steady, fill=fill)
    rec = energy_report(collector.recovery, table, clock_hz, cycles=cycles, images=batch)
    counts = rep.pop("counts")
    rep["recovery"] = {"dynamic_J": rec["dynamic_J"], "by_component": rec["by_component"],
                       "by_action": rec["by_action"], "uncharged_counts": rec["uncharged_counts"]}
    return {"enabled": True, **rep, "counts": counts}
