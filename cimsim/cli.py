"""The `cimsim` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import cimsim._threads  # noqa: F401  (before numpy)
from cimsim import __version__, io_safety
from cimsim.config.load import ENUMS
from cimsim.errors import CimsimError, MappingError, OutputError, SimulationError

METHODS = tuple(m for m in ENUMS["mapping.sram_method"] if m != "auto")
"""Input SRAM placements (`cimsim.mapping.sram.METHODS`; this module imports nothing heavy, so
an interrupt while the program starts is caught like any other)."""

LEVELS = ("events", "summary")
PLOT_KINDS = ("progress", "occupancy", "stalls", "links", "energy", "power")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one `cimsim: error:` line and exit code 2,
    like every other bad input (the subcommand parsers are made of the same class)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("cimsim").strip()
        where = f"{command}: " if command else ""
        raise _ArgumentError(f"{where}{' '.join(message.split())} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cimsim", description="Cycle-level simulator of tiled compute-in-memory chips.")
    p.add_argument("--version", action="version", version=f"cimsim {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate a scenario and print its per-layer report")
    run.add_argument("scenario", help="scenario TOML file (see scenarios/template.toml)")
    run.add_argument("--batch", type=int, metavar="N", help="images to stream back to back (overrides run.batch)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any scenario key, e.g. --set chip.crossbar_rows=512 (repeatable)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--trace", metavar="PATH", help="HDF5 trace file (default: traces/<scenario name>.h5)")
    run.add_argument("--no-trace", action="store_true", help="write no trace")
    run.add_argument("--trace-level", choices=LEVELS, default="events",
                     help="events: every compute/stall/link record (default); summary: mapping and summaries only")

    rpt = sub.add_parser("report", help="the per-layer report of a traced run, from its trace alone")
    rpt.add_argument("trace", help="trace file written by cimsim run")
    fmt = rpt.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the summary JSON (as cimsim run --json did)")
    fmt.add_argument("--csv", action="store_true", help="print the per-layer table as CSV")

    plot = sub.add_parser("plot", help="draw a picture of a traced run (needs matplotlib: cimsim[plot])")
    plot.add_argument("trace", help="trace file written by cimsim run")
    plot.add_argument("--kind", required=True, choices=PLOT_KINDS,
                      help="progress: Fig. 10 curves of image 0; occupancy: core x timestep states; "
                           "stalls: stall timesteps per layer; links: NoC link utilisation; "
                           "energy: energy per image by layer and component (energy.enabled); "
                           "power: power over time by component (energy.enabled, level events)")
    plot.add_argument("-o", "--output", required=True, metavar="FILE.png", help="PNG file to write")

    exp = sub.add_parser("export", help="convert a trace for other tools")
    exp.add_argument("trace", help="trace file written by cimsim run")
    exp.add_argument("--perfetto", required=True, metavar="FILE.json",
                     help="Chrome trace-event JSON for ui.perfetto.dev")

    imp = sub.add_parser("import", help="translate an ONNX model into a model TOML and int8 weights (needs cimsim[onnx])")
    imp.add_argument("onnx", metavar="MODEL.onnx", help="ONNX file (e.g. from torch.onnx.export)")
    imp.add_argument("-o", "--output", required=True, metavar="NAME.toml",
                     help="model file to write; NAME.npz (weights) and NAME.quant.json (scales) go next to it")
    imp.add_argument("--calibration", metavar="IMAGES.npz",
                     help="float array 'images' in the ONNX input layout (default: generated images)")
    imp.add_argument("--calibration-images", type=int, default=32, metavar="N",
                     help="generated calibration images when no --calibration is given (default 32)")
    imp.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the generated calibration images")

    sram = sub.add_parser("sram", help="input SRAM placement: Dazzi Table 1 metrics, or a scenario's per-layer needs")
    sram.add_argument("scenario", nargs="?", help="scenario TOML file: report the input SRAM of every conv layer")
    sram.add_argument("--channels", metavar="N", help="channels of a pixel (Table 1's N)")
    sram.add_argument("--height", metavar="H", help="height of the stored volume (Table 1's H)")
    sram.add_argument("--word-bits", metavar="WL", help="SRAM word length in bits (Table 1's WL)")
    sram.add_argument("--kernel", metavar="F", help="kernel size, columns stored (default 3)")
    sram.add_argument("--bits", metavar="B", help="bits per activation (default 8)")
    sram.add_argument("--method", metavar="M", help=f"only this placement: {', '.join(METHODS)}")
    sram.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="with a scenario: override any scenario key (repeatable)")
    sram.add_argument("--json", action="store_true", help="print JSON")

    rep = sub.add_parser("replicas", help="shape of a collective kernel matrix of replicated kernels (Dazzi 2.2)")
    rep.add_argument("--c-in", metavar="N", help="input channels")
    rep.add_argument("--c-out", metavar="M", help="output channels")
    rep.add_argument("--kernel", metavar="F", help="kernel size")
    rep.add_argument("--n", metavar="R", help="kernel replicas (outputs computed in parallel)")
    rep.add_argument("--dw", metavar="W", help="outputs per block row: 1 = Method 1 (default), > 1 = Method 2")
    rep.add_argument("--stride", metavar="S", help="convolution stride (default 1)")
    rep.add_argument("--xbar-rows", metavar="R", help="crossbar rows (default 256)")
    rep.add_argument("--xbar-cols", metavar="C", help="crossbar columns (default 256)")
    rep.add_argument("--json", action="store_true", help="print one JSON object")

    from cimsim.mapping.command import add_parser as add_map_parser
    from cimsim.roofline import add_parser as add_roofline_parser
    from cimsim.sweep.command import add_parsers as add_sweep_parsers  # sweep, sweep-plot
    from cimsim.validate import add_parser as add_validate_parser

    add_map_parser(sub)
    add_roofline_parser(sub)
    add_sweep_parsers(sub)
    add_validate_parser(sub)
    return p


class _ArgumentError(CimsimError):
    pass


class _Terminated(BaseException):
    """SIGTERM, raised where the run is so that the trace writer removes its partial file."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()



def _say(*parts: object, end: str = "\n") -> None:
    """print() to stdout; a failed write (disk full, /dev/full) becomes one `OutputError`."""
    try:
        print(*parts, end=end)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write standard output: {exc.strerror or exc}") from None


def _one_line(message: object) -> str:
    """The message with control characters (a newline inside a --set value) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 3 simulation failure, 4 an output
    could not be written, 130/143 interrupted). Called as the program (`argv` None), the signal
    handlers it installs stay in place and SIGINT/SIGTERM are ignored once the exit code is
    decided; called with `argv` (tests, notebooks), the previous handlers are restored."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in _HANDLED} if main_thread else {}
    code = 1
    try:
        if main_thread:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, _on_sigterm)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit: write() fails with EFBIG
        with io_safety.sealed():
            code = _guarded_main(argv)
    except (KeyboardInterrupt, _Terminated) as e:  # between the handlers above and the command's own
        code = 130 if isinstance(e, KeyboardInterrupt) else 143
        _stderr("interrupted" if code == 130 else "terminated")
    finally:
        if main_thread:
            if argv is None:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_IGN)
            else:
                for sig, handler in previous.items():
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    return code


def _stderr(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"cimsim: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what could not be written
    does not fail again."""
    import os

    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _guarded_main(argv: Sequence[str] | None) -> int:
    args = None
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        code = _dispatch(args)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write standard output: {exc.strerror or exc}") from None
        return code
    except CimsimError as e:
        if isinstance(e, OutputError) and "standard output" in str(e):
            _silence_stdout()
        _stderr(f"error: {_one_line(e)}")
        return e.exit_code
    except KeyboardInterrupt:
        _stderr("interrupted")
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`)
        _silence_stdout()
        return 141
    except _Terminated:
        _stderr("terminated")
        return 143
    except RecursionError:
        _stderr("error: input nested too deeply")
        return 2
    except OSError as e:  # an operating-system failure no module turned into a message
        import errno

        where = f"{e.filename}: " if e.filename else ""
        writing = e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO)
        _stderr(f"error: {_one_line(where)}{e.strerror or _one_line(e)}")
        return 4 if writing else 2
    except Exception as e:  # an internal bug: say so in one line unless --debug
        if args is not None and args.debug:
            raise
        _stderr(f"internal error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)")
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    commands = {"run": _run, "sram": _sram, "replicas": _replicas, "report": _report, "plot": _plot,
                "export": _export, "import": _import, "sweep": _sweep, "sweep-plot": _sweep_plot, "map": _map,
                "roofline": _roofline, "validate": _validate}
    return commands[args.command](args)


def _map(args: argparse.Namespace) -> int:
    from cimsim.mapping.command import map_command

    text, problems = map_command(args)
    _say(text)
    if problems:
        raise MappingError(f"{args.scenario}: {len(problems)} mapping problem{'s' if len(problems) > 1 else ''}: "
                           + "; ".join(problems))
    return 0


def _roofline(args: argparse.Namespace) -> int:
    from cimsim.roofline import roofline_command

    _say(roofline_command(args))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cimsim.validate import validate_command

    text, status = validate_command(args)
    _say(text)
    return status


def _sweep(args: argparse.Namespace) -> int:
    from cimsim.sweep import command as sweep_cli

    line, lost = sweep_cli.sweep_command(args)
    _say(line)
    if lost:
        raise SimulationError(f"{lost} points were lost with their workers; rerun the sweep to run them")
    return 0


def _sweep_plot(args: argparse.Namespace) -> int:
    from cimsim.sweep import command as sweep_cli

    out = sweep_cli.sweep_plot_command(args)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from cimsim.config import load_scenario
    from cimsim.report.progress import ProgressBar
    from cimsim.runner import default_trace_path, run

    overrides = list(args.set)
    if args.batch is not None:
        if args.batch < 1:
            raise _ArgumentError(f"--batch {args.batch}: must be a positive integer")
        overrides.append(f"run.batch={args.batch}")
    if args.no_trace and args.trace:
        raise _ArgumentError("--trace and --no-trace: give one of them")
    t0 = time.perf_counter()
    scenario = load_scenario(args.scenario, overrides)
    trace = None if args.no_trace else Path(args.trace or default_trace_path(scenario))
    bar = ProgressBar(scenario.run.batch) if ProgressBar.wanted(sys.stderr, args.json) else None
    try:
        report = run(scenario, [bar] if bar else None, trace, args.trace_level)
    finally:
        if bar:
            bar.close()
    if args.json:
        _say(json.dumps(report.summary, indent=2, sort_keys=False))
    else:
        _say(report.table())
        _say(f"\nsimulated {report.summary['simulated_cycles']:,} cycles, {report.summary['events']:,} events "
              f"in {time.perf_counter() - t0:.2f} s")
        for path in ([trace] if trace is not None and trace.exists() else [Path(t) for t in report.summary.get(
                "traces", [])]):  # stdout: a successful run keeps stderr empty (a reloading run: one per segment)
            _say(f"trace: {path} ({path.stat().st_size / 1e6:.1f} MB, level {args.trace_level})")
    return 0


@contextlib.contextmanager
def _trace_errors(path: str) -> Iterator[None]:
    """Whatever a damaged trace makes the reading code raise becomes one `TraceError` line (exit 2)."""
    from cimsim.trace import TraceError

    try:
        yield
    except CimsimError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError, RuntimeError,
            ZeroDivisionError, OverflowError, RecursionError) as exc:
        raise TraceError(f"{path}: damaged trace ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def _report(args: argparse.Namespace) -> int:
    from cimsim import trace as tracelib
    from cimsim.report.replay import report_from_trace

    with _trace_errors(args.trace), tracelib.open(args.trace) as tr:
        report = report_from_trace(tr)
        if tr.level == "events" and json.dumps(report.summary, indent=2) != tr.summary_text:
            print(f"cimsim: warning: {args.trace}: the summary replayed from the events differs from the one "
                   "stored at the end of the run", file=sys.stderr)
        source = f"{tr.n_events:,} events replayed" if tr.level == "events" else "stored summary (level summary)"
    if args.json:
        _say(json.dumps(report.summary, indent=2, sort_keys=False))
    elif args.csv:
        _say(report.csv(), end="")
    else:
        _say(report.table())
        _say(f"\nfrom trace {args.trace}: {source}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from cimsim import trace as tracelib
    from cimsim.report.plots import plot

    with _trace_errors(args.trace), tracelib.open(args.trace) as tr:
        out = plot(tr, args.kind, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from cimsim import trace as tracelib
    from cimsim.report.perfetto import export_perfetto

    with _trace_errors(args.trace), tracelib.open(args.trace) as tr:
        count = export_perfetto(tr, args.perfetto)
    print(f"wrote {args.perfetto}: {count:,} trace events (open it in https://ui.perfetto.dev)", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from cimsim.onnx_import import check_outputs, import_onnx, write_imported

    if not args.output.endswith(".toml"):
        raise _ArgumentError(f"-o {args.output}: must name a .toml model file")
    if not 1 <= args.calibration_images <= 10_000:
        raise _ArgumentError(f"--calibration-images {args.calibration_images}: must be 1..10,000")
    if args.seed < 0:
        raise _ArgumentError(f"--seed {args.seed}: must be a non-negative integer")
    inputs = [args.onnx, args.calibration]
    check_outputs(args.output, inputs)
    model = import_onnx(args.onnx, args.calibration, calibration_images=args.calibration_images, seed=args.seed)
    written = write_imported(model, args.output, inputs)
    net = model.network
    weights = sum(p.weights.size for p in model.params.values())
    print(f"imported {args.onnx}: {len(net.layers) - 1} layers, {weights:,} weights; calibration {model.calibration}")
    for note in model.translation.notes:
        print(f"note: {note}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _sram(args: argparse.Namespace) -> int:
    from cimsim.calculators import sram_command

    return sram_command(args)


def _replicas(args: argparse.Namespace) -> int:
    from cimsim.calculators import replicas_command

    return replicas_command(args)
