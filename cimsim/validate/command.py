"""`cimsim validate`: judge every check against its measurement, print the checks (terminal table,
Markdown or JSON) or a reproduction table (`--table`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cimsim.validate import checks
from cimsim.validate.measure import MEASUREMENTS, SCENARIOS
from cimsim.validate.tables import TABLES, table_json, table_markdown

EXIT_OUT_OF_TOLERANCE = 5
"""Exit status of `cimsim validate` when a number leaves its tolerance."""


def validate(only: set[str] | None = None) -> list[dict[str, Any]]:
    """Run the measurements (all, or the named ones) and judge every check against them."""
    selected = [c for c in checks.CHECKS if only is None or c.measurement in only]
    got = {name: MEASUREMENTS[name][1]() for name in sorted({c.measurement for c in selected if c.value})}
    rows = []
    for c in selected:
        row: dict[str, Any] = {"source": c.source, "quantity": c.quantity, "paper": c.paper, "unit": c.unit,
                               "run": MEASUREMENTS[c.measurement][0], "reason": c.reason}
        if c.tolerance is None:  # listed: a number the simulator does not model, or a miss with its reason
            value = float(got[c.measurement][c.value]) if c.value else None
            row |= {"cimsim": value, "deviation": None, "tolerance": None, "status": "not compared"}
        else:
            value = float(got[c.measurement][c.value])
            dev = value - c.paper if c.absolute else (value - c.paper) / c.paper
            row |= {"cimsim": value, "deviation": dev, "tolerance": c.tolerance,
                    "tolerance_kind": "absolute" if c.absolute else "relative",
                    "status": "ok" if abs(dev) <= c.tolerance + 1e-12 else "OUT OF TOLERANCE"}
        rows.append(row)
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"


def _cells(r: dict[str, Any]) -> tuple[str, str]:
    """(deviation, tolerance) as printed."""
    if r["tolerance"] is None:
        return "-", "not compared"
    if r["tolerance_kind"] == "absolute":
        return f"{r['deviation']:+.3g}", f"±{r['tolerance']:g}"
    return f"{100 * r['deviation']:+.2f} %", f"±{100 * r['tolerance']:g} %"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The checks as a terminal table, then the reasons."""
    lines = [f"{'source':<26} {'quantity':<60} {'paper':>9} {'cimsim':>9} {'deviation':>10} {'tolerance':>10}  status"]
    for r in rows:
        dev, tol = _cells(r)
        lines.append(f"{r['source']:<26} {r['quantity'] + ' (' + r['unit'] + ')':<60} {_fmt(r['paper']):>9} "
                     f"{_fmt(r['cimsim']):>9} {dev:>10} {tol:>10}  {r['status']}")
    lines.append("")
    lines += [f"- {r['quantity']}: {r['reason']} [{r['run']}]" for r in rows]
    bad = sum(r["status"] == "OUT OF TOLERANCE" for r in rows)
    lines.append(f"\n{len(rows) - bad} of {len(rows)} within tolerance or not compared; {bad} out of tolerance")
    return "\n".join(lines)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """The checks as the README's Markdown table (source, quantity, paper, cimsim, deviation, tolerance, reason)."""
    lines = ["| source | quantity | paper | cimsim | deviation | tolerance | reason |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        dev, tol = _cells(r)
        lines.append(f"| {r['source']} | {r['quantity']} ({r['unit']}) | {_fmt(r['paper'])} | {_fmt(r['cimsim'])} | "
                     f"{dev} | {tol} | {r['reason']} |")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    """The `validate` subcommand."""
    p = sub.add_parser("validate", help="re-measure every published number cimsim reproduces "
                                        f"(exit {EXIT_OUT_OF_TOLERANCE} if one leaves its tolerance)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the checks (or the table) as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print the README's Markdown table")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--only", metavar="M1,M2", help=f"only these measurements: {', '.join(MEASUREMENTS)}")
    sel.add_argument("--table", metavar="NAME", help=("instead of the checks, a README reproduction table: "
                                                      f"{', '.join(TABLES)}"))


def validate_command(args: argparse.Namespace) -> tuple[str, int]:
    """What `cimsim validate` prints and its exit status."""
    from cimsim.errors import InputError

    only = None
    if args.only:
        only = set(args.only.split(","))
        unknown = only - set(MEASUREMENTS)
        if unknown:
            raise InputError(f"--only: unknown measurement {sorted(unknown)[0]!r} (known: {', '.join(MEASUREMENTS)})")
    if args.table is not None and args.table not in TABLES:
        raise InputError(f"--table: unknown table {args.table!r} (known: {', '.join(TABLES)})")
    if not (SCENARIOS / "dazzi2021_resnet32.toml").is_file():
        raise InputError(f"{SCENARIOS}: the shipped scenarios are not there (cimsim validate runs from a source "
                         "checkout: pip install -e .)")
    if args.table is not None:
        return (json.dumps(table_json(args.table), indent=2) if args.json else table_markdown(args.table)), 0
    rows = validate(only)
    bad = any(r["status"] == "OUT OF TOLERANCE" for r in rows)
    if args.json:
        text = json.dumps({"checks": rows, "all_within_tolerance": not bad}, indent=2)
    else:
        text = format_markdown(rows) if args.markdown else format_table(rows)
    return text, EXIT_OUT_OF_TOLERANCE if bad else 0


__all__ = ["EXIT_OUT_OF_TOLERANCE", "add_parser", "format_markdown", "format_table", "validate", "validate_command"]
