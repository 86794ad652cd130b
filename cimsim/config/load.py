"""Load, override and validate scenario TOML files.

The loader is generic: it walks the dataclasses of `cimsim.config.schema` with
`dataclasses.fields` and `typing.get_type_hints`, so a field added to the schema
is loadable without touching this module. Every problem is an `InputError` with
a one-line message naming the file, the dotted key path, the bad value and what
is allowed.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import itertools
import json
import math
import os
import re
import stat
import textwrap
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cimsim.config.schema import AUTO, EnergyConfig, Scenario
from cimsim.energy.table import builtin_tables, load_table, resolve_table
from cimsim.errors import InputError

ENUMS: dict[str, tuple[str, ...]] = {
    "chip.clocking": ("timestep", "elastic"),
    "noc.topology": ("ideal", "mesh", "prism"),
    "functional.policy": ("off", "always", "on_failure"),
    "functional.weight_encoding": ("center_offset", "differential", "offset"),
    "functional.mode": ("batched", "per_group"),
    "functional.crossbar": ("raella", "pcm_pwm"),
    "functional.input_encoding": ("twos_complement", "split_sign"),
    "functional.weight_slicing": ("fixed", "adaptive"),
    "mapping.sram_method": ("iwap", "klip", "plip", "auto"),
    "mapping.fc_on": ("digital", "crossbar"),
    "mapping.replica_fit": ("split", "error", "assume"),
    "mapping.depthwise": ("crossbar", "digital"),
    "mapping.weights": ("stationary", "reload"),
    "mapping.residual_source": ("read_res", "adder_copy"),
    "chip.weight_device": ("rram", "pcm"),
    "dataflow.mode": ("regular", "speedup", "balanced"),
    "dram.model": ("bandwidth", "banks"),
    "dram.preset": ("ddr3_1600", "lpddr4_3200", "none"),
    "dram.page_policy": ("open", "closed"),
    "dram.scheduler": ("frfcfs", "fcfs"),
}
"""Allowed values of the enumerated string fields, by dotted key path."""

DRAM_PRESET_KEYS = tuple(f"dram.{k}" for k in ("banks", "row_bytes", "data_rate_mtps", "bus_bits", "t_rcd", "t_cl",
                                                 "t_rp", "t_burst"))
"""The banks model's keys that 0 fills from `dram.preset`."""

NON_NEGATIVE: frozenset[str] = frozenset(
    {"noc.ideal_hop_timesteps", "chip.partial_sum_timesteps", "run.seed", "noc.router_cycles",
     "noc.dram_row", "noc.dram_col", "mapping.max_cores",
     "mapping.depthwise_job_channels", "chip.weight_write_ns_per_row", *DRAM_PRESET_KEYS,
     "noise.column_sigma", "noise.pcm_program_sigma", "noise.pcm_read_sigma", "noise.pcm_drift_nu",
     "noise.pcm_drift_nu_sigma", "noise.time_since_program_s"}
)
"""Integer and float fields that may be 0; every other integer or float field must be > 0."""

AUTO_FIELDS: frozenset[str] = frozenset({"chip.array_rows", "chip.array_cols"})
"""Integer fields that may also be "auto" (stored as `AUTO`, resolved by `cimsim.mapping.sizing`)."""

INT_MAX = 2**31 - 1
"""Largest integer any field takes (the trace stores timesteps, cycles of a step and
counts as 32-bit integers; larger values would wrap or exhaust memory)."""

MAX_CORES = 2**15 - 1
"""Largest chip.array_rows x chip.array_cols (the trace stores core ids as 16-bit integers)."""

INT_LIMITS: dict[str, int] = {
    "chip.crossbar_rows": 65_536, "chip.crossbar_cols": 65_536, "chip.cycles_per_timestep": 1 << 24,
    "chip.mvm_cycles": 1 << 20, "chip.digital_cycles": 1 << 16,
    "chip.digital_ops_per_cycle": 1 << 20, "chip.weight_write_ns_per_row": 1 << 24,
    "chip.weight_write_bits_per_cycle": 1 << 20, "chip.digital_macs_per_cycle": 1 << 20, "chip.partial_sum_timesteps": 1 << 16,
    "functional.crossbar_cycle_cycles": 1 << 20, "functional.adc_bits": 32,
    "functional.pwm_steps_per_cycle": 1 << 10, "noc.link_cycles": 256,
    "noc.router_cycles": 1 << 16, "noc.buffer_depth_flits": 32_767, "noc.partial_sum_bits": 64,
    "noc.header_bits": 65_536, "noc.link_width_bits": 1 << 20, "noc.ideal_hop_timesteps": 1 << 16,
    "input.pixels_per_timestep": 1 << 20,
    "dram.channels": 1024, "dram.banks": 1024, "dram.row_bytes": 1 << 24, "dram.data_rate_mtps": 1 << 20,
    "dram.bus_bits": 1 << 16, "dram.t_rcd": 1 << 16, "dram.t_cl": 1 << 16, "dram.t_rp": 1 << 16,
    "dram.t_burst": 1 << 16, "dram.capacity_mib": 1 << 30,
}
"""Tighter maxima of integer fields whose products the simulator and its trace store in 32-bit
columns (a step's cycles, a link transfer's cycles, buffer occupancies in 16 bits)."""

FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "chip.clock_mhz": (1e-3, 1e6), "dram.bandwidth_gbps": (1e-6, 1e6), "dram.latency_ns": (1e-3, 1e9),
    "noise.column_sigma": (0.0, 10.0), "noise.pcm_program_sigma": (0.0, 10.0), "noise.pcm_read_sigma": (0.0, 10.0),
    "noise.pcm_drift_nu": (0.0, 1.0), "noise.pcm_drift_nu_sigma": (0.0, 1.0), "noise.time_since_program_s": (0.0, 1e10),
    "functional.error_budget": (1e-9, 255.0),
}
"""Allowed range of each float field (beyond them times and rates overflow to infinity or zero)."""

MAX_TOML_BYTES = 16 << 20
"""Largest scenario or model file read (16 MiB): bigger inputs are refused, not read."""

MAX_PRISM_LINKS = 1 << 19
"""Largest number of prism links (cores x noc.prism_k): each is a simulated link."""

LOADER_FIELDS: frozenset[str] = frozenset({"source", "overrides"})
"""Scenario fields set by the loader, never by the file or an override."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(parent: str, name: str) -> str:
    """Dotted key path of `name` inside `parent`, quoting non-bare keys as TOML does."""
    part = name if _BARE_KEY.fullmatch(name) else json.dumps(name)
    return f"{parent}.{part}" if parent else part


def _show(value: Any) -> str:
    """Render a value TOML-like on one line, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key('', str(k))} = {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return " ".join(str(value).split())


def _one_line(text: object) -> str:
    """Collapse all whitespace runs (newlines included) to single spaces."""
    return " ".join(str(text).split())


def _settable(cls: type, prefix: str) -> dict[str, dataclasses.Field[Any]]:
    """Fields of dataclass `cls` (at key path `prefix`) that a file may set."""
    return {
        f.name: f
        for f in dataclasses.fields(cls)
        if _key(prefix, f.name) not in LOADER_FIELDS
    }


def _known(cls: type, prefix: str) -> str:
    """The "(known keys in ...)" hint for an unknown key."""
    where = f"[{prefix}]" if prefix else "the top level"
    return f"(known keys in {where}: {', '.join(_settable(cls, prefix))})"


def _default(f: dataclasses.Field[Any]) -> Any:
    """A fresh copy of a field's default value."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return copy.deepcopy(f.default)


def field_docs(cls: type) -> dict[str, str]:
    """Map each documented field of dataclass `cls` to its docstring.

    The docstring is the string literal right after the field's annotated
    assignment in the class source (read with `ast`), cleaned with
    `inspect.cleandoc`. Fields without such a literal are left out.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _split_override(item: str) -> tuple[list[str], str]:
    """Split `KEY=VALUE` into the key's dotted parts and the value text."""
    key, sep, text = item.partition("=")
    try:  # let TOML parse the dotted key, so quoted parts ("a.b") work
        node = tomllib.loads(f"{key.strip()} = 0") if sep and key.strip() else None
    except tomllib.TOMLDecodeError:
        node = None
    if node is None:
        raise InputError(f"--set {item}: expected KEY=VALUE")
    parts: list[str] = []
    while isinstance(node, dict):
        (name, node), = node.items()
        parts.append(name)
    return parts, text.strip()


def _parse_value(text: str) -> Any:
    """Parse an override value as a TOML value, else take it as a plain string."""
    try:
        doc = tomllib.loads("v = " + text)
    except tomllib.TOMLDecodeError:
        return text
    return doc["v"] if set(doc) == {"v"} else text


def _apply_one(raw: dict[str, Any], item: str) -> str:
    """Apply one `KEY=VALUE` override to `raw` in place; return the canonical key path."""
    parts, text = _split_override(item)
    value = _parse_value(text)
    cls: type = Scenario
    node, path = raw, ""
    for i, name in enumerate(parts):
        fields = _settable(cls, path)
        full = _key(path, name)
        if name not in fields:
            raise InputError(f"--set {item}: unknown key '{full}' {_known(cls, path)}")
        tp = typing.get_type_hints(cls)[name]
        rest = parts[i + 1 :]
        if not rest:
            # A str field takes the text verbatim (so name=2024 is the name "2024").
            node[name] = text if tp is str and not isinstance(value, str) else value
            return full
        if dataclasses.is_dataclass(tp):
            child = node.setdefault(name, {})
        elif typing.get_origin(tp) is dict:
            child = node.setdefault(name, _default(fields[name]))
        else:
            raise InputError(f"--set {item}: '{full}' is not a table")
        if not isinstance(child, dict):
            raise InputError(f"--set {item}: '{full}' is not a table in the scenario file")
        if not dataclasses.is_dataclass(tp):
            sub = ".".join(rest)
            child[sub] = value
            return _key(full, sub)
        node, cls, path = child, typing.cast(type, tp), full
    raise AssertionError("unreachable")


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of the raw scenario dict with `KEY=VALUE` overrides applied.

    Keys are dotted paths checked against the schema (`chip.crossbar_rows=512`,
    `dataflow.layer_rates={conv1=2}`, or one entry of a dict field such as
    `dataflow.layer_rates.conv1=2`). A value is parsed as a TOML value, else
    taken as a plain string (a string field always takes the text verbatim).
    Values are not validated here; `load_scenario` validates them like file values.
    `raw` itself is left unchanged.
    """
    out = copy.deepcopy(raw)
    for item in overrides:
        _apply_one(out, item)
    return out


class _Checker:
    """Builds the dataclass tree from a raw dict, failing with one-line messages."""

    def __init__(self, label: str, from_set: Mapping[str, str]) -> None:
        self.label = label
        self.from_set = from_set

    def origin(self, path: str) -> str:
        """Say which `--set` supplied the value at `path`, if one did."""
        for key, item in reversed(list(self.from_set.items())):
            if path == key or path.startswith(key + ".") or key.startswith(path + "."):
                return f" (from --set {item})"
        return ""

    def fail(self, path: str, value: Any, why: str) -> NoReturn:
        """Raise the InputError for a bad value at `path`."""
        raise InputError(f"{self.label}: {path} = {_show(value)}{self.origin(path)}: {why}")

    def build(self, cls: type, raw: dict[str, Any], prefix: str) -> Any:
        """Instantiate dataclass `cls` from the table `raw` found at key path `prefix`."""
        fields = _settable(cls, prefix)
        for name in raw:
            path = _key(prefix, name)
            if path in LOADER_FIELDS:
                raise InputError(f"{self.label}: key '{path}' is set by the loader, not the file")
            if name not in fields:
                raise InputError(f"{self.label}: unknown key '{path}' {_known(cls, prefix)}")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            path = _key(prefix, name)
            if name in raw:
                kwargs[name] = self.value(hints[name], raw[name], path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                doc = field_docs(cls).get(name, "")
                hint = f" ({_one_line(doc)})" if doc else ""
                raise InputError(f"{self.label}: missing required key '{path}'{hint}")
        return cls(**kwargs)

    def value(self, tp: Any, value: Any, path: str) -> Any:
        """Check and convert one value of schema type `tp`."""
        if path in AUTO_FIELDS and value == "auto":
            return AUTO
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                self.fail(path, value, "must be a table")
            return self.build(typing.cast(type, tp), value, path)
        if typing.get_origin(tp) is dict:
            _, item_tp = typing.get_args(tp)
            if not isinstance(value, dict):
                self.fail(path, value, f"must be a table of name = {self.rule(item_tp, path)}")
            return {k: self.scalar(item_tp, v, _key(path, k), path) for k, v in value.items()}
        return self.scalar(tp, value, path, path)

    def rule(self, tp: Any, rule_path: str) -> str:
        """What a scalar of type `tp` at `rule_path` must be, in words."""
        if tp is bool:
            return "true or false"
        if tp is int:
            if rule_path in AUTO_FIELDS:
                return 'positive integer or "auto"'
            return "non-negative integer" if rule_path in NON_NEGATIVE else "positive integer"
        if tp is float:
            return "non-negative number" if rule_path in NON_NEGATIVE else "positive number"
        if tp is str:
            allowed = ENUMS.get(rule_path)
            return "one of " + ", ".join(json.dumps(a) for a in allowed) if allowed else "string"
        raise TypeError(f"unsupported schema type {tp!r} at {rule_path}")

    def scalar(self, tp: Any, value: Any, path: str, rule_path: str) -> Any:
        """Check one scalar; `rule_path` is the schema field whose rules apply."""
        rule = self.rule(tp, rule_path)
        article = "" if rule.startswith("one of") else "an " if rule[0] in "aeiou" else "a "
        why = f"must be {article}{rule}"
        is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
        if tp is bool:
            ok = isinstance(value, bool)
        elif tp is int:
            floor = 0 if rule_path in NON_NEGATIVE else 1
            ok = is_num and isinstance(value, int) and value >= floor
            top = INT_LIMITS.get(rule_path, INT_MAX)
            if ok and value > top:
                self.fail(path, value, f"{why}, at most {top:,}")
        elif tp is float:
            try:
                ok = is_num and math.isfinite(float(value)) and (value >= 0 if rule_path in NON_NEGATIVE else value > 0)
            except OverflowError:
                ok = False
            value = float(value) if ok else value
            low, high = FLOAT_RANGES.get(rule_path, (0.0, math.inf))
            if ok and not low <= value <= high:
                self.fail(path, value, f"{why} from {low:g} to {high:g}")
        else:
            allowed = ENUMS.get(rule_path)
            ok = isinstance(value, str) and (not allowed or value in allowed)
        if not ok:
            self.fail(path, value, why)
        return value


def read_limited(path: Path, what: str, limit: int = MAX_TOML_BYTES) -> bytes:
    """The bytes of `path`, refusing directories, anything but a regular file (a FIFO would block
    the read forever, `/dev/zero` never ends: both refused by their type before they are opened
    for reading), files larger than `limit` (by their size first, and read no further than that)
    and unusable names (NUL bytes, symlink loops, names too long), each with one `InputError` line."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            _not_regular(path, what, mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks, even if it became a FIFO
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                _not_regular(path, what, st.st_mode)
            if st.st_size > limit:
                raise InputError(f"{what} file {path}: {st.st_size:,} bytes, larger than {_size(limit)}, "
                                 "refusing to read it")
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file {path}: {exc.strerror or _one_line(exc)}") from None
    except ValueError as exc:  # a NUL byte in the name
        raise InputError(f"{what} file {_one_line(repr(str(path)))}: {_one_line(exc)}") from None
    if len(data) > limit:
        raise InputError(f"{what} file {path}: larger than {_size(limit)}, refusing to read it")
    return data


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit:,} bytes"


def _not_regular(path: Path, what: str, mode: int) -> NoReturn:
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    raise InputError(f"cannot read {what} file {path}: it is {kind}, expected a regular file")


def parse_toml(data: bytes, path: Path) -> dict[str, Any]:
    """Parse TOML text, mapping every failure (bad UTF-8, syntax, nesting too deep) to an InputError."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({_one_line(exc)})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: malformed TOML: {_one_line(exc)}") from None
    except RecursionError:
        raise InputError(f"{path}: malformed TOML: arrays or tables nested too deeply") from None


def _read(path: Path) -> dict[str, Any]:
    """Read and parse a scenario TOML file, mapping every failure to an InputError."""
    return parse_toml(read_limited(path, "scenario"), path)


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Load, override and validate a scenario TOML file.

    `overrides` are `KEY=VALUE` strings (see `apply_overrides`) applied before
    validation. `model` is resolved relative to the scenario file's directory
    and stored as an absolute path; `name` defaults to the file's stem; `source`
    is set to `path` as given and `overrides` to the overrides, in order. Raises
    `InputError` on any problem.
    """
    file = Path(path)
    raw = _read(file)
    from_set = {_apply_one(raw, item): item for item in overrides}
    checker = _Checker(str(file), from_set)
    scenario: Scenario = checker.build(Scenario, raw, "")
    _check_combinations(scenario, checker)
    try:
        resolved = (file.parent / scenario.model).resolve()
        is_file = resolved.is_file()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"{file}: model = {_show(scenario.model)}{checker.origin('model')}: {_one_line(exc)}") from None
    if not is_file:
        origin = checker.origin("model")
        raise InputError(
            f"{file}: model = {_show(scenario.model)}{origin}: file not found ({resolved})"
        )
    return dataclasses.replace(
        scenario, model=str(resolved), name=scenario.name or file.stem, source=str(file),
        overrides=tuple(overrides), energy=_check_energy(scenario, file, checker),
    )


def _check_energy(scenario: Scenario, file: Path, checker: _Checker) -> EnergyConfig:
    """Validate `[energy]`: the table must exist and load; a path is made absolute, like `model`."""
    energy = scenario.energy
    if not energy.table:
        if energy.enabled:
            checker.fail("energy.enabled", True, "needs energy.table (a builtin name or a table file)")
        return energy
    try:
        path = resolve_table(energy.table, file.parent)
        load_table(path)
    except InputError as exc:
        checker.fail("energy.table", energy.table, str(exc))
    if energy.table in builtin_tables():
        return energy
    return dataclasses.replace(energy, table=str(path))


def _check_combinations(scenario: Scenario, checker: _Checker) -> None:
    """Rules that span fields or dict keys, which the per-field checks cannot see."""
    chip = scenario.chip
    cores = chip.array_rows * chip.array_cols
    if cores > MAX_CORES:
        origin = checker.origin("chip.array_rows") or checker.origin("chip.array_cols")
        raise InputError(f"{checker.label}: chip.array_rows x chip.array_cols = {chip.array_rows} x "
                         f"{chip.array_cols} = {cores:,} cores{origin}: at most {MAX_CORES:,} cores")
    noc = scenario.noc
    links = cores * min(noc.prism_k, max(cores - 1, 1))
    if noc.topology == "prism" and links > MAX_PRISM_LINKS:
        checker.fail("noc.prism_k", noc.prism_k, f"{cores:,} cores x prism_k = {links:,} prism links, at most "
                     f"{MAX_PRISM_LINKS:,}")
    _check_dram(scenario, checker)
    for key in scenario.dataflow.speedup_rates:
        if not (key.isascii() and key.isdigit() and key == str(int(key)) and int(key) > 0):
            path = _key("dataflow.speedup_rates", key)
            checker.fail(path, scenario.dataflow.speedup_rates[key],
                         'the key must be a number of output channels (a positive integer without leading zeros, '
                         'e.g. "16" = 4)')


def _check_dram(scenario: Scenario, checker: _Checker) -> None:
    """The banks model's keys must describe a possible DRAM (`cimsim.hw.dram_banks.bank_problem`)."""
    if scenario.dram.model != "banks":
        return
    from cimsim.hw.dram_banks import bank_problem  # the presets live with the model

    problem = bank_problem(scenario.dram)
    if problem is not None:
        checker.fail(*problem)


def scenario_to_dict(s: Scenario) -> dict[str, Any]:
    """The scenario as a plain, JSON-able dict (tables become nested dicts, `overrides` a list)."""
    return {**dataclasses.asdict(s), "overrides": list(s.overrides)}
