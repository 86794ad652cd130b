"""The trace schema: record layouts and name tables, shared by the writer and the reader.

Plain numpy, no h5py: report, plot and export code may import it. The layout is
documented in `traces/README.md`; change `SCHEMA_VERSION` whenever a dataset or
attribute changes meaning (appending a name to a table does not).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

import h5py
import numpy as np

from cimsim.energy.actions import Action, Component
from cimsim.mapping.plan import MappingPlan
from cimsim.sim.probe import EventKind, StallCause

FORMAT = "cimsim-trace"
"""Value of the root attribute `format`."""
SCHEMA_VERSION = 3
"""Value of the root attribute `schema_version` (2: the optional `/energy` group; 3: its
counts per core, `/energy/core_counts`, and energy over time, `/energy/power_dynamic_J`)."""
SUPPORTED_VERSIONS = (1, 2, 3)
"""Schema versions `cimsim.trace.open` can read."""
LEVELS = ("summary", "events")
"""Trace levels: `summary` = mapping, run tables and per-layer summaries; `events` adds the
event and link records."""

KINDS: tuple[str, ...] = tuple(k.value for k in EventKind)
"""Event kinds, by index. Append new kinds (speculation, recovery, ...) at the end: indices
of existing kinds never change. Readers use the file's `kind_names` attribute."""
CAUSES: tuple[str, ...] = ("", *(c.value for c in StallCause))
"""Stall causes, by index; 0 = no cause (compute and image_done events). Readers use the
file's `cause_names` attribute (older traces may list more causes)."""

KIND_ENUM = h5py.enum_dtype({k: i for i, k in enumerate(KINDS)}, basetype="u1")
"""HDF5 enum type of the `kind` column (readers that know HDF5 enums see the names)."""
CAUSE_ENUM = h5py.enum_dtype({(c or "none"): i for i, c in enumerate(CAUSES)}, basetype="u1")
"""HDF5 enum type of the `cause` column (0 = "none": not a stall)."""

EVENT_DTYPE = np.dtype([
    ("cycle", "<i8"),            # start cycle of the event
    ("timestep", "<i4"),         # compute: its timestep; stall: first timestep; image_done: done timestep
    ("kind", KIND_ENUM),         # index into kind_names (an HDF5 enum)
    ("cause", CAUSE_ENUM),       # index into cause_names (stall), else 0 (an HDF5 enum)
    ("core", "<i2"),             # core id, -1 for image_done
    ("layer", "<i2"),            # index into /mapping/layers, -1 for image_done
    ("image", "<i4"),            # compute, image_done: image; stall: -1
    ("x", "<i2"),                # compute: output row of the group's top-left pixel, else -1
    ("y", "<i2"),                # compute: its output column, else -1
    ("first", "<i4"),            # compute: outputs of the image done before; image_done: start timestep
    ("count", "<i4"),            # compute: outputs; stall: timesteps; image_done: 1
    ("duration_cycles", "<i4"),  # compute: cycles of the step; stall: timesteps x cycles per timestep
])
"""One record of `/events`."""

LINK_DTYPE = np.dtype([
    ("cycle", "<i8"),            # cycle the transfer started
    ("link", "<i2"),             # index into /links attribute link_names
    ("source", "<i2"),           # core id of the packet's source, -1 if it is not a core
    ("flits", "<i4"),
    ("cycles", "<i4"),           # cycles the link was busy
    ("buffer_flits", "<i2"),     # flits in the input buffer the link feeds, after this packet (-1: not modelled)
])
"""One record of `/links`."""

LAYER_DTYPE = [
    ("name", "str"), ("index", "<i2"), ("representative_core", "<i2"), ("first_core", "<i2"),
    ("n_cores", "<i2"), ("rate", "<i4"), ("replicas", "<i4"), ("method", "<i2"), ("dw", "<i2"),
    ("rows", "<i4"), ("cols", "<i4"), ("fits", "?"), ("row_parts", "<i2"), ("col_parts", "<i2"),
    ("pixels", "<i4"), ("out_channels", "<i4"), ("main_input", "str"), ("residual_input", "str"),
    ("sram_method", "str"),
]
"""Columns of `/mapping/layers` ("str": variable-length UTF-8)."""
CORE_DTYPE = [
    ("id", "<i2"), ("name", "str"), ("layer", "<i2"), ("row_part", "<i2"), ("col_part", "<i2"),
    ("rows_used", "<i4"), ("cols_used", "<i4"), ("pos_row", "<i2"), ("pos_col", "<i2"), ("merge", "?"),
]
"""Columns of `/mapping/cores`."""
EDGE_DTYPE = [("producer", "str"), ("consumer", "str"), ("role", "str")]
"""Columns of `/mapping/edges`."""
COMPONENTS: tuple[str, ...] = tuple(c.value for c in Component)
"""Energy components by index (`/energy` attribute `component_names`; new ones are appended)."""
ACTIONS: tuple[str, ...] = tuple(a.value for a in Action)
"""Energy actions by index (`/energy` attribute `action_names`; new ones are appended)."""
COMPONENT_ENUM = h5py.enum_dtype({c: i for i, c in enumerate(COMPONENTS)}, basetype="u1")
"""HDF5 enum type of the `component` column of `/energy/core_counts`."""
ACTION_ENUM = h5py.enum_dtype({a: i for i, a in enumerate(ACTIONS)}, basetype="u1")
"""HDF5 enum type of the `action` column of `/energy/core_counts`."""
ENERGY_CORE_COUNT_DTYPE = np.dtype([
    ("core", "<i2"),             # core id; -1: action events, which name no core (functional datapath, DRAM)
    ("layer", "<i2"),            # index into the /energy attribute layer_names ("" = none, the input stream)
    ("component", COMPONENT_ENUM),
    ("action", ACTION_ENUM),
    ("argument", "<i8"),         # the action's argument (ADC bits, link length, MVM cells, ...), else 0
    ("count", "<i8"),
])
"""One record of `/energy/core_counts` (runs with `energy.enabled`, schema 3): the run's
action counts per core; summed over cores, the per-layer counts of the summary."""
ENERGY_COUNT_DTYPE = [("layer", "str"), ("component", "str"), ("action", "str"), ("argument", "<i8"),
                      ("count", "<i8")]
"""Columns of `/energy/counts` of schema-2 traces (read, no longer written): the run's counts per layer."""
ENERGY_POWERED_DTYPE = [("layer", "str"), ("component", "str"), ("instance", "str"), ("cycles", "<i8")]
"""Columns of `/energy/powered`: the clock cycles each instance was powered."""
RUN_CORE_DTYPE = np.dtype([
    ("id", "<i2"), ("active_timesteps", "<i8"), ("peak_inbox_pixels", "<i8"), ("peak_residual_pixels", "<i8"),
])
"""Columns of `/run/cores`; their stalls are `/run/core_stalls` (core x cause_names)."""
SUMMARY_LAYER_DTYPE = [
    ("name", "str"), ("cores", "<i4"), ("first_output_timestep", "<i8"), ("last_output_timestep", "<i8"),
    ("pixels", "<i8"), ("active_timesteps", "<i8"),
]
"""Leading columns of `/summary/layers`; one `stall_<cause>` column per cause follows."""


def plan_to_dict(plan: MappingPlan) -> dict[str, Any]:
    """The mapping plan as a JSON-able dict (stored as `/mapping` attribute `plan_json`); the
    topology graph is not stored (the scenario rebuilds it)."""
    return dataclasses.asdict(dataclasses.replace(plan, topology=None))


def _tuples(value: Any) -> Any:
    """Lists (from JSON) back to tuples, recursively."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _rebuild(hint: Any, value: Any) -> Any:
    """`value` (from JSON) as the type `hint` of a plan dataclass field: nested dataclasses,
    tuples, dicts and optionals are rebuilt; anything else has its lists turned into tuples."""
    if value is None:
        return None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        hints = typing.get_type_hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        return hint(**{k: _rebuild(hints[k], v) for k, v in value.items() if k in names})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_rebuild(args[0], v) for v in value)
        if len(args) == len(value):
            return tuple(_rebuild(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _rebuild(args[1], v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return _rebuild(arg, value)
    return _tuples(value)


def plan_from_dict(data: dict[str, Any]) -> MappingPlan:
    """Rebuild the `MappingPlan` stored by `plan_to_dict` (fields this cimsim does not know are
    dropped; fields the trace lacks take their defaults)."""
    plan: MappingPlan = _rebuild(MappingPlan, data)
    return plan
