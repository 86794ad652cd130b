"""Reading a trace: `cimsim.trace.open(path)` -> `Trace`, numpy arrays and plain dicts.

Refuses (with `TraceError`, exit 2 from the CLI) anything that is not a complete cimsim
trace of a schema version this cimsim knows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import h5py
import numpy as np

from cimsim.energy.actions import Action, ActionCounts, Component, check_pair
from cimsim.errors import InputError
from cimsim.mapping.plan import MappingPlan
from cimsim.trace.schema import EVENT_DTYPE, FORMAT, LEVELS, LINK_DTYPE, SUPPORTED_VERSIONS, plan_from_dict

REQUIRED = (("config", h5py.Group), ("config/scenario_json", h5py.Dataset), ("config/model_toml", h5py.Dataset),
            ("mapping", h5py.Group), ("mapping/layers", h5py.Dataset), ("mapping/cores", h5py.Dataset),
            ("mapping/edges", h5py.Dataset), ("events", h5py.Dataset), ("links", h5py.Dataset), ("run", h5py.Group),
            ("run/image_start_timestep", h5py.Dataset), ("run/image_done_timestep", h5py.Dataset),
            ("run/cores", h5py.Dataset), ("run/core_stalls", h5py.Dataset), ("summary", h5py.Group),
            ("summary/layers", h5py.Dataset))
"""Groups and datasets every complete trace has."""


class TraceError(InputError):
    """A file that is not a complete, readable cimsim trace (exit 2)."""


def _str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _names(values: Any) -> tuple[str, ...]:
    return tuple(_str(v) for v in np.atleast_1d(values)) if values is not None and len(values) else ()


def _table(ds: h5py.Dataset) -> np.ndarray:
    """A compound dataset with its variable-length string columns as numpy unicode columns."""
    raw = ds[()]
    fields = []
    for name in raw.dtype.names:
        col = raw[name]
        if raw.dtype[name].kind == "O":
            texts = [_str(v) for v in col]
            fields.append((name, f"<U{max((len(t) for t in texts), default=1) or 1}"))
        else:
            fields.append((name, raw.dtype[name]))
    out = np.empty(raw.shape, dtype=fields)
    for name in raw.dtype.names:
        out[name] = [_str(v) for v in raw[name]] if raw.dtype[name].kind == "O" else raw[name]
    return out


@dataclass(frozen=True)
class PowerSeries:
    """Energy over time of a run (`/energy/power_dynamic_J`): bin b covers the cycles
    [b x bin_cycles, min((b + 1) x bin_cycles, cycles)); columns are component kinds."""

    components: tuple[str, ...]
    bin_cycles: int
    cycles: int
    """Cycles of the run (the last bin ends there)."""
    clock_hz: float
    dynamic_J: np.ndarray
    """(bins, components) dynamic joules of the actions in each bin."""
    static_W: np.ndarray
    """(components,) static (leakage) plus clocked power of all powered instances, for the whole run."""

    @property
    def edges_s(self) -> np.ndarray:
        """Bin boundaries in seconds (bins + 1)."""
        n = self.dynamic_J.shape[0]
        cyc = np.minimum(np.arange(n + 1, dtype=np.int64) * self.bin_cycles, self.cycles)
        return cyc / self.clock_hz

    @property
    def watts(self) -> np.ndarray:
        """(bins, components) average power in each bin: dynamic joules / its length + static."""
        width = np.diff(self.edges_s)
        dyn = np.divide(self.dynamic_J, width[:, None], out=np.zeros_like(self.dynamic_J), where=width[:, None] > 0)
        return dyn + self.static_W[None, :]


class Trace:
    """An open, complete trace. Large datasets (`events`, `links`) are read on first use;
    `iter_events` streams them in blocks. Use as a context manager or call `close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            partial = sorted(self.path.parent.glob(f"{self.path.name}.*partial"))
            hint = f" (only {partial[0].name} exists: the run writing it has not finished)" if partial else ""
            raise TraceError(f"trace file not found: {self.path}{hint}")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError:
            raise TraceError(f"{self.path}: not an HDF5 file") from None
        try:
            self._check()
        except BaseException:
            self.file.close()
            raise

    def _check(self) -> None:
        a = self.file.attrs
        if _str(a.get("format", "")) != FORMAT:
            raise TraceError(f"{self.path}: not a cimsim trace (no format = {FORMAT!r} attribute)")
        version = a.get("schema_version")
        if version is None or int(version) not in SUPPORTED_VERSIONS:
            known = ", ".join(map(str, SUPPORTED_VERSIONS))
            raise TraceError(f"{self.path}: trace schema version {version} is not supported (this cimsim reads "
                             f"{known})")
        complete = a.get("complete", False)
        if not (isinstance(complete, (bool, np.bool_)) and bool(complete)):
            raise TraceError(f"{self.path}: incomplete trace (complete = {_str(complete).lower()}): the run that "
                             "wrote it did not finish")
        self.schema_version = int(version)
        try:
            self.level = _str(a["trace_level"])
            self.cimsim_version = _str(a.get("cimsim_version", ""))
            self.kind_names = _names(a["kind_names"])
            self.cause_names = _names(a["cause_names"])
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise TraceError(f"{self.path}: damaged trace (root attributes: {exc})") from None
        if self.level not in LEVELS:
            raise TraceError(f"{self.path}: damaged trace (trace_level = {self.level!r})")
        self._check_layout()

    def _check_layout(self) -> None:
        """Every group and dataset the readers use exists, with the record layouts of the schema."""
        f = self.file
        for name, kind in REQUIRED:
            obj = f.get(name)
            if not isinstance(obj, kind):
                what = "group" if kind is h5py.Group else "dataset"
                raise TraceError(f"{self.path}: damaged trace (no {what} /{name})")
        for name, dtype in (("events", EVENT_DTYPE), ("links", LINK_DTYPE)):
            ds = f[name]
            if ds.dtype.names != dtype.names or ds.ndim != 1:
                raise TraceError(f"{self.path}: damaged trace (/{name} does not have the schema's record layout)")
        for name in ("layers", "cores", "edges"):
            ds = f["mapping"][name]
            if ds.dtype.names is None or ds.ndim != 1:
                raise TraceError(f"{self.path}: damaged trace (/mapping/{name} is not a table)")
        for group, attr in (("mapping", "plan_json"), ("summary", "json")):
            if attr not in f[group].attrs:
                raise TraceError(f"{self.path}: damaged trace (no attribute {attr} of /{group})")
        texts = {"/mapping plan_json": (f["mapping"].attrs["plan_json"], "layers"),
                 "/summary json": (f["summary"].attrs["json"], "layers"),
                 "/config/scenario_json": (f["config/scenario_json"][()], "chip")}
        for where, (raw, key) in texts.items():
            try:
                doc = json.loads(_str(raw))
            except (ValueError, TypeError, RecursionError):
                raise TraceError(f"{self.path}: damaged trace ({where} is not JSON)") from None
            if not isinstance(doc, dict) or key not in doc:
                raise TraceError(f"{self.path}: damaged trace ({where} has no {key!r})")
        batch = f["run"].attrs.get("batch")
        try:
            ok = batch is not None and 0 < int(batch) == f["run/image_start_timestep"].shape[0]
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise TraceError(f"{self.path}: damaged trace (/run batch does not match its image tables)")

    # --- small parts, read at once ----------------------------------------------------------
    @cached_property
    def scenario(self) -> dict[str, Any]:
        """The resolved scenario (`cimsim.config.scenario_to_dict`)."""
        return json.loads(_str(self.file["config/scenario_json"][()]))

    @cached_property
    def model_toml(self) -> str:
        """The text of the model file the run used."""
        return _str(self.file["config/model_toml"][()])

    @property
    def model_name(self) -> str:
        """The network's name."""
        return _str(self.file["config"].attrs["model_name"])

    @cached_property
    def plan(self) -> MappingPlan:
        """The mapping plan, rebuilt."""
        return plan_from_dict(json.loads(_str(self.file["mapping"].attrs["plan_json"])))

    @cached_property
    def mapping(self) -> dict[str, np.ndarray]:
        """`layers`, `cores` and `edges` tables (structured arrays, strings as numpy unicode)."""
        g = self.file["mapping"]
        return {name: _table(g[name]) for name in ("layers", "cores", "edges")}

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Compute layers by index (the `layer` column of events)."""
        return tuple(str(n) for n in self.mapping["layers"]["name"])

    @cached_property
    def link_names(self) -> tuple[str, ...]:
        """NoC links by index (the `link` column of links)."""
        return _names(self.file["links"].attrs.get("link_names"))

    @cached_property
    def summary_text(self) -> str:
        """The summary JSON exactly as `cimsim run --json` printed it."""
        return _str(self.file["summary"].attrs["json"])

    @cached_property
    def summary(self) -> dict[str, Any]:
        """The summary dict of the run."""
        return json.loads(self.summary_text)

    @cached_property
    def summary_layers(self) -> np.ndarray:
        """The per-layer summary table."""
        return _table(self.file["summary/layers"])

    @cached_property
    def energy_counts(self) -> ActionCounts | None:
        """The run's action counts (per layer, summed over cores) and powered cycles (None:
        energy was not enabled)."""
        if "energy" not in self.file:
            return None
        where = f"{self.path}: /energy"
        if self.schema_version == 2:
            rows = [{"layer": str(r["layer"]), "component": str(r["component"]), "action": str(r["action"]),
                     "argument": int(r["argument"]), "count": int(r["count"])} for r in self._energy_table("counts")]
            out = ActionCounts.from_dict({"counts": rows}, where)
        else:  # schema 3: the per-core counts, summed
            out = ActionCounts()
            for counts in (self.energy_core_counts or {}).values():
                out.merge(counts)
        powered = self._energy_table("powered")
        return out.merge(ActionCounts.from_dict({
            "powered": [{"layer": str(r["layer"]), "component": str(r["component"]), "instance": str(r["instance"]),
                         "cycles": int(r["cycles"])} for r in powered]}, where))

    @cached_property
    def energy_core_counts(self) -> dict[int, ActionCounts] | None:
        """Core id -> its action counts (-1: action events, which name no core: the functional
        datapath's, counted per layer, and the DRAM's). None: energy was not enabled, or a
        schema-2 trace, which stores the counts per layer only."""
        if "energy" not in self.file or self.schema_version < 3:
            return None
        g = self.file["energy"]
        try:
            comps = [Component(n) for n in _names(g.attrs["component_names"])]
            actions = [Action(n) for n in _names(g.attrs["action_names"])]
            layers = _names(g.attrs["layer_names"])
            rows = g["core_counts"][()]
            out: dict[int, ActionCounts] = {}
            for core, layer, comp, action, arg, n in rows[["core", "layer", "component", "action", "argument",
                                                           "count"]].tolist():
                c, a = comps[comp], actions[action]
                check_pair(c, a, f"{self.path}: /energy/core_counts")
                if n < 0 or core < -1:
                    raise ValueError(f"core {core}, count {n}")
                out.setdefault(int(core), ActionCounts()).add(c, a, int(n), int(arg), layers[layer])
        except (KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise TraceError(f"{self.path}: damaged trace (/energy/core_counts: {exc})") from None
        return out

    @cached_property
    def energy_power(self) -> PowerSeries | None:
        """The run's energy over time (None: energy was not enabled, the trace has no events,
        or it is older than schema 3)."""
        if "energy" not in self.file or "power_dynamic_J" not in self.file["energy"]:
            return None
        g = self.file["energy"]
        try:
            ds = g["power_dynamic_J"]
            series = PowerSeries(_names(g.attrs["component_names"]), int(ds.attrs["bin_cycles"]),
                                 int(ds.attrs["cycles"]), float(g.attrs["clock_hz"]),
                                 np.asarray(ds[()], dtype=np.float64), np.asarray(g["static_power_W"][()], np.float64))
        except (KeyError, ValueError, TypeError) as exc:
            raise TraceError(f"{self.path}: damaged trace (/energy power: {exc})") from None
        n = len(series.components)
        if (series.dynamic_J.ndim != 2 or series.dynamic_J.shape[1] != n or series.static_W.shape != (n,)
                or series.bin_cycles <= 0 or series.clock_hz <= 0
                or series.dynamic_J.shape[0] != max(1, -(-series.cycles // series.bin_cycles))):
            raise TraceError(f"{self.path}: damaged trace (/energy/power_dynamic_J does not match its attributes)")
        return series

    def _energy_table(self, name: str) -> np.ndarray:
        try:
            return _table(self.file["energy"][name])
        except (KeyError, ValueError, TypeError) as exc:
            raise TraceError(f"{self.path}: damaged trace (/energy/{name}: {exc})") from None

    @cached_property
    def run(self) -> dict[str, Any]:
        """Run attributes (`batch`, `cycles`, `events`, `source_stall_timesteps`, `wall_seconds`) and
        arrays (`image_start_timestep`, `image_done_timestep`, `cores`, `core_stalls`)."""
        g = self.file["run"]
        out: dict[str, Any] = {k: v.item() if hasattr(v, "item") else v for k, v in g.attrs.items()}
        for name in g:
            out[name] = g[name][()]
        return out

    # --- records ----------------------------------------------------------------------------
    @property
    def n_events(self) -> int:
        """Event records in the file (0 at trace level summary)."""
        return int(self.file["events"].shape[0])

    @property
    def n_links(self) -> int:
        """Link records in the file."""
        return int(self.file["links"].shape[0])

    @cached_property
    def events(self) -> np.ndarray:
        """All event records (`cimsim.trace.schema.EVENT_DTYPE`)."""
        return self.file["events"][()]

    @cached_property
    def links(self) -> np.ndarray:
        """All link records (`cimsim.trace.schema.LINK_DTYPE`)."""
        return self.file["links"][()]

    def iter_events(self, block: int = 65536) -> Iterator[np.ndarray]:
        """The event records in order, `block` at a time (memory independent of the run's length)."""
        ds = self.file["events"]
        for start in range(0, ds.shape[0], block):
            yield ds[start:start + block]

    def iter_links(self, block: int = 65536) -> Iterator[np.ndarray]:
        """The link records in order, `block` at a time."""
        ds = self.file["links"]
        for start in range(0, ds.shape[0], block):
            yield ds[start:start + block]

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open(path: str | Path) -> Trace:
    """Open a complete trace; raise `TraceError` for anything else."""
    return Trace(path)
