"""`cimsim map SCENARIO [--set KEY=VALUE] [--json]`: the mapping dry run (`cimsim.mapping.sizing`).

The command module builds what to print; `cimsim.cli` prints it and turns the problems into
one error line (exit 2).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cimsim.config import load_scenario
from cimsim.mapping.sizing import dry_run
from cimsim.network import load_model


def add_parser(sub: Any) -> None:
    """The `map` subcommand."""
    p = sub.add_parser("map", help="the mapping of a scenario, without simulating: per layer where it runs, cores, "
                                   "crossbar devices, SRAM; the chip it needs; every problem at once")
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any scenario key")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def map_command(args: argparse.Namespace) -> tuple[str, list[str]]:
    """(what to print, the problems found)."""
    scenario = load_scenario(args.scenario, args.set)
    report = dry_run(load_model(scenario.model), scenario)
    if args.json:
        return json.dumps(report, indent=2), report["problems"]
    return format_table(report), report["problems"]


def format_table(report: dict[str, Any]) -> str:
    """The dry run as a terminal table."""
    head = (f"{'layer':<14} {'kind':<13} {'runs on':<8} {'cores':>5} {'rate':>4} {'xbar rows x cols':>16} "
            f"{'devices':>10} {'weights':>10} {'cyc/out':>7} {'SRAM words':>10}")
    lines = [f"{report['scenario']}: model {report['model']}", head, "-" * len(head)]
    for lay in report["layers"]:
        fused = f" +{'+'.join(lay['fused'])}" if lay["fused"] else ""
        shape = f"{lay['crossbar_rows']} x {lay['crossbar_cols']}" if lay["runs_on"] == "crossbar" else "-"
        lines.append(f"{lay['name']:<14} {(lay['kind'] + fused)[:13]:<13} {lay['runs_on']:<8} {lay['cores']:>5} "
                     f"{lay['rate']:>4} {shape:>16} {lay['crossbar_devices']:>10,} {lay['weights']:>10,} "
                     f"{lay['digital_cycles_per_output']:>7} {lay['sram_words']:>10,}")
    chip = report["chip"]
    lines.append(f"chip: {chip['cores']} cores (array {chip['array'][0]} x {chip['array'][1]}; the most square that "
                 f"fits: {chip['min_square_array'][0]} x {chip['min_square_array'][1]}), "
                 f"{chip['crossbar_devices']:,} crossbar devices for {chip['weights']:,} weights, "
                 f"SRAM depth needed {chip['min_sram_depth_words']:,} words, Eq. 7 peak "
                 f"{chip['eq7_peak_gbps']} Gbit/s ({chip['eq7_link_width_bits']} bits per cycle)")
    lines.extend(f"problem: {p}" for p in report["problems"])
    return "\n".join(lines)
