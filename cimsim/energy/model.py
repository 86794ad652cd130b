"""Energy, power and area of a run from its action counts and an energy table.

    total energy = sum over counts of (count x energy of the action with its argument)      dynamic
                 + sum over powered instances of (static power x powered cycles / clock)   static (leakage)
                 + sum over powered instances of (clocked power x powered cycles / clock)  clocked

Static power is leakage; clocked power is what a component without clock gating draws every
powered cycle for its clock tree and flip-flops, whether it works or not (Dazzi's Table 4 splits
the dataflow controller's power this way). Both are charged on the same powered cycles and
reported apart.

Throughput figures count 2 operations per multiply-accumulate (the convention of Dazzi
3.2 and Ottavi IV-1): TOPS = 2 x MACs / seconds / 1e12, TOPS/W = 2 x MACs / joules / 1e12.
The MACs are the network's (every MAC of every conv and FC, once per image), passed in by
the caller; speculative or recovery work the hardware redoes costs energy but adds no ops.

Steady state and fill are windows of the same run, cut by the caller at image
completions (snapshots of the counts, `ActionCounts.copy` / `minus`): the steady window
runs from one image's completion to a later one's, so its energy per image no longer
contains the pipeline fill; the fill window runs from the start to image 0's completion,
and its static and clocked energy is what the powered cores draw while the pipeline fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cimsim.energy.actions import ActionCounts, Component, action_name
from cimsim.energy.table import EnergyTable
from cimsim.errors import InputError

OPS_PER_MAC = 2
"""Operations counted per multiply-accumulate in TOPS figures."""


@dataclass(frozen=True)
class Window:
    """A stretch of a run: what happened in it, how many images completed in it, how long it was."""

    counts: ActionCounts
    """Counts and powered cycles accumulated in the window only."""
    images: int
    """Images that completed in the window."""
    cycles: int
    """Clock cycles the window lasted."""


@dataclass
class _Tally:
    """Energy sums of one evaluation."""

    dynamic_J: float = 0.0
    static_J: float = 0.0
    clocked_J: float = 0.0

    @property
    def energy_J(self) -> float:
        return self.dynamic_J + self.static_J + self.clocked_J

    def as_dict(self) -> dict[str, float]:
        return {"energy_J": self.energy_J, "dynamic_J": self.dynamic_J, "static_J": self.static_J,
                "clocked_J": self.clocked_J}


@dataclass
class _Evaluation:
    """Counts x table, broken down."""

    total: _Tally
    by_layer: dict[str, _Tally]
    by_component: dict[str, _Tally]
    by_action: dict[str, dict[str, Any]]
    uncharged: dict[str, int]


def _evaluate(counts: ActionCounts, table: EnergyTable, clock_hz: float) -> _Evaluation:
    """Charge every count and every powered cycle; errors name the table file and the key."""
    counts.check(f"action counts charged with {table.source}")
    total = _Tally()
    by_layer: dict[str, _Tally] = {}
    by_component: dict[str, _Tally] = {}
    by_action: dict[str, dict[str, Any]] = {}
    uncharged: dict[str, int] = {}
    for (layer, comp, action, arg), n in sorted(counts.counts.items()):
        comp, name = Component(comp), action_name(comp, action, arg)
        energy = table.energy(comp, action, arg)
        if energy is None:
            uncharged[name] = uncharged.get(name, 0) + n
            continue
        joules = n * energy
        total.dynamic_J += joules
        by_layer.setdefault(layer, _Tally()).dynamic_J += joules
        by_component.setdefault(str(comp), _Tally()).dynamic_J += joules
        rec = by_action.setdefault(name, {"count": 0, "energy_per_action_J": energy, "energy_J": 0.0})
        rec["count"] += n
        rec["energy_J"] += joules
    for (layer, comp, instance), cycles in sorted(counts.powered.items()):
        spec = table.components.get(Component(comp))
        if spec is None:
            raise InputError(f"{table.source}: no component '{comp}' for a component the chip powered"
                             f"{f' ({instance})' if instance else ''}")
        static, clocked = spec.static_power_W * cycles / clock_hz, spec.clocked_power_W * cycles / clock_hz
        for tally in (total, by_layer.setdefault(layer, _Tally()), by_component.setdefault(str(comp), _Tally())):
            tally.static_J += static
            tally.clocked_J += clocked
    return _Evaluation(total, by_layer, by_component, by_action, uncharged)


def _rate(ops: int, joules: float, seconds: float) -> dict[str, float | None]:
    """Average power, TOPS and TOPS/W of `ops` operations in `joules` over `seconds`."""
    return {
        "average_power_W": joules / seconds if seconds > 0 else None,
        "tops": ops / seconds / 1e12 if seconds > 0 else None,
        "tops_per_w": ops / joules / 1e12 if joules > 0 else None,
    }


def chip_area(table: EnergyTable, instances: Mapping[Component, int]) -> dict[str, Any]:
    """Area of `instances` (component -> how many) from the table's per-instance areas."""
    by_comp: dict[str, float] = {}
    missing: list[str] = []
    for comp, n in sorted(instances.items()):
        spec = table.components.get(Component(comp))
        if n and (spec is None or spec.area_m2 is None):
            missing.append(str(comp))
        elif n and spec is not None and spec.area_m2 is not None:
            by_comp[str(comp)] = spec.area_m2 * n
    area = sum(by_comp.values())
    return {"area_m2": area, "area_mm2": area * 1e6, "area_by_component_m2": by_comp,
            "area_missing": missing, "area_complete": not missing}


def _instances(counts: ActionCounts) -> dict[Component, int]:
    """Distinct powered instances per component (the default for the area)."""
    seen: dict[Component, set[str]] = {}
    for _, comp, instance in counts.powered:
        seen.setdefault(Component(comp), set()).add(instance)
    return {c: len(s) for c, s in seen.items()}


def energy_report(counts: ActionCounts, table: EnergyTable, clock_hz: float, *, cycles: int, images: int = 1,
                  macs_per_image: int = 0, instances: Mapping[Component, int] | None = None,
                  steady: Window | None = None, fill: Window | None = None) -> dict[str, Any]:
    """The `energy` object of a run's report, JSON-able and deterministic.

    `counts` covers the whole run (`cycles` clock cycles at `clock_hz`, `images` images);
    `macs_per_image` the network's MACs per image (for TOPS); `instances` how many of each
    component the chip has (for the area; default: the distinct powered instances in
    `counts`); `steady` a window between two image completions and `fill` the window up to
    image 0's completion (both optional, see the module docstring). Raises InputError,
    naming the table file and the key, for an action or a powered component the table lacks.
    """
    if clock_hz <= 0 or cycles < 0 or images < 0 or macs_per_image < 0:
        raise ValueError("energy_report: clock_hz must be > 0 and cycles, images, macs_per_image >= 0")
    ev = _evaluate(counts, table, clock_hz)
    seconds = cycles / clock_hz
    ops = OPS_PER_MAC * macs_per_image * images
    area = chip_area(table, _instances(counts) if instances is None else instances)
    out: dict[str, Any] = {
        "table": table.name,
        "table_file": table.source,
        "clock_hz": clock_hz,
        "cycles": cycles,
        "seconds": seconds,
        "images": images,
        **ev.total.as_dict(),
        "energy_per_image_J": ev.total.energy_J / images if images else None,
        "by_layer": {k or "(none)": t.as_dict() for k, t in sorted(ev.by_layer.items())},
        "by_component": {k: t.as_dict() for k, t in sorted(ev.by_component.items())},
        "by_action": ev.by_action,
        "uncharged_counts": ev.uncharged,
        "ops_per_mac": OPS_PER_MAC,
        "ops": ops,
        **_rate(ops, ev.total.energy_J, seconds),
        **area,
    }
    out["tops_per_mm2"] = out["tops"] / out["area_mm2"] if out["tops"] is not None and out["area_mm2"] else None
    out["steady_state"] = None if steady is None else _window(steady, table, clock_hz, macs_per_image)
    out["fill"] = None if fill is None else _window(fill, table, clock_hz, macs_per_image)
    out["counts"] = counts.to_dict()
    return out


def _window(win: Window, table: EnergyTable, clock_hz: float, macs_per_image: int) -> dict[str, Any]:
    """Energy of one window, per image where images completed in it."""
    ev = _evaluate(win.counts, table, clock_hz)
    seconds = win.cycles / clock_hz
    per = (lambda j: j / win.images) if win.images else (lambda j: None)
    return {
        "images": win.images,
        "cycles": win.cycles,
        "seconds": seconds,
        **ev.total.as_dict(),
        "energy_per_image_J": per(ev.total.energy_J),
        "dynamic_per_image_J": per(ev.total.dynamic_J),
        "static_per_image_J": per(ev.total.static_J),
        "clocked_per_image_J": per(ev.total.clocked_J),
        **_rate(OPS_PER_MAC * macs_per_image * win.images, ev.total.energy_J, seconds),
    }
