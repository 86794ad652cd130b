"""What a Dask worker runs for one point: the simulation, in-process, as a pure function.

The task takes the resolved scenario (a frozen dataclass, pickled to the worker) and
returns a plain dict, so the client writes every result file itself; only the trace,
when asked for, is written by the worker (so workers must see the sweep's directory,
as they must see the model files: a shared file system or the same checkout).
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from cimsim.config import Scenario
from cimsim.errors import CimsimError


class PointStatus(StrEnum):
    """Outcome of a point, as recorded in its row."""

    OK = "ok"
    """Simulated; the row has its metrics."""
    FAILED = "failed"
    """cimsim refused or stopped it (bad combination, deadlock, internal error): a property of
    the point, so a rerun skips it too; the row has the one-line error and the exit code."""
    LOST = "lost"
    """The infrastructure lost it (its worker died more often than the scheduler allows): a
    rerun of the sweep runs it again."""


def run_point(scenario: Scenario, trace: str | None = None) -> dict[str, Any]:
    """Simulate `scenario` in this process (trace it to `trace`, events level).

    Returns {"status", "exit_code", "error", "wall_s", "cpu_s", "summary"} (`cpu_s`: CPU time
    of this thread, which runs the whole simulation; the rest of a worker's threads are Dask's);
    a cimsim error (exit code 2 or 3) and an internal error (exit code 1) are results, not
    exceptions, so the sweep records them and goes on.
    """
    from cimsim.runner import run

    t0 = time.perf_counter()
    c0 = time.thread_time()
    try:
        if trace is not None:
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
        report = run(scenario, None, trace, "events")
    except CimsimError as exc:
        return _failed(exc.exit_code, " ".join(str(exc).split()), t0, c0)
    except Exception as exc:  # a bug in cimsim: record it like the CLI prints it
        return _failed(1, f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}", t0, c0)
    return {"status": PointStatus.OK.value, "exit_code": 0, "error": "", "wall_s": time.perf_counter() - t0,
            "cpu_s": time.thread_time() - c0, "summary": report.summary}


def _failed(code: int, message: str, t0: float, c0: float) -> dict[str, Any]:
    return {"status": PointStatus.FAILED.value, "exit_code": code, "error": message,
            "wall_s": time.perf_counter() - t0, "cpu_s": time.thread_time() - c0, "summary": None}
