"""Energy tables: per `component.action` energy in joules, per component static power and area.

A table is a TOML file in SI units, the unit in every key's name (as in the scenario):

    name = "example"
    description = "what it models"
    uncharged = ["digital.*", "dac.drive"]   # performed but knowingly not charged (no source)

    [dfc]
    static_power_W = 1.06e-4      # leakage: charged for every powered cycle of each instance
    clocked_power_W = 5.65e-3     # clock tree and flip-flops: also charged for every powered cycle
    step.energy_J = 2.18e-10      # combinational switching of one active timestep

    [sram]
    static_power_W = 2.155e-5
    area_m2 = 9.1e-9              # per instance
    word_read.energy_J = 2.58e-11 # constant energy per action

    [crossbar.mvm]                # affine in the action's argument (here: cells driven):
    energy_J = 0.0                #   E(a) = energy_J + energy_J_per_argument * a
    energy_J_per_argument = 7.0e-15

    [adc.convert]                 # or one value per argument (here: ADC bits); a run that
    energy_J_by_argument = { 7 = 1.29e-12, 8 = 2.58e-12 }   # uses another one is an error

Unknown components, actions or keys, negative or non-finite values, a key without an SI
unit (`energy = ...`, `energy_pJ = ...`) and wrong types are one-line `InputError`s naming
the file and the key (exit code 2 at the CLI).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cimsim.energy.actions import ALLOWED, ARGUMENTS, Action, Component, action_name
from cimsim.errors import InputError

MAX_TABLE_BYTES = 1 << 20
"""Largest table file read (1 MiB); a table is a few kilobytes."""

BUILTIN_DIR = "tables"
"""Directory of the shipped tables inside the `cimsim.energy` package."""

_UNIT_WORDS = ("energy", "static_power", "clocked_power", "area")
_SI = {"energy": "energy_J", "static_power": "static_power_W", "clocked_power": "clocked_power_W", "area": "area_m2"}


@dataclass(frozen=True)
class Entry:
    """The energy of one `component.action`, as a function of the action's argument."""

    energy_J: float = 0.0
    """Constant part (J)."""
    per_argument_J: float = 0.0
    """Slope in the argument (J per unit of argument)."""
    by_argument: Mapping[int, float] | None = None
    """One energy per argument value (J); replaces the affine form when given."""

    def energy(self, argument: int) -> float | None:
        """Joules of one action with `argument` (None: the table has no value for it)."""
        if self.by_argument is not None:
            return self.by_argument.get(argument)
        return self.energy_J + self.per_argument_J * argument


@dataclass(frozen=True)
class ComponentSpec:
    """Static and clocked power and area of one instance of a component."""

    static_power_W: float = 0.0
    """Leakage: power while powered, whatever it does (W); 0 when the table gives none."""
    clocked_power_W: float = 0.0
    """Power of the clock tree and the clocked (sequential) elements, drawn every cycle the instance is
    powered whether or not it works (W): a component without clock gating; 0 when the table gives none."""
    area_m2: float | None = None
    """Area of one instance (m²); None when the table gives none."""


@dataclass(frozen=True)
class EnergyTable:
    """A loaded, validated energy table."""

    name: str
    source: str
    """The file it was loaded from (named in every error about it)."""
    description: str = ""
    components: Mapping[Component, ComponentSpec] = field(default_factory=dict)
    actions: Mapping[tuple[Component, Action], Entry] = field(default_factory=dict)
    uncharged: frozenset[tuple[Component, Action]] = frozenset()
    """Actions the table knowingly does not charge (no published value); reported with their counts."""

    def energy(self, component: Component, action: Action, argument: int = 0) -> float | None:
        """Joules of one action; None if it is uncharged; InputError if the table lacks it."""
        entry = self.actions.get((component, action))
        if entry is None:
            if (component, action) in self.uncharged:
                return None
            raise InputError(f"{self.source}: no entry '{component}.{action}' for an action the chip performed "
                             f"({action_name(component, action, argument)})")
        value = entry.energy(argument)
        if value is None:
            raise InputError(f"{self.source}: no entry '{component}.{action}.energy_J_by_argument.{argument}' for "
                             f"an action the chip performed ({action_name(component, action, argument)})")
        return value

    def with_energy(self, component: Component, action: Action, entry: Entry) -> EnergyTable:
        """A copy with one action's entry replaced (for sensitivity studies and tests)."""
        actions = dict(self.actions)
        actions[(component, action)] = entry
        return EnergyTable(self.name, self.source, self.description, self.components, actions,
                           self.uncharged - {(component, action)})


def builtin_tables() -> list[str]:
    """Names of the shipped tables (`energy.table = "<name>"`)."""
    root = resources.files("cimsim.energy") / BUILTIN_DIR
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def builtin_path(name: str) -> Path:
    """Path of a shipped table."""
    return Path(str(resources.files("cimsim.energy") / BUILTIN_DIR / f"{name}.toml"))


def resolve_table(spec: str, base: Path | None = None) -> Path:
    """The file `energy.table = spec` names: a builtin name, or a path relative to `base`.

    A spec without a path separator and without `.toml` is a builtin name. Raises
    InputError (naming the builtin tables) if neither exists.
    """
    if "/" not in spec and "\\" not in spec and not spec.endswith(".toml"):
        if spec in builtin_tables():
            return builtin_path(spec)
        raise InputError(f"unknown energy table {spec!r} (builtin: {', '.join(builtin_tables())}; "
                         "or give a path to a .toml file)")
    path = Path(spec) if base is None else base / spec
    if not path.is_file():
        raise InputError(f"energy table file not found: {path}")
    return path.resolve()


def load_table(path: str | Path) -> EnergyTable:
    """Read and validate an energy table TOML file (at most MAX_TABLE_BYTES)."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = fh.read(MAX_TABLE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"energy table file not found: {file}") from None
    except OSError as exc:
        raise InputError(f"cannot read energy table {file}: {exc.strerror}") from None
    if len(data) > MAX_TABLE_BYTES:
        raise InputError(f"{file}: larger than {MAX_TABLE_BYTES:,} bytes; not an energy table")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{file}: malformed TOML: {' '.join(str(exc).split())}") from None
    return table_from_dict(raw, str(file))


def table_from_dict(raw: Mapping[str, Any], source: str) -> EnergyTable:
    """Validate a parsed table (see the module docstring); `source` names it in errors."""
    return _Parser(source).table(raw)


class _Parser:
    """Builds an EnergyTable from a parsed TOML dict, failing with one-line messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, why: str) -> InputError:
        """The InputError for a problem at dotted `key`."""
        return InputError(f"{self.source}: {key}: {why}")

    def table(self, raw: Mapping[str, Any]) -> EnergyTable:
        """The whole table."""
        name = self.text(raw, "name", required=False) or Path(self.source).stem
        description = self.text(raw, "description", required=False)
        components: dict[Component, ComponentSpec] = {}
        actions: dict[tuple[Component, Action], Entry] = {}
        known = ", ".join(c.value for c in Component)
        for key, value in raw.items():
            if key in ("name", "description", "uncharged"):
                continue
            if key not in Component.__members__.values():
                raise self.fail(key, f"unknown component (known: {known}; top-level keys: name, description, "
                                     "uncharged)")
            if not isinstance(value, dict):
                raise self.fail(key, "must be a table of static_power_W, clocked_power_W, area_m2 and actions")
            comp = Component(key)
            components[comp] = self.component(comp, value, actions)
        uncharged = self.uncharged(raw.get("uncharged", []))
        both = sorted(f"{c}.{a}" for c, a in uncharged & set(actions))
        if both:
            raise self.fail("uncharged", f"{both[0]} is both charged and listed as uncharged")
        return EnergyTable(name, self.source, description, components, actions, frozenset(uncharged))

    def text(self, raw: Mapping[str, Any], key: str, required: bool) -> str:
        """An optional string field."""
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def number(self, key: str, value: Any) -> float:
        """A finite, non-negative number."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be finite, got {value!r}")
        if value < 0:
            raise self.fail(key, f"must not be negative, got {value!r}")
        return float(value)

    def unit_check(self, key: str, name: str) -> None:
        """Fail on a physical quantity written without its SI unit."""
        for word in _UNIT_WORDS:
            if name == word or (name.startswith(word + "_") and not name.startswith(_SI[word])):
                raise self.fail(key, f"missing or non-SI unit: write {_SI[word]} "
                                     "(tables are in SI units: J, W, m2)")

    def component(self, comp: Component, raw: Mapping[str, Any],
                  actions: dict[tuple[Component, Action], Entry]) -> ComponentSpec:
        """One component's table: static and clocked power, area and its actions."""
        static, clocked, area = 0.0, 0.0, None
        for name, value in raw.items():
            key = f"{comp}.{name}"
            if name == "static_power_W":
                static = self.number(key, value)
            elif name == "clocked_power_W":
                clocked = self.number(key, value)
            elif name == "area_m2":
                area = self.number(key, value)
            elif name in Action.__members__.values() and Action(name) in ALLOWED[comp]:
                if not isinstance(value, dict):
                    raise self.fail(key, "must be a table (energy_J = ..., energy_J_per_argument = ..., or "
                                         "energy_J_by_argument = {...})")
                actions[(comp, Action(name))] = self.entry(comp, Action(name), value)
            else:
                self.unit_check(key, name)
                own = ", ".join(sorted(ALLOWED[comp])) or "none"
                raise self.fail(key, f"unknown key (a component takes static_power_W, clocked_power_W, area_m2 "
                                     f"and its actions: {own})")
        return ComponentSpec(static_power_W=static, clocked_power_W=clocked, area_m2=area)

    def entry(self, comp: Component, action: Action, raw: Mapping[str, Any]) -> Entry:
        """One action's energy."""
        base = f"{comp}.{action}"
        const = slope = 0.0
        by_arg: dict[int, float] | None = None
        for name, value in raw.items():
            key = f"{base}.{name}"
            if name == "energy_J":
                const = self.number(key, value)
            elif name == "energy_J_per_argument":
                slope = self.number(key, value)
            elif name == "energy_J_by_argument":
                by_arg = self.by_argument(key, value)
            else:
                self.unit_check(key, name)
                raise self.fail(key, "unknown key (an action takes energy_J, energy_J_per_argument or "
                                     "energy_J_by_argument)")
        if not raw:
            raise self.fail(base, "no energy given (energy_J, energy_J_per_argument or energy_J_by_argument)")
        needs_arg = slope or by_arg is not None
        if needs_arg and action not in ARGUMENTS:
            raise self.fail(base, f"{action} takes no argument, so only energy_J applies")
        if by_arg is not None and ("energy_J" in raw or "energy_J_per_argument" in raw):
            raise self.fail(base, "energy_J_by_argument excludes energy_J and energy_J_per_argument")
        return Entry(const, slope, by_arg)

    def by_argument(self, key: str, value: Any) -> dict[int, float]:
        """An `{argument = energy}` table with non-negative integer keys."""
        if not isinstance(value, dict) or not value:
            raise self.fail(key, "must be a non-empty table of argument = energy_J")
        out: dict[int, float] = {}
        for arg, energy in value.items():
            if not (arg.isascii() and arg.isdigit()):
                raise self.fail(f"{key}.{arg}", "argument must be a non-negative integer")
            out[int(arg)] = self.number(f"{key}.{arg}", energy)
        return out

    def uncharged(self, value: Any) -> set[tuple[Component, Action]]:
        """The `uncharged` list: `component.action` or `component.*`."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("uncharged", "must be a list of \"component.action\" strings")
        out: set[tuple[Component, Action]] = set()
        for item in value:
            comp_name, _, act_name = item.partition(".")
            if comp_name not in Component.__members__.values():
                raise self.fail("uncharged", f"{item!r}: unknown component")
            comp = Component(comp_name)
            if act_name == "*":
                out |= {(comp, a) for a in ALLOWED[comp]}
            elif act_name in Action.__members__.values() and Action(act_name) in ALLOWED[comp]:
                out.add((comp, Action(act_name)))
            else:
                raise self.fail("uncharged", f"{item!r}: unknown action of {comp} "
                                             f"(its actions: {', '.join(sorted(ALLOWED[comp])) or 'none'})")
        return out
