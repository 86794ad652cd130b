"""The `cimsim` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from cimsim import __version__
from cimsim.errors import CimsimError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cimsim", description="Cycle-level simulator of tiled compute-in-memory chips.")
    p.add_argument("--version", action="version", version=f"cimsim {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate a scenario and print its per-layer report")
    run.add_argument("scenario", help="scenario TOML file (see scenarios/template.toml)")
    run.add_argument("--batch", type=int, metavar="N", help="images to stream back to back (overrides run.batch)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any scenario key, e.g. --set chip.crossbar_rows=512 (repeatable)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return p


class _ArgumentError(CimsimError):
    pass




def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 3 simulation failure)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
    except CimsimError as e:
        print(f"cimsim: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cimsim: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal bug: say so in one line unless --debug
        if args.debug:
            raise
        print(f"cimsim: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from cimsim.runner import run_scenario

    overrides = list(args.set)
    if args.batch is not None:
        if args.batch < 1:
            raise _ArgumentError(f"--batch {args.batch}: must be a positive integer")
        overrides.append(f"run.batch={args.batch}")
    t0 = time.perf_counter()
    report = run_scenario(args.scenario, overrides)
    if args.json:
        print(json.dumps(report.summary, indent=2, sort_keys=False))
    else:
        print(report.table())
        print(f"\nsimulated {report.summary['simulated_cycles']:,} cycles, {report.summary['events']:,} events "
              f"in {time.perf_counter() - t0:.2f} s")
    return 0
