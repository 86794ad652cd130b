"""The energy of a reloading run (`mapping.weights = "reload"`): its segments' energy sections summed.

Each segment is simulated as a chip of its own and reports its own `energy` section; the run's is
their sum: energy (dynamic, static, clocked), clock cycles, ops, and the breakdowns by layer, component and
action (a layer belongs to one segment, so `by_layer` is their union; the DRAM's and the routers'
"" rows add up). Programming the crossbars is in it as `crossbar.program`, one per device written.
Power, TOPS and TOPS/W follow from the sums; the area is that of the largest segment's cores (the
chip must hold them). The fill and steady-state windows are per segment and not summed; the
recovery work's energy is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SUMMED = ("cycles", "energy_J", "dynamic_J", "static_J", "clocked_J", "ops")
"""Scalar fields of a segment's `energy` section that add up over segments."""
SHARED = ("enabled", "table", "table_file", "clock_hz", "ops_per_mac")
"""Fields every segment reports alike (the run's scenario)."""
AREA = ("area_m2", "area_mm2", "area_by_component_m2", "area_missing", "area_complete")
"""Fields taken from the segment with the largest area."""


def _add_tallies(parts: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Sum dicts of {key: {field: number}} (e.g. by_component), field by field."""
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        for key, row in part.items():
            acc = out.setdefault(key, {})
            for f, v in row.items():
                acc[f] = v if f == "energy_per_action_J" else acc.get(f, 0) + v
    return out


def _add_counts(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for key, n in part.items():
            out[key] = out.get(key, 0) + n
    return out


def merge_energy(parts: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """The run's `energy` section from its segments' (module docstring); `batch` images."""
    out: dict[str, Any] = {k: parts[0][k] for k in SHARED if k in parts[0]}
    for k in SUMMED:
        out[k] = sum(p[k] for p in parts)
    seconds = out["cycles"] / out["clock_hz"]
    out["seconds"] = seconds
    out["images"] = batch
    out["energy_per_image_J"] = out["energy_J"] / batch
    out["by_layer"] = _add_tallies(p["by_layer"] for p in parts)
    out["by_component"] = _add_tallies(p["by_component"] for p in parts)
    out["by_action"] = _add_tallies(p["by_action"] for p in parts)
    out["uncharged_counts"] = _add_counts(p["uncharged_counts"] for p in parts)
    out["average_power_W"] = out["energy_J"] / seconds if seconds else 0.0
    out["tops"] = out["ops"] / seconds / 1e12 if seconds else 0.0
    out["tops_per_w"] = out["ops"] / out["energy_J"] / 1e12 if out["energy_J"] else None
    largest = max(parts, key=lambda p: p.get("area_m2") or 0.0)
    out.update({k: largest[k] for k in AREA if k in largest})
    area_mm2 = out.get("area_mm2")
    out["tops_per_mm2"] = out["tops"] / area_mm2 if area_mm2 else None
    rec = [p["recovery"] for p in parts if "recovery" in p]
    if rec:
        out["recovery"] = {"dynamic_J": sum(r["dynamic_J"] for r in rec),
                           "by_component": _add_tallies(r["by_component"] for r in rec),
                           "by_action": _add_tallies(r["by_action"] for r in rec),
                           "uncharged_counts": _add_counts(r["uncharged_counts"] for r in rec)}
    return out


__all__ = ["merge_energy"]
