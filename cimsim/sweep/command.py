"""`cimsim sweep` and `cimsim sweep-plot`: the command-line side of `cimsim.sweep`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from cimsim.errors import InputError


def add_parsers(sub: Any) -> None:
    """Add the `sweep` and `sweep-plot` subcommands to the CLI's subparsers."""
    sw = sub.add_parser("sweep", help="run a design-space sweep on Dask (needs cimsim[sweep])")
    sw.add_argument("sweep_file", help="sweep TOML file (see scenarios/sweeps/resnet32_mesh.toml)")
    sw.add_argument("-o", "--output", metavar="DIR", help="results directory (default: sweeps/<sweep name>)")
    sw.add_argument("--workers", metavar="N", help="LocalCluster worker processes (default: one per core)")
    sw.add_argument("--scheduler", metavar="ADDR", help="use the Dask cluster of this scheduler (tcp://HOST:PORT)")
    sw.add_argument("--trace", action="store_true", help="also write each point's HDF5 trace (events level)")

    sp = sub.add_parser("sweep-plot", help="plot a sweep's results table (needs matplotlib and pandas)")
    sp.add_argument("results", help="results.parquet written by cimsim sweep")
    sp.add_argument("--x", required=True, metavar="KEY", help="column on the x axis (a swept key or a metric)")
    sp.add_argument("--y", required=True, metavar="METRIC", help="column on the y axis")
    sp.add_argument("--color", metavar="KEY", help="colour the points by this column")
    sp.add_argument("--line", action="store_true", help="join the points of each colour in x order")
    sp.add_argument("--pareto", action="store_true",
                    help="mark the Pareto front (by default lower x and higher y are better)")
    sp.add_argument("--x-better", choices=("low", "high"), default="low", help="with --pareto: which x is better")
    sp.add_argument("--y-better", choices=("low", "high"), default="high", help="with --pareto: which y is better")
    sp.add_argument("--logx", action="store_true", help="logarithmic x axis")
    sp.add_argument("--logy", action="store_true", help="logarithmic y axis")
    sp.add_argument("--title", help="plot title (default: the sweep's directory name)")
    sp.add_argument("-o", "--output", required=True, metavar="FILE.png", help="PNG file to write")


def sweep_command(args: argparse.Namespace) -> tuple[str, int]:
    """`cimsim sweep`: expand and run; return the one-line report for the terminal and how
    many points were lost with their workers (the CLI prints; 0 lost: every point has its row)."""
    from cimsim.sweep.engine import run_sweep
    from cimsim.sweep.spec import MAX_WORKERS, load_sweep

    workers = None
    if args.workers is not None:
        if not re.fullmatch(r"[0-9]+", args.workers) or not 1 <= int(args.workers) <= MAX_WORKERS:
            raise InputError(f"--workers {args.workers}: must be an integer from 1 to {MAX_WORKERS}")
        workers = int(args.workers)
    if args.scheduler is not None and workers is not None:
        raise InputError("--workers and --scheduler: the workers of an existing cluster are its own; give one")
    sweep = load_sweep(args.sweep_file)
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", sweep.name).lstrip(".") or "sweep"
    out = Path(args.output) if args.output else Path("sweeps") / safe
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out}: exists and is not a directory")
    outcome = run_sweep(sweep, out, workers=workers, scheduler=args.scheduler, trace=args.trace or None)
    return outcome.line(sweep.name), outcome.lost


def sweep_plot_command(args: argparse.Namespace) -> Path:
    """`cimsim sweep-plot`; return the picture written."""
    from cimsim.sweep.plot import plot_results

    out = plot_results(args.results, args.x, args.y, args.output, color=args.color, line=args.line,
                       pareto=args.pareto, x_better=args.x_better, y_better=args.y_better, logx=args.logx,
                       logy=args.logy, title=args.title)
    return Path(out)
