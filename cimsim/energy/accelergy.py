"""Interchange with Accelergy / CiMLoop: import an ERT as a table, export action counts.

Accelergy's energy reference table (ERT, YAML, energies in pJ) lists, per component of a
hierarchical design (`system.core[0..41].adc`), its actions with their arguments:

    ERT:
      version: '0.4'
      tables:
      - name: system.core[0..41].adc
        actions:
        - name: convert
          arguments: {bits: 7}
          energy: 1.29

(version 0.2's mapping form, `tables: {name: {action: {arguments, energy} | [...]}}`, is
read too). Each table's last name segment, without its `[...]` range, names a cimsim
`Component` (or is mapped by `component_map`); each action names an `Action` (or is mapped
by `action_map`). An action with one argument becomes an `energy_J_by_argument` entry; an
`idle` or `leak` action (energy per cycle) becomes static power when `clock_hz` is given.

Action counts are exported in Accelergy's action-count format, one local entry per
(layer, component), named `<top>.<layer>.<component>`:

    action_counts:
      version: '0.4'
      local:
      - name: cimsim.conv3.adc
        action_counts:
        - name: convert
          arguments: {bits: 7}
          counts: 1024

Powered cycles go out as a `leak` action (counts = cycles, summed over the instances of
one layer's component, so instance names do not survive a round trip).
Reading and writing YAML needs PyYAML (`pip install 'cimsim[energy]'`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cimsim.energy.actions import ALLOWED, ARGUMENTS, Action, ActionCounts, Component
from cimsim.energy.table import ComponentSpec, EnergyTable, Entry
from cimsim.errors import InputError

MAX_YAML_BYTES = 16 << 20
"""Largest ERT or action-count file read (16 MiB)."""

PJ = 1e-12
"""Joules per picojoule (Accelergy's energy unit)."""

STATIC_ACTIONS = ("idle", "leak")
"""Accelergy action names that stand for energy per cycle whatever the component does."""

_RANGE = re.compile(r"\[[^\]]*\]$")


def _yaml() -> Any:
    """The PyYAML module, or a one-line InputError saying how to get it."""
    try:
        import yaml
    except ImportError:
        raise InputError("Accelergy YAML needs PyYAML: pip install 'cimsim[energy]'") from None
    return yaml


def _read(path: str | Path) -> Any:
    """Parse a YAML file of at most MAX_YAML_BYTES."""
    yaml = _yaml()
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from None
    if len(data) > MAX_YAML_BYTES:
        raise InputError(f"{file}: larger than {MAX_YAML_BYTES:,} bytes")
    try:
        return yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{file}: malformed YAML: {' '.join(str(exc).split())}") from None


def _ert_tables(doc: Any, where: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(component name, [action records]) of an ERT in either layout."""
    ert = doc.get("ERT") if isinstance(doc, dict) else None
    tables = ert.get("tables") if isinstance(ert, dict) else None
    if isinstance(tables, list):
        out = []
        for t in tables:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(t.get("actions"), list):
                raise InputError(f"{where}: ERT.tables: every table needs a name and a list of actions")
            out.append((t["name"], t["actions"]))
        return out
    if isinstance(tables, dict):  # version 0.2: {name: {action: record or [records]}}
        out = []
        for name, acts in tables.items():
            if not isinstance(acts, dict):
                raise InputError(f"{where}: ERT.tables.{name}: must map action names to energies")
            recs = []
            for act, body in acts.items():
                for rec in body if isinstance(body, list) else [body]:
                    recs.append({"name": act, **(rec if isinstance(rec, dict) else {"energy": rec})})
            out.append((str(name), recs))
        return out
    raise InputError(f"{where}: not an Accelergy ERT (no ERT.tables)")


def import_ert(path: str | Path, *, name: str = "", clock_hz: float | None = None,
               component_map: Mapping[str, Component] | None = None,
               action_map: Mapping[str, Action] | None = None) -> EnergyTable:
    """An EnergyTable from an Accelergy ERT file (energies in pJ, converted to J).

    Raises InputError naming the file and the ERT key for an unknown component or
    action, a negative or non-numeric energy, more than one argument, or two different
    energies for the same `component.action` and argument.
    """
    where = str(path)
    cmap = dict(component_map or {})
    amap = dict(action_map or {})
    values: dict[tuple[Component, Action], dict[int | None, float]] = {}
    static: dict[Component, float] = {}
    for table_name, records in _ert_tables(_read(path), where):
        leaf = _RANGE.sub("", table_name.rsplit(".", 1)[-1])
        comp = cmap.get(leaf) or (Component(leaf) if leaf in Component.__members__.values() else None)
        if comp is None:
            raise InputError(f"{where}: ERT table '{table_name}': unknown component '{leaf}' "
                             f"(known: {', '.join(Component)}; or map it with component_map)")
        static.setdefault(comp, 0.0)
        for rec in records:
            act_name = rec.get("name") if isinstance(rec, dict) else None
            key = f"ERT table '{table_name}' action '{act_name}'"
            energy = rec.get("energy") if isinstance(rec, dict) else None
            if isinstance(energy, bool) or not isinstance(energy, (int, float)) or energy < 0:
                raise InputError(f"{where}: {key}: energy must be a non-negative number of pJ, got {energy!r}")
            if act_name in STATIC_ACTIONS and act_name not in amap:
                if energy and clock_hz is None:
                    raise InputError(f"{where}: {key}: energy per cycle needs clock_hz to become static power")
                static[comp] = max(static[comp], energy * PJ * (clock_hz or 0.0))
                continue
            action = amap.get(str(act_name)) or (Action(str(act_name)) if act_name in Action.__members__.values() else None)
            if action is None or action not in ALLOWED[comp]:
                own = ", ".join(sorted(ALLOWED[comp])) or "none"
                raise InputError(f"{where}: {key}: unknown action of {comp} (its actions: {own}; or map it "
                                 "with action_map)")
            args = rec.get("arguments") or {}
            if not isinstance(args, dict) or len(args) > 1:
                raise InputError(f"{where}: {key}: at most one argument is supported, got {args!r}")
            arg: int | None = None
            if args:
                (arg_value,) = args.values()
                if isinstance(arg_value, bool) or not isinstance(arg_value, int) or arg_value < 0:
                    raise InputError(f"{where}: {key}: argument must be a non-negative integer, got {arg_value!r}")
                arg = arg_value
            slot = values.setdefault((comp, action), {})
            if arg in slot and slot[arg] != energy * PJ:
                raise InputError(f"{where}: {key}: two different energies for {comp}.{action} argument {arg}")
            slot[arg] = energy * PJ
    actions: dict[tuple[Component, Action], Entry] = {}
    for (comp, action), slot in values.items():
        if set(slot) == {None}:
            actions[(comp, action)] = Entry(energy_J=slot[None])
        elif None in slot:
            raise InputError(f"{where}: {comp}.{action} is given both with and without an argument")
        elif action not in ARGUMENTS:
            raise InputError(f"{where}: {comp}.{action} takes no argument in cimsim")
        else:
            actions[(comp, action)] = Entry(by_argument={a: e for a, e in sorted(slot.items()) if a is not None})
    comps = {c: ComponentSpec(static_power_W=w) for c, w in static.items()}
    return EnergyTable(name or Path(path).stem, where, "imported from an Accelergy ERT", comps, actions)


def export_action_counts(counts: ActionCounts, top: str = "cimsim") -> str:
    """Accelergy action-count YAML of `counts` (see the module docstring)."""
    yaml = _yaml()
    entries: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (layer, comp, action, arg), n in sorted(counts.counts.items()):
        rec: dict[str, Any] = {"name": str(action)}
        if action in ARGUMENTS:
            rec["arguments"] = {ARGUMENTS[action]: arg}
        rec["counts"] = n
        entries.setdefault((layer, str(comp)), []).append(rec)
    leak: dict[tuple[str, str], int] = {}
    for (layer, comp, _), cycles in sorted(counts.powered.items()):
        leak[(layer, str(comp))] = leak.get((layer, str(comp)), 0) + cycles
    for key, cycles in leak.items():
        entries.setdefault(key, []).append({"name": "leak", "counts": cycles})
    local = [{"name": ".".join(p for p in (top, layer, comp) if p), "action_counts": recs}
             for (layer, comp), recs in sorted(entries.items())]
    return str(yaml.safe_dump({"action_counts": {"version": "0.4", "local": local}}, sort_keys=False))


def read_action_counts(path: str | Path, top: str = "cimsim") -> ActionCounts:
    """ActionCounts from an action-count file `export_action_counts` wrote (leak -> powered cycles)."""
    where = str(path)
    doc = _read(path)
    local = doc.get("action_counts", {}).get("local") if isinstance(doc, dict) else None
    if not isinstance(local, list):
        raise InputError(f"{where}: not an Accelergy action-count file (no action_counts.local)")
    out = ActionCounts()
    for entry in local:
        name = entry.get("name", "") if isinstance(entry, dict) else ""
        if not name.startswith(top + "."):
            raise InputError(f"{where}: entry '{name}' is not under '{top}'")
        layer, _, comp_name = name[len(top) + 1:].rpartition(".")
        if comp_name not in Component.__members__.values():
            raise InputError(f"{where}: entry '{name}': unknown component '{comp_name}'")
        comp = Component(comp_name)
        for rec in entry.get("action_counts", []):
            n = rec.get("counts")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise InputError(f"{where}: entry '{name}': counts must be a non-negative integer, got {n!r}")
            if rec.get("name") == "leak":
                out.add_powered(comp, n, layer=layer)
                continue
            act = rec.get("name")
            if act not in Action.__members__.values() or Action(act) not in ALLOWED[comp]:
                raise InputError(f"{where}: entry '{name}': unknown action '{act}' of {comp}")
            args = rec.get("arguments") or {}
            out.add(comp, Action(act), n, int(next(iter(args.values()), 0)) if args else 0, layer)
    return out
