"""The energy collector: action counts of a run from its events, and the run's `energy` section.

`EnergyCollector` is a probe subscriber. Per compute event it adds one to the step
the core computed (a plain list of ints per core, indexed by SRAM phase and group, see
`cimsim.hw.activity`); per action event (the functional datapath's data-dependent ADC
converts, DAC drives, crossbar pulses and cycles, the DRAM's bytes) it adds to a dict.
Only after the run are the step tallies multiplied out into `ActionCounts`, and only
then does `energy_section` charge them with a table (`cimsim.energy.energy_report`):
nothing in the timing code knows an energy.

Windows. Every count belongs to one image (the step's or the action's), so the
collector keeps image 0's counts apart:

- fill = image 0's actions, and every instance powered from the start to image 0's
  completion: its static energy is what the idle cores leak while the pipeline fills;
- steady state (batch >= 2) = the actions of images 1..B-1, and every instance powered
  from image 0's completion to image B-1's: energy per image = one image's dynamic
  energy + static power x the image interval, whatever the batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cimsim.energy import ActionCounts, EnergyTable, Window, energy_report
from cimsim.energy.actions import Action, Component, CountKey
from cimsim.hw.activity import CoreSteps


class EnergyCollector:
    """Counts the steps each core computed and the action events; see the module docstring."""

    def __init__(self, steps: Iterable[CoreSteps], powered: Iterable[tuple[str, Component, str]]) -> None:
        tables = sorted(steps, key=lambda s: s.core)
        n = max((s.core for s in tables), default=-1) + 1
        self._tables: list[CoreSteps | None] = [None] * n
        for t in tables:
            self._tables[t.core] = t
        self._groups = [t.n_groups if t else 1 for t in self._tables]
        self._period = [t.period if t else 1 for t in self._tables]
        self._seq = [0] * n
        self._hits = [[0] * (t.period * t.n_groups) if t else [] for t in self._tables]
        self.powered = list(powered)
        """(layer, component, instance) powered for the whole run."""
        self.events = ActionCounts()
        """Counts from action events, all images."""
        self.events_first = ActionCounts()
        """Counts from action events of image 0."""
        self.recovery = ActionCounts()
        """Counts from action events of work that speculation's recovery ran."""

    # --- probe subscriber -----------------------------------------------------------------------
    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int, col: int) -> None:
        """One step of `core`: its groups come in order, so the step is the core's next one."""
        seq = self._seq[core]
        self._seq[core] = seq + 1
        g = self._groups[core]
        self._hits[core][(image % self._period[core]) * g + seq % g] += 1

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
    def dynamic(self) -> tuple[ActionCounts, ActionCounts]:
        """(all images, image 0) action counts: the step tallies multiplied out, plus the events."""
        total = ActionCounts().merge(self.events)
        first = ActionCounts().merge(self.events_first)
        for t, hits in zip(self._tables, self._hits, strict=True):
            if t is None:
                continue
            _add(total, t.counts(np.asarray(hits, dtype=np.int64).reshape(t.period, t.n_groups)))
            once = np.zeros((t.period, t.n_groups), dtype=np.int64)
            once[0] = 1  # image 0: phase 0, every group once
            _add(first, t.counts(once))
        return total, first

    def with_power(self, counts: ActionCounts, cycles: int) -> ActionCounts:
        """`counts` with every instance powered for `cycles` cycles."""
        for layer, comp, inst in self.powered:
            counts.add_powered(comp, cycles, inst, layer)
        return counts


def _add(counts: ActionCounts, more: dict[CountKey, int]) -> None:
    c = counts.counts
    for key, n in more.items():
        c[key] = c.get(key, 0) + n


def energy_section(collector: EnergyCollector, table: EnergyTable, clock_hz: float, cycles: int,
                   done_cycles: list[int], macs_per_image: int) -> dict[str, Any]:
    """The `energy` object of the summary: `energy_report` of the run, its fill and steady
    windows, and the energy of the recovery work speculation ran."""
    total, first = collector.dynamic()
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
