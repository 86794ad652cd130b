"""The typed vocabulary of energy-relevant actions, and a cheap accumulator of their counts.

The timing code never knows energies (STYLE 8): components only count what they did, as
`(layer, component, action, argument)` keys, and the time each component was powered.
`cimsim.energy.model` turns the counts into joules with a table afterwards.

Every action has at most one integer argument, whose meaning the action fixes
(`ARGUMENTS`): the ADC's resolution in bits, a link's length in core pitches, the cells
an MVM drives. Actions without one use argument 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from cimsim.errors import InputError


class Component(StrEnum):
    """The kinds of hardware that perform actions or burn static power."""

    SRAM = "sram"
    """A core's input SRAM (Dazzi Fig. 1C), or any other word-addressed buffer."""
    DFC = "dfc"
    """A core's dataflow controller (Dazzi's Algorithm 1 logic, pointers and buffers)."""
    CROSSBAR = "crossbar"
    """The analog array of devices (PCM, ReRAM) computing matrix-vector products."""
    DAC = "dac"
    """The row input drivers: Dazzi's pulse-width modulator, RAELLA's pulse-train DAC."""
    ADC = "adc"
    """The column analog-to-digital converters."""
    DIGITAL = "digital"
    """A core's digital processor (requantisation, ReLU, adds, pooling, FC)."""
    ROUTER = "router"
    """A NoC router."""
    LINK = "link"
    """A NoC or point-to-point link between cores."""
    DRAM = "dram"
    """The off-chip DRAM channel."""
    CORE = "core"
    """A whole core, for tables that give only core-level static power or area."""


class Action(StrEnum):
    """What a component did once (see `ALLOWED` for which component does which)."""

    WORD_WRITE = "word_write"
    """One SRAM word written."""
    WORD_READ = "word_read"
    """One SRAM word read."""
    MVM = "mvm"
    """One crossbar matrix-vector multiplication, all its input slices (argument: cells driven)."""
    CYCLE = "cycle"
    """One crossbar cycle: one input slice through the array (argument: cells driven)."""
    PULSE = "pulse"
    """One input pulse through one crossbar cell (count: pulses x cells, data-dependent)."""
    PROGRAM = "program"
    """One crossbar device written with its weight (a reloading segment's programming)."""
    DRIVE = "drive"
    """One row driven with one input (slice) by the DAC / PWM (argument: bits of the slice)."""
    CONVERT = "convert"
    """One analog-to-digital conversion of a column (argument: ADC resolution in bits)."""
    REQUANTISE = "requantise"
    """One output value scaled, shifted and clipped back to 8 bits (batch-norm folded in)."""
    RELU = "relu"
    """One ReLU on one value."""
    ADD = "add"
    """One addition of two values: a residual add, or a partial sum of a split layer."""
    POOL = "pool"
    """One value accumulated into a pooling window."""
    FC_MAC = "fc_mac"
    """One multiply-accumulate of a fully connected layer run on the digital processor."""
    DW_MAC = "dw_mac"
    """One multiply-accumulate of a depthwise convolution run on the digital processor."""
    BIT_HOP = "bit_hop"
    """One bit carried over one link (argument: the link's length in core pitches)."""
    TRAVERSAL = "traversal"
    """One flit through one router (route, arbitrate, switch)."""
    BYTE_READ = "byte_read"
    """One byte read from DRAM."""
    BYTE_WRITE = "byte_write"
    """One byte written to DRAM."""
    STEP = "step"
    """One timestep in which a core's dataflow controller worked: it computed (fired an MVM or a digital
    step), so its combinational logic (conditions, address generation) switched."""


ALLOWED: Mapping[Component, frozenset[Action]] = {
    Component.SRAM: frozenset({Action.WORD_WRITE, Action.WORD_READ}),
    Component.DFC: frozenset({Action.STEP}),
    Component.CROSSBAR: frozenset({Action.MVM, Action.CYCLE, Action.PULSE, Action.PROGRAM}),
    Component.DAC: frozenset({Action.DRIVE}),
    Component.ADC: frozenset({Action.CONVERT}),
    Component.DIGITAL: frozenset({Action.REQUANTISE, Action.RELU, Action.ADD, Action.POOL, Action.FC_MAC,
                                  Action.DW_MAC}),
    Component.ROUTER: frozenset({Action.TRAVERSAL}),
    Component.LINK: frozenset({Action.BIT_HOP}),
    Component.DRAM: frozenset({Action.BYTE_READ, Action.BYTE_WRITE}),
    Component.CORE: frozenset(),
}
"""The actions each component performs (the core only burns static and clocked power)."""

ARGUMENTS: Mapping[Action, str] = {
    Action.MVM: "cells",
    Action.CYCLE: "cells",
    Action.DRIVE: "bits",
    Action.CONVERT: "bits",
    Action.BIT_HOP: "length",
}
"""The name of each action's argument (Accelergy's argument name on export); others take 0."""

CountKey = tuple[str, Component, Action, int]
"""(layer or "", component, action, argument)."""
PoweredKey = tuple[str, Component, str]
"""(layer or "", component, instance name or "")."""


def action_name(component: Component, action: Action, argument: int = 0) -> str:
    """`component.action`, with `[name=argument]` for actions that take one: `adc.convert[bits=7]`."""
    arg = ARGUMENTS.get(action)
    return f"{component}.{action}" + (f"[{arg}={argument}]" if arg else "")


def check_pair(component: Component, action: Action, where: str) -> None:
    """Raise InputError unless `component` performs `action`."""
    if action not in ALLOWED[component]:
        known = ", ".join(sorted(ALLOWED[component])) or "none (static power only)"
        raise InputError(f"{where}: {component} does not perform '{action}' (its actions: {known})")


class ActionCounts:
    """Counts of actions, and powered cycles, as plain dict increments.

    `counts[(layer, component, action, argument)]` is how often it happened;
    `powered[(layer, component, instance)]` how many clock cycles that instance was powered
    (static power is charged on it). The layer is "" where an action belongs to none (a
    router, the DRAM). `add` does no validation (it is on the hot path); `check` and the
    energy model validate every key once.
    """

    __slots__ = ("counts", "powered")

    def __init__(self) -> None:
        self.counts: dict[CountKey, int] = {}
        self.powered: dict[PoweredKey, int] = {}

    def add(self, component: Component, action: Action, n: int = 1, argument: int = 0, layer: str = "") -> None:
        """Count `n` more `action`s of `component` (with `argument`) for `layer`."""
        key = (layer, component, action, argument)
        counts = self.counts
        counts[key] = counts.get(key, 0) + n

    def add_key(self, key: CountKey, n: int = 1) -> None:
        """`add` with a key the caller built once (the cheapest form for a hot loop)."""
        counts = self.counts
        counts[key] = counts.get(key, 0) + n

    def add_powered(self, component: Component, cycles: int, instance: str = "", layer: str = "") -> None:
        """Record `cycles` more powered clock cycles of one instance of `component`."""
        key = (layer, component, instance)
        self.powered[key] = self.powered.get(key, 0) + cycles

    def merge(self, other: ActionCounts) -> ActionCounts:
        """Add `other`'s counts and powered cycles into this one; return self."""
        for ck, n in other.counts.items():
            self.counts[ck] = self.counts.get(ck, 0) + n
        for pk, c in other.powered.items():
            self.powered[pk] = self.powered.get(pk, 0) + c
        return self

    def copy(self) -> ActionCounts:
        """An independent copy (a snapshot, e.g. at an image's completion)."""
        out = ActionCounts()
        out.counts = dict(self.counts)
        out.powered = dict(self.powered)
        return out

    def minus(self, earlier: ActionCounts) -> ActionCounts:
        """What happened since the snapshot `earlier` (a window between two moments of a run)."""
        out = ActionCounts()
        for ck, n in self.counts.items():
            d = n - earlier.counts.get(ck, 0)
            if d:
                out.counts[ck] = d
        for pk, c in self.powered.items():
            d = c - earlier.powered.get(pk, 0)
            if d:
                out.powered[pk] = d
        if any(k not in self.counts for k in earlier.counts) or any(k not in self.powered for k in earlier.powered) \
                or any(v < 0 for v in (*out.counts.values(), *out.powered.values())):
            raise ValueError("minus: `earlier` is not a snapshot taken before these counts")
        return out

    def check(self, where: str = "action counts") -> None:
        """Raise InputError on a key outside the vocabulary or a negative count."""
        for _layer, comp, act, arg in self.counts:
            Component(comp)
            Action(act)
            check_pair(Component(comp), Action(act), where)
            if arg and Action(act) not in ARGUMENTS:
                raise InputError(f"{where}: {comp}.{act} takes no argument, got {arg}")
        if any(n < 0 for n in self.counts.values()) or any(c < 0 for c in self.powered.values()):
            raise InputError(f"{where}: negative count")

    def total(self, component: Component, action: Action) -> int:
        """All counts of one component's action, over layers and arguments."""
        return sum(n for (_, c, a, _), n in self.counts.items() if c == component and a == action)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActionCounts) and self.counts == other.counts and self.powered == other.powered

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able, deterministic form: lists of records sorted by key."""
        return {
            "counts": [{"layer": lay, "component": str(c), "action": str(a), "argument": arg, "count": n}
                       for (lay, c, a, arg), n in sorted(self.counts.items())],
            "powered": [{"layer": lay, "component": str(c), "instance": inst, "cycles": cyc}
                        for (lay, c, inst), cyc in sorted(self.powered.items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "action counts") -> ActionCounts:
        """Inverse of `to_dict`; raises InputError naming `where` on anything malformed."""
        out = cls()
        try:
            for rec in _records(data, "counts", where):
                comp, act = Component(rec["component"]), Action(rec["action"])
                check_pair(comp, act, where)
                out.add(comp, act, _int(rec["count"], where), _int(rec.get("argument", 0), where),
                        str(rec.get("layer", "")))
            for rec in _records(data, "powered", where):
                out.add_powered(Component(rec["component"]), _int(rec["cycles"], where),
                                str(rec.get("instance", "")), str(rec.get("layer", "")))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{where}: malformed action counts ({exc})") from None
        return out


def _records(data: Mapping[str, Any], name: str, where: str) -> Iterable[Mapping[str, Any]]:
    """The list `data[name]` (missing: empty), each item a mapping."""
    recs = data.get(name, [])
    if not isinstance(recs, list) or not all(isinstance(r, Mapping) for r in recs):
        raise InputError(f"{where}: '{name}' must be a list of tables")
    return recs


def _int(value: Any, where: str) -> int:
    """A non-negative integer, else InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{where}: expected a non-negative integer, got {value!r}")
    return value
