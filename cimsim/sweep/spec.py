"""Sweep files: parsing, validation and expansion into points (no Dask, no simulation).

A sweep file names a base scenario and the values to give its keys. The points are the
Cartesian product of *factors*, each a list of partial assignments (key -> value):

- every `[axes]` key is a factor of its own (a grid over all axes);
- every `[[zip]]` table is one factor: its lists, all of one length, vary together;
- `[[points]]` is one factor: its tables are explicit assignments;
- `[random]` is one factor: `samples` assignments drawn with numpy's Generator from `seed`.

`[set]` holds keys set at every point. A key may appear in one factor (or `[set]`) only.
Every point is loaded with `cimsim.config.load_scenario(base, overrides)`, so an unknown
key or a value of the wrong type is the loader's own one-line error, prefixed with the
sweep file and the point. `scenarios/sweeps/resnet32_mesh.toml` shows every form.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.config import Scenario, load_scenario, scenario_to_dict
from cimsim.config.load import _key as toml_key
from cimsim.config.load import parse_toml, read_limited
from cimsim.errors import InputError

TOP_KEYS = ("base", "name", "description", "set", "axes", "zip", "points", "random", "sweep")
"""Keys a sweep file may have at its top level."""
SWEEP_KEYS = ("scheduler", "workers", "retries", "connect_timeout_s", "no_worker_timeout_s", "trace")
"""Keys of the `[sweep]` table (how to run; none of them changes a point)."""
RANDOM_KEYS = ("samples", "seed", "axes")
"""Keys of the `[random]` table."""
DISTRIBUTIONS = ("uniform", "log_uniform", "integers")
"""`[random.axes]` value tables: {uniform = [lo, hi]}, {log_uniform = [lo, hi]}, {integers = [lo, hi]}."""
MAX_POINTS = 20_000
"""Largest number of points a sweep file may expand to."""
MAX_FILE_BYTES = 1 << 20
"""Largest sweep file read."""
MAX_WORKERS = 1024
"""Largest number of LocalCluster worker processes (`[sweep] workers` and `--workers`)."""


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (the `[sweep]` table; command-line options override it)."""

    scheduler: str = ""
    """Address of an existing Dask scheduler (tcp://HOST:PORT); empty: a LocalCluster."""
    workers: int = 0
    """LocalCluster worker processes (one thread each); 0: one per core."""
    retries: int = 2
    """Times Dask reruns a point whose task raised (a killed worker process is rescheduled
    by the scheduler on its own, up to distributed's allowed-failures)."""
    connect_timeout_s: float = 10.0
    """Seconds to wait for the scheduler to answer before giving up (exit code 2)."""
    no_worker_timeout_s: float = 600.0
    """Seconds a sweep waits while its cluster has no worker before giving up (exit code 3,
    with the command that resumes it)."""
    trace: bool = False
    """Write each point's HDF5 trace (events level) next to its summary."""


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its coordinates, the overrides that make it, its scenario."""

    index: int
    """Position in the expansion order."""
    values: dict[str, Any]
    """Swept key (dotted) -> value at this point."""
    overrides: tuple[str, ...]
    """`[set]` then the point's values, as `KEY=VALUE` strings for `load_scenario`."""
    scenario: Scenario
    key: str
    """Hash of the resolved scenario (16 hex digits): the point's directory name."""


@dataclass(frozen=True)
class Sweep:
    """A validated, expanded sweep file."""

    path: Path
    name: str
    description: str
    base: Path
    fixed: dict[str, Any]
    """`[set]`: dotted key -> value at every point."""
    keys: tuple[str, ...]
    """Swept keys (dotted), in the order of the file: the table's key columns."""
    points: tuple[Point, ...]
    options: SweepOptions


def toml_value(value: Any) -> str:
    """`value` as TOML text (for a `KEY=VALUE` override)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key('', str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def override(key: str, value: Any) -> str:
    """The `KEY=VALUE` override setting dotted `key` to `value` (each part quoted as TOML needs)."""
    path = ""
    for part in key.split("."):
        path = toml_key(path, part)
    return f"{path}={toml_value(value)}"


def column_value(value: Any) -> Any:
    """A point's value as a table cell: scalars as they are, tables and lists as JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


class _Reader:
    """Reads one sweep file, failing with one-line messages that name it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, where: str, why: str) -> InputError:
        """The InputError for `where` in this file."""
        return InputError(f"{self.path}: {where}: {why}" if where else f"{self.path}: {why}")

    def table(self, raw: dict[str, Any], key: str) -> dict[str, Any]:
        """`raw[key]` as a table ({} if absent)."""
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return value

    def tables(self, raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
        """`raw[key]` as an array of tables ([] if absent)."""
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise self.error(key, f"must be an array of tables ([[{key}]])")
        return value

    def schema_flatten(self, table: dict[str, Any], where: str) -> dict[str, Any]:
        """Dotted key -> value, descending only into the scenario's sub-tables ([chip], ...), so a
        table-valued key such as dataflow.layer_rates = {conv1 = 2} stays one value."""
        out: dict[str, Any] = {}

        def walk(node: dict[str, Any], prefix: str, cls: type | None) -> None:
            hints = typing.get_type_hints(cls) if cls is not None else {}
            for name, value in node.items():
                key = f"{prefix}.{name}" if prefix else name
                tp = hints.get(name)
                if isinstance(value, dict) and tp is not None and dataclasses.is_dataclass(tp):
                    walk(value, key, typing.cast(type, tp))
                else:
                    out[key] = value

        walk(table, "", Scenario)
        if not out and table:
            raise self.error(where, "has no keys")
        return out

    def list_flatten(self, table: dict[str, Any], where: str) -> dict[str, list[Any]]:
        """Dotted key -> list of values, descending into tables until a list."""
        out: dict[str, list[Any]] = {}

        def walk(node: dict[str, Any], prefix: str) -> None:
            for name, value in node.items():
                key = f"{prefix}.{name}" if prefix else name
                if isinstance(value, dict) and value:
                    walk(value, key)
                elif isinstance(value, list):
                    if not value:
                        raise self.error(f"{where}.{key}", "empty list: give at least one value")
                    out[key] = value
                else:
                    raise self.error(f"{where}.{key}", f"must be a list of values, not {toml_value(value)}")

        walk(table, "")
        return out


def _random_factor(reader: _Reader, raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The `[random]` factor: `samples` assignments drawn from `[random.axes]` with `seed`."""
    unknown = [k for k in raw if k not in RANDOM_KEYS]
    if unknown:
        raise reader.error(f"random.{unknown[0]}", f"unknown key (known keys in [random]: {', '.join(RANDOM_KEYS)})")
    samples, seed = raw.get("samples"), raw.get("seed", 0)
    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= MAX_POINTS:
        raise reader.error("random.samples", f"must be an integer from 1 to {MAX_POINTS:,}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise reader.error("random.seed", "must be a non-negative integer")
    axes = reader.table(raw, "axes")
    if not axes:
        raise reader.error("random.axes", "give at least one key = [values] or key = {uniform = [lo, hi]}")
    dists: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}.{name}" if prefix else name
            where = f"random.axes.{key}"
            if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS:
                (kind, bounds), = value.items()
                if (not isinstance(bounds, list) or len(bounds) != 2
                        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                        or not bounds[0] <= bounds[1] or not all(math.isfinite(b) for b in bounds)):
                    raise reader.error(where, f"{kind} needs [low, high] with low <= high")
                if kind == "log_uniform" and bounds[0] <= 0:
                    raise reader.error(where, "log_uniform needs low > 0")
                if kind == "integers" and not all(isinstance(b, int) for b in bounds):
                    raise reader.error(where, "integers needs integer bounds")
                dists[key] = (kind, bounds)
            elif isinstance(value, dict) and value:
                walk(value, key)
            elif isinstance(value, list) and value:
                dists[key] = ("choice", value)
            else:
                raise reader.error(where, "must be a non-empty list of values or {uniform|log_uniform|integers = "
                                          "[low, high]}")

    walk(axes, "")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):
        point: dict[str, Any] = {}
        for key, (kind, arg) in dists.items():
            if kind == "choice":
                point[key] = arg[int(rng.integers(len(arg)))]
            elif kind == "uniform":
                point[key] = float(rng.uniform(arg[0], arg[1]))
            elif kind == "log_uniform":
                point[key] = float(math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))))
            else:
                point[key] = int(rng.integers(arg[0], arg[1] + 1))
        out.append(point)
    return out


def _options(reader: _Reader, raw: dict[str, Any]) -> SweepOptions:
    """The `[sweep]` table."""
    for k in raw:
        if k not in SWEEP_KEYS:
            raise reader.error(f"sweep.{k}", f"unknown key (known keys in [sweep]: {', '.join(SWEEP_KEYS)})")
    opts = SweepOptions()
    checks: dict[str, tuple[type, str]] = {"scheduler": (str, "a string (tcp://HOST:PORT)"),
                                           "workers": (int, f"an integer from 0 (one per core) to {MAX_WORKERS:,}"),
                                           "retries": (int, "a non-negative integer"),
                                           "connect_timeout_s": (float, "a positive number"),
                                           "no_worker_timeout_s": (float, "a positive number"),
                                           "trace": (bool, "true or false")}
    values: dict[str, Any] = {}
    for k, v in raw.items():
        tp, rule = checks[k]
        ok = (isinstance(v, bool) if tp is bool else isinstance(v, str) if tp is str
              else isinstance(v, (int, float)) and not isinstance(v, bool) and (
                  isinstance(v, int) and v >= 0 if tp is int else math.isfinite(v) and v > 0))
        if k == "workers" and ok:
            ok = v <= MAX_WORKERS
        if not ok:
            raise reader.error(f"sweep.{k}", f"{toml_value(v)}: must be {rule}")
        values[k] = float(v) if tp is float else v
    return dataclasses.replace(opts, **values)


@lru_cache(maxsize=64)
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def scenario_key(scenario: Scenario) -> str:
    """Hash of what a scenario simulates (16 hex digits): the resolved scenario without its
    provenance (`source`, `overrides`), the model and a table file by content, not path."""
    d = scenario_to_dict(scenario)
    d.pop("source")
    d.pop("overrides")
    d["model"] = _file_digest(scenario.model)
    table = d["energy"]["table"]
    if table and Path(table).is_absolute() and Path(table).is_file():
        d["energy"]["table"] = _file_digest(table)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_sweep(path: str | Path) -> Sweep:
    """Read, validate and expand a sweep file; raises InputError (one line) on any problem."""
    file = Path(path)
    raw = parse_toml(read_limited(file, "sweep", MAX_FILE_BYTES), file)
    reader = _Reader(file)
    for k in raw:
        if k not in TOP_KEYS:
            raise reader.error("", f"unknown key '{k}' (known keys: {', '.join(TOP_KEYS)})")
    base_text = raw.get("base")
    if not isinstance(base_text, str) or not base_text:
        raise reader.error("base", "required: the path of the base scenario, relative to the sweep file")
    base = (file.parent / base_text).resolve()
    if not base.is_file():
        why = "not a regular file" if base.exists() else "scenario file not found"
        raise reader.error("base", f"{base_text!r}: {why} ({base})")
    for k in ("name", "description"):
        if not isinstance(raw.get(k, ""), str):
            raise reader.error(k, "must be a string")
    fixed = reader.schema_flatten(reader.table(raw, "set"), "set")
    factors: list[tuple[str, list[dict[str, Any]]]] = []
    for key, axis in reader.list_flatten(reader.table(raw, "axes"), "axes").items():
        factors.append((f"axes.{key}", [{key: v} for v in axis]))
    for i, group in enumerate(reader.tables(raw, "zip")):
        lists = reader.list_flatten(group, f"zip[{i}]")
        if not lists:
            raise reader.error(f"zip[{i}]", "has no keys")
        lengths = {k: len(v) for k, v in lists.items()}
        if len(set(lengths.values())) > 1:
            raise reader.error(f"zip[{i}]", "lists of different lengths: "
                                            + ", ".join(f"{k} has {n}" for k, n in lengths.items()))
        n = next(iter(lengths.values()))
        factors.append((f"zip[{i}]", [{k: v[j] for k, v in lists.items()} for j in range(n)]))
    explicit = reader.tables(raw, "points")
    if explicit:
        factors.append(("points", [reader.schema_flatten(p, f"points[{i}]") for i, p in enumerate(explicit)]))
    if "random" in raw:
        factors.append(("random", _random_factor(reader, reader.table(raw, "random"))))
    options = _options(reader, reader.table(raw, "sweep"))
    owner: dict[str, str] = dict.fromkeys(fixed, "set")
    keys: list[str] = []
    for where, factor in factors:
        for k in dict.fromkeys(k for assignment in factor for k in assignment):
            if k in owner:
                raise reader.error(where, f"key '{k}' is also given in {owner[k]}: a key may be set in one place")
            owner[k] = where
            keys.append(k)
    count = math.prod(len(f) for _, f in factors)
    if count > MAX_POINTS:
        raise reader.error("", f"{count:,} points: at most {MAX_POINTS:,}")
    fixed_overrides = [override(k, v) for k, v in fixed.items()]
    points: list[Point] = []
    seen: dict[str, int] = {}
    for index, combo in enumerate(itertools.product(*(f for _, f in factors))):
        values = {k: v for assignment in combo for k, v in assignment.items()}
        overrides = (*fixed_overrides, *(override(k, v) for k, v in values.items()))
        try:
            scenario = load_scenario(base, overrides)
        except InputError as exc:
            where = ", ".join(f"{k} = {toml_value(v)}" for k, v in values.items())
            raise reader.error(f"point {index} ({where})" if where else "set", str(exc)) from None
        key = scenario_key(scenario)
        if key in seen:
            raise reader.error(f"point {index}", f"simulates the same scenario as point {seen[key]} "
                                                 "(a repeated value?)")
        seen[key] = index
        points.append(Point(index, values, overrides, scenario, key))
    name = raw.get("name") or file.stem
    return Sweep(file, name, raw.get("description", ""), base, fixed, tuple(keys), tuple(points), options)
