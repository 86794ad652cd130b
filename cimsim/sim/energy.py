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

For the trace (`cimsim.trace`), after `energy_section` has charged the run:
`core_counts` splits the counts by core (the step tables are per core; action events
name no core and go to core -1), and `power_bins` charges the steps each core computed
in each time bin (`steps_per_bin`, counted by the trace writer from the compute events)
with the table: a bin's dynamic energy per component kind, exact because a core's steps
run in order, so the steps in a bin are a known range of its (phase, group) sequence.
Action events carry no time: a layer's are spread over the bins in proportion to the
steps its cores computed in them, chip-level ones (the DRAM's) over all cores' steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
        self.charged: Charged | None = None
        """What `energy_section` charged (None until it ran)."""

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


    def core_counts(self) -> dict[int, ActionCounts]:
        """The run's dynamic counts by core id (after `energy_section`): each core's steps from
        its step table; -1 holds the action events, which name a layer or none but no core
        (the functional datapath counts a layer's crossbars together; the DRAM is the chip's).
        Summed over the cores they are the run's counts."""
        if self.charged is None:
            raise RuntimeError("core_counts: energy_section has not charged the run")
        steps = self.charged.steps
        out = {}
        for core, t in sorted(self.tables.items()):
            counts = ActionCounts()
            _add(counts, t.counts(step_hits(steps.get(core, 0), t.n_groups, t.period)))
            out[core] = counts
        out[-1] = ActionCounts().merge(self.events)
        return out

    def power_bins(self, steps_per_bin: np.ndarray, core_layers: Mapping[int, str]) -> PowerBins:
        """Dynamic joules per time bin and component kind, and static watts per component kind
        (after `energy_section`). `steps_per_bin[core, b]`: compute events of `core` that
        started in bin b; `core_layers`: core id -> its layer. See the module docstring."""
        ch = self.charged
        if ch is None:
            raise RuntimeError("power_bins: energy_section has not charged the run")
        comps = list(Component)
        col = {c: i for i, c in enumerate(comps)}
        n_bins = steps_per_bin.shape[1]
        dyn = np.zeros((n_bins, len(comps)))
        performed = ch.total.counts
        for core, t in sorted(self.tables.items()):
            per_step = np.zeros((len(comps), t.period * t.n_groups))
            for key, basis, n in t.rates:
                if key not in performed:
                    continue
                energy = ch.table.energy(key[1], key[2], key[3])
                if energy:
                    per_step[col[key[1]]] += n * energy * t.basis[basis].ravel()
            if not per_step.any() or core >= steps_per_bin.shape[0]:
                continue
            cum = np.concatenate((np.zeros((len(comps), 1)), np.cumsum(per_step, axis=1)), axis=1)
            done = np.cumsum(steps_per_bin[core].astype(np.int64))  # steps done by the end of each bin
            cycle = t.period * t.n_groups  # step k is (phase k // n_groups % period, group k % n_groups)

            def energy_of(s: np.ndarray, cum: np.ndarray = cum, cycle: int = cycle) -> np.ndarray:
                return (s // cycle) * cum[:, -1:] + cum[:, s % cycle]

            dyn += np.diff(energy_of(done), axis=1, prepend=0.0).T
        share = _shares(steps_per_bin, core_layers)
        for (layer, comp, action, arg), n in sorted(self.events.counts.items()):
            energy = ch.table.energy(comp, action, arg)
            if energy:
                dyn[:, col[Component(comp)]] += n * energy * share.get(layer, share[""])
        static = np.zeros(len(comps))
        for _layer, comp, _inst in self.powered:
            spec = ch.table.components.get(comp)
            if spec is not None:
                static[col[comp]] += spec.static_power_W + spec.clocked_power_W
        return PowerBins(tuple(str(c) for c in comps), dyn, static)


@dataclass(frozen=True)
class Charged:
    """What `energy_section` charged: the table, the clock and the steps each core computed."""

    table: EnergyTable
    clock_hz: float
    steps: dict[int, int]
    """Core id -> compute events."""
    total: ActionCounts
    """The run's dynamic counts."""


@dataclass(frozen=True)
class PowerBins:
    """Energy over time of a run, by component kind (columns named by `components`)."""

    components: tuple[str, ...]
    dynamic_J: np.ndarray
    """(bins, components) dynamic joules of the actions in each bin."""
    static_W: np.ndarray
    """(components,) constant watts of every powered instance (powered for the whole run): its static
    (leakage) plus its clocked power."""


def _shares(steps_per_bin: np.ndarray, core_layers: Mapping[int, str]) -> dict[str, np.ndarray]:
    """Layer -> the fraction of its cores' steps in each bin ("": all cores'; all in bin 0
    when there are no steps), the weights with which timeless action events are spread."""
    n_bins = steps_per_bin.shape[1]
    first = np.zeros(n_bins)
    first[0] = 1.0
    out: dict[str, np.ndarray] = {}
    groups: dict[str, list[int]] = {"": [c for c in core_layers if c < steps_per_bin.shape[0]]}
    for core, layer in core_layers.items():
        if core < steps_per_bin.shape[0]:
            groups.setdefault(layer, []).append(core)
    for layer, cores in groups.items():
        steps = steps_per_bin[sorted(cores)].sum(axis=0).astype(np.float64)
        total = steps.sum()
        out[layer] = steps / total if total else first
    return out


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
    collector.charged = Charged(table, clock_hz, dict(steps), total.copy())
    rep = energy_report(run, table, clock_hz, cycles=cycles, images=batch, macs_per_image=macs_per_image,
                        steady=steady, fill=fill)
    rec = energy_report(collector.recovery, table, clock_hz, cycles=cycles, images=batch)
    counts = rep.pop("counts")
    rep["recovery"] = {"dynamic_J": rec["dynamic_J"], "by_component": rec["by_component"],
                       "by_action": rec["by_action"], "uncharged_counts": rec["uncharged_counts"]}
    return {"enabled": True, **rep, "counts": counts}
