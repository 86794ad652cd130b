"""The HDF5 trace writer: a probe subscriber that appends fixed-size blocks of records.

The file is written as `<path>.<pid>.partial` (through `cimsim.io_safety.AtomicOutput`) and
renamed to `<path>` by `finish`, after the root attribute `complete` has been set true. An
existing file at `<path>` is untouched until then; an exception (including Ctrl-C or SIGTERM
turned into one by the CLI) inside the writer's `with` block removes the partial file. HDF5
writes through a guarded Python file object: a failed write (disk full, file-size limit) is
recorded, never seen by HDF5, and raised as one `OutputError` at the next block or at `finish`.
Memory does not grow with the run: at most `block_events` events (and as many link
records) are buffered before they are appended to the chunked, gzip-compressed datasets.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

import h5py
import numpy as np

from cimsim import __version__
from cimsim.config.load import scenario_to_dict
from cimsim.config.schema import Scenario
from cimsim.errors import InputError
from cimsim.io_safety import AtomicOutput
from cimsim.mapping.plan import MappingPlan, layer_pixels
from cimsim.network import Network
from cimsim.network.model import model_text
from cimsim.sim.probe import StallCause
from cimsim.sim.record import RunRecord
from cimsim.trace.schema import (
    ACTIONS,
    CAUSES,
    COMPONENTS,
    CORE_DTYPE,
    EDGE_DTYPE,
    ENERGY_CORE_COUNT_DTYPE,
    ENERGY_POWERED_DTYPE,
    EVENT_DTYPE,
    FORMAT,
    KINDS,
    LAYER_DTYPE,
    LEVELS,
    LINK_DTYPE,
    RUN_CORE_DTYPE,
    SCHEMA_VERSION,
    SUMMARY_LAYER_DTYPE,
    plan_to_dict,
)

if TYPE_CHECKING:
    from cimsim.energy.actions import ActionCounts
    from cimsim.sim.energy import EnergyCollector

BLOCK_EVENTS = 65536
"""Events buffered before they are appended to `/events` (about 2.5 MB)."""
CHUNK_ROWS = 16384
"""HDF5 chunk of `/events` and `/links`, in records."""
T = TypeVar("T")
INT32_MAX = 2**31 - 1
"""A stall longer than this many cycles stores this duration (its `count` of timesteps is exact)."""
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
POWER_BINS = 2048
"""Energy over time (`energy.enabled`, level events): at most this many time bins. A bin starts
one timestep wide and doubles (adjacent bins summed) whenever the run outgrows the bins."""


def partial_path(path: Path) -> Path:
    """Where a run writes its trace until it is complete: `<path>.<pid>.partial` (one per
    process, so two runs of the same scenario never write into one file)."""
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


def scenario_inputs(scenario: Scenario) -> list[str]:
    """The files a run of `scenario` reads (its trace may not replace any of them)."""
    base = Path(scenario.source).parent if scenario.source else Path(".")
    files = [scenario.source, scenario.model]
    files += [str(base / f) for f in (scenario.functional.weights, scenario.functional.images,
                                           scenario.functional.labels) if f]
    return [f for f in files if f]


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """A writer method whose failure after a failed write is reported as that write's
    `OutputError` (HDF5 reads back what it thinks it wrote, and complains)."""

    @functools.wraps(method)
    def wrapper(self: TraceWriter, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            self._out.check()
            raise

    return wrapper


def _dtype(spec: list[tuple[str, str]]) -> np.dtype:
    """A compound dtype where "str" columns are variable-length UTF-8 strings."""
    return np.dtype([(n, h5py.string_dtype() if t == "str" else t) for n, t in spec])


def _text(group: h5py.Group, name: str, text: str) -> None:
    """A scalar variable-length UTF-8 string dataset."""
    group.create_dataset(name, data=text, dtype=h5py.string_dtype())


class Summarised(Protocol):
    """What `TraceWriter.finish` needs of a report: its summary dict."""

    @property
    def summary(self) -> dict[str, Any]:
        """The summary `cimsim run --json` prints."""


class TraceWriter:
    """Writes one run's trace; subscribe it to the chip's probe when `records_events`."""

    def __init__(self, path: str | Path, scenario: Scenario, net: Network, plan: MappingPlan,
                 level: str = "events", block_events: int = BLOCK_EVENTS) -> None:
        if level not in LEVELS:
            raise InputError(f"trace level {level!r}: must be one of {', '.join(LEVELS)}")
        self.path = Path(path)
        self.level = level
        self.records_events = level == "events"
        self.cpt = scenario.chip.cycles_per_timestep
        self.plan = plan
        self._layer_index = {name: i for i, name in enumerate(plan.layers)}
        self._core_ids = {c.name: c.id for c in plan.cores}
        self._causes = {name: i for i, name in enumerate(CAUSES)}
        self._links: dict[str, int] = {}
        self._kind = {name: i for i, name in enumerate(KINDS)}
        self._block = block_events
        self._ev = np.zeros(block_events, EVENT_DTYPE)
        self._lk = np.zeros(block_events, LINK_DTYPE)
        self._n_ev = 0
        self._n_lk = 0
        self.events_written = 0
        self.links_written = 0
        self.finished = False
        self.write_seconds = 0.0
        """Wall time spent appending blocks and finishing the file (compression and I/O)."""
        self._power = self.records_events and scenario.energy.enabled
        self.bin_cycles = self.cpt
        """Width of the energy-over-time bins, in cycles (a power of two times a timestep)."""
        self._core_layers = {c.id: c.layer for c in plan.cores}
        n_cores = max(self._core_layers, default=-1) + 1
        self.steps_per_bin = np.zeros((n_cores if self._power else 0, POWER_BINS), dtype=np.int64)
        """(cores, bins) compute events that started in each bin (energy runs at level events)."""
        self._out = AtomicOutput(self.path, scenario_inputs(scenario), what="trace", mkdir=True)
        self.partial = self._out.partial
        try:
            self.file = h5py.File(self._out.stream, "w", libver=("v110", "latest"))
            self._start(scenario, net, plan)
            self._out.check()
        except BaseException:
            self.abort()
            raise

    # --- layout -----------------------------------------------------------------------------
    @_guarded
    def _start(self, scenario: Scenario, net: Network, plan: MappingPlan) -> None:
        f = self.file
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["complete"] = False
        f.attrs["trace_level"] = self.level
        f.attrs["cimsim_version"] = __version__
        f.attrs["kind_names"] = list(KINDS)
        f.attrs["cause_names"] = list(CAUSES)
        cfg = f.create_group("config")
        cfg.attrs["scenario_name"] = scenario.name
        cfg.attrs["model_name"] = net.name
        cfg.attrs["model_path"] = scenario.model
        _text(cfg, "scenario_json", json.dumps(scenario_to_dict(scenario), indent=1))
        _text(cfg, "model_toml", model_text(scenario.model))  # an .onnx model: its imported TOML
        self._mapping(f.create_group("mapping"), net, plan)
        ev = f.create_dataset("events", shape=(0,), maxshape=(None,), dtype=EVENT_DTYPE, chunks=(CHUNK_ROWS,),
                              **COMPRESSION)
        ev.attrs["timestep_cycles"] = self.cpt
        lk = f.create_dataset("links", shape=(0,), maxshape=(None,), dtype=LINK_DTYPE, chunks=(CHUNK_ROWS,),
                              **COMPRESSION)
        lk.attrs["link_names"] = np.array([], dtype=h5py.string_dtype())
        f.flush()

    def _mapping(self, g: h5py.Group, net: Network, plan: MappingPlan) -> None:
        g.attrs["plan_json"] = json.dumps(plan_to_dict(plan))
        g.attrs["input_name"] = plan.input_name
        g.attrs["output_layer"] = plan.output_layer
        g.attrs["array"] = np.array(plan.array, dtype=np.int32)
        g.attrs["warnings"] = np.array(list(plan.warnings), dtype=h5py.string_dtype())
        pixels = layer_pixels(net, plan)
        layers = [
            (name, i, lm.merge_cores[0], lm.cores[0], len(lm.cores), lm.rate, lm.replicas, lm.method, lm.dw,
             lm.rows, lm.cols, lm.fits, lm.row_parts, lm.col_parts, pixels[name], net.layer(name).out_channels,
             "+".join(lm.main_inputs),
             lm.residual_input or "", lm.sram_method)
            for i, (name, lm) in enumerate(plan.layers.items())
        ]
        g.create_dataset("layers", data=np.array(layers, dtype=_dtype(LAYER_DTYPE)))
        merge = {c for lm in plan.layers.values() for c in lm.merge_cores}
        cores = [(c.id, c.name, self._layer_index[c.layer], c.row_part, c.col_part, c.rows_used, c.cols_used,
                  c.position[0], c.position[1], c.id in merge) for c in plan.cores]
        g.create_dataset("cores", data=np.array(cores, dtype=_dtype(CORE_DTYPE)))
        g.create_dataset("edges", data=np.array(list(plan.edges), dtype=_dtype(EDGE_DTYPE)))

    # --- probe subscriber -------------------------------------------------------------------
    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int, col: int) -> None:
        """Record a compute step (its start cycle and duration)."""
        self._ev[self._n_ev] = (cycle, timestep, 0, 0, core, self._layer_index[layer], image, row, col, first,
                                count, cycles)
        self._n_ev += 1
        if self._n_ev == self._block:
            self._flush_events()

    def stall(self, core: int, layer: str, cause: StallCause, start_timestep: int, timesteps: int) -> None:
        """Record a stall interval."""
        code = self._causes[cause]
        self._ev[self._n_ev] = (start_timestep * self.cpt, start_timestep, 1, code, core, self._layer_index[layer],
                                -1, -1, -1, 0, timesteps, min(timesteps * self.cpt, INT32_MAX))
        self._n_ev += 1
        if self._n_ev == self._block:
            self._flush_events()

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """Record an image's network output."""
        self._ev[self._n_ev] = (cycle, done_timestep, 2, 0, -1, -1, image, -1, -1, start_timestep, 1, 0)
        self._n_ev += 1
        if self._n_ev == self._block:
            self._flush_events()

    def link(self, cycle: int, link: str, source: str, flits: int, cycles: int, buffer_flits: int = -1) -> None:
        """Record a NoC link transfer."""
        code = self._links.get(link)
        if code is None:
            code = self._links[link] = len(self._links)
        src = self._core_ids.get(source, -1)
        self._lk[self._n_lk] = (cycle, code, src, flits, cycles, buffer_flits)
        self._n_lk += 1
        if self._n_lk == self._block:
            self._flush_links()

    # --- blocks -----------------------------------------------------------------------------
    def _append(self, name: str, buf: np.ndarray, n: int) -> None:
        t0 = time.perf_counter()
        ds = self.file[name]
        start = ds.shape[0]
        ds.resize((start + n,))
        ds[start:] = buf[:n]
        self.write_seconds += time.perf_counter() - t0
        self._out.check()  # a failed write stops the run here, with one line naming the file

    def _bin_steps(self, ev: np.ndarray) -> None:
        """Count the block's compute events per core and time bin (fixed memory: bins widen)."""
        comp = ev[ev["kind"] == self._kind["compute"]]
        if not len(comp):
            return
        cycle = comp["cycle"]
        while int(cycle.max()) // self.bin_cycles >= POWER_BINS:
            n = self.steps_per_bin.shape[0]
            folded = self.steps_per_bin.reshape(n, POWER_BINS // 2, 2).sum(axis=2)
            self.steps_per_bin = np.concatenate((folded, np.zeros_like(folded)), axis=1)
            self.bin_cycles *= 2
        flat = comp["core"].astype(np.int64) * POWER_BINS + cycle // self.bin_cycles
        self.steps_per_bin += np.bincount(flat, minlength=self.steps_per_bin.size).reshape(self.steps_per_bin.shape)

    @_guarded
    def _flush_events(self) -> None:
        if self._n_ev:
            if self._power:
                self._bin_steps(self._ev[:self._n_ev])
            self._append("events", self._ev, self._n_ev)
            self.events_written += self._n_ev
            self._n_ev = 0

    @_guarded
    def _flush_links(self) -> None:
        if self._n_lk:
            self._append("links", self._lk, self._n_lk)
            self.links_written += self._n_lk
            self._n_lk = 0
            self.file["links"].attrs["link_names"] = np.array(list(self._links), dtype=h5py.string_dtype())

    # --- end ----------------------------------------------------------------------------------
    @_guarded
    def finish(self, record: RunRecord, report: Summarised, energy: EnergyCollector | None = None) -> Path:
        """Write the run tables and the summary, mark the file complete and rename it. `energy`:
        the run's energy collector (`energy.enabled`), for the counts per core and over time;
        without it the counts are stored as core -1 and there is no energy over time."""
        self._flush_events()
        self._flush_links()
        t0 = time.perf_counter()
        f = self.file
        run = f.create_group("run")
        for key in ("batch", "cycles", "events", "source_stall_timesteps"):
            run.attrs[key] = getattr(record, key)
        run.attrs["wall_seconds"] = record.wall_seconds
        run.create_dataset("image_start_timestep", data=np.array(record.image_start_ts, dtype=np.int64))
        run.create_dataset("image_done_timestep", data=np.array(record.image_done_ts, dtype=np.int64))
        rows = [(c.id, c.active_timesteps, c.peak_inbox_pixels, c.peak_residual_pixels) for c in record.cores]
        run.create_dataset("cores", data=np.array(rows, dtype=RUN_CORE_DTYPE))
        stalls = np.zeros((len(record.cores), len(self._causes)), dtype=np.int64)
        for i, c in enumerate(record.cores):
            for cause, n in c.stall_timesteps.items():
                stalls[i, self._causes[cause]] = n
        run.create_dataset("core_stalls", data=stalls)
        self._summary(f.create_group("summary"), report.summary)
        if isinstance(report.summary.get("energy"), dict):
            self._energy(f.create_group("energy"), report.summary["energy"], energy, record.cycles)
        f.attrs["events"] = self.events_written
        f.attrs["links"] = self.links_written
        f.attrs["complete"] = True
        f.close()
        self._out.commit()
        self.finished = True
        self.write_seconds += time.perf_counter() - t0
        return self.path

    def _summary(self, g: h5py.Group, summary: dict[str, Any]) -> None:
        g.attrs["json"] = json.dumps(summary, indent=2)
        causes = list(summary["layers"][0]["stall_timesteps"]) if summary["layers"] else []
        spec = SUMMARY_LAYER_DTYPE + [(f"stall_{c}", "<i8") for c in causes]
        rows = [tuple(lay[n] for n, _ in SUMMARY_LAYER_DTYPE) + tuple(lay["stall_timesteps"][c] for c in causes)
                for lay in summary["layers"]]
        g.create_dataset("layers", data=np.array(rows, dtype=_dtype(spec)))

    def _energy(self, g: h5py.Group, energy: dict[str, Any], collector: EnergyCollector | None,
                cycles: int) -> None:
        """The run's action counts per core (`/energy/core_counts`), the powered cycles of every
        instance (`/energy/powered`) and, at level events, the energy per time bin."""
        from cimsim.energy.actions import ActionCounts

        g.attrs["table"] = energy["table"]
        g.attrs["table_file"] = energy["table_file"]
        g.attrs["clock_hz"] = energy["clock_hz"]
        g.attrs["component_names"] = list(COMPONENTS)
        g.attrs["action_names"] = list(ACTIONS)
        run = ActionCounts.from_dict(energy["counts"], "energy counts")
        by_core = collector.core_counts() if collector is not None else {-1: ActionCounts().merge(run)}
        self._core_counts(g, by_core)
        powered = [(r["layer"], r["component"], r["instance"], r["cycles"]) for r in energy["counts"]["powered"]]
        g.create_dataset("powered", data=np.array(powered, dtype=_dtype(ENERGY_POWERED_DTYPE)))
        if collector is None or not self._power:
            return
        n_bins = max(1, -(-cycles // self.bin_cycles))
        steps = self.steps_per_bin[:, :n_bins].copy()
        steps[:, -1] += self.steps_per_bin[:, n_bins:].sum(axis=1)  # none start at or after the run's end
        power = collector.power_bins(steps, self._core_layers)
        ds = g.create_dataset("power_dynamic_J", data=power.dynamic_J, **COMPRESSION)
        ds.attrs["bin_cycles"] = self.bin_cycles
        ds.attrs["cycles"] = cycles
        g.create_dataset("static_power_W", data=power.static_W)

    def _core_counts(self, g: h5py.Group, by_core: dict[int, ActionCounts]) -> None:
        layers = sorted({layer for counts in by_core.values() for layer, *_ in counts.counts} | {""})
        g.attrs["layer_names"] = np.array(layers, dtype=h5py.string_dtype())
        li = {name: i for i, name in enumerate(layers)}
        ci = {name: i for i, name in enumerate(COMPONENTS)}
        ai = {name: i for i, name in enumerate(ACTIONS)}
        rows = [(core, li[layer], ci[comp], ai[action], arg, n)
                for core, counts in sorted(by_core.items())
                for (layer, comp, action, arg), n in sorted(counts.counts.items()) if n]
        g.create_dataset("core_counts", data=np.array(rows, dtype=ENERGY_CORE_COUNT_DTYPE))

    def abort(self) -> None:
        """Close and remove the partial file (an interrupted or failed run)."""
        if self.finished:
            return
        try:
            file = getattr(self, "file", None)
            # the file is being discarded: HDF5 may complain while closing it after a failed write
            with contextlib.suppress(Exception):
                if file is not None and file.id.valid:
                    file.close()
        finally:
            self._out.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.finished:
            self.abort()
