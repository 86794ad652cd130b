"""Run a sweep's points as independent tasks on Dask distributed.

A `LocalCluster` (one single-threaded worker process per core by default) or an existing
scheduler (`tcp://HOST:PORT`) runs `cimsim.sweep.task.run_point` once per point not yet
done; the client writes each point's files and the table as the points finish. Dask
distributed is the optional extra `cimsim[sweep]`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cimsim.errors import InputError, SimulationError
from cimsim.sweep.results import check_outputs, done_rows, make_row, point_dir, record_point, write_atomic, write_table
from cimsim.sweep.spec import Point, Sweep
from cimsim.sweep.task import PointStatus, run_point

ADDRESS = re.compile(r"(tcp|tls|ucx|inproc)://[^\s/]+")
"""What a scheduler address looks like."""
LOOPBACK = "127.0.0.1"
"""Where the LocalCluster's scheduler, nannies and workers listen: this machine only."""
WORKERS_EVERY_S = 2.0
"""Least wall time between two looks at how many workers the scheduler has."""
TABLE_EVERY_S = 0.5
"""Least wall time between two rewrites of the table while points finish (the last one is always written)."""
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}
"""Dask settings of the LocalCluster a sweep starts (passed by the nannies to the worker processes).
Dask's defaults cost CPU the points need, on the same cores: the statistical profiler samples
the task thread's stack every 10 ms (for the dashboard, which a sweep does not start), the
event loop's health check runs every 20 ms, the memory monitors every 100 ms and the system
monitors every 500 ms, in each worker, nanny and the scheduler, each taking the GIL from the
simulation in a worker. Measured on a LocalCluster of 2: idle, 12-15 % of a core in all
(3.5-5 % per worker) with the defaults, 1.6 % with these; running ResNet-32 points, a worker's
threads other than the point's took 7-8 % of its CPU time, 1 % with these. Memory limits are
still enforced (checked every second); only the dashboard's profile is gone. The HTTP servers
Dask starts in the scheduler and every worker even without a dashboard (`dashboard_address=None`
only skips the Bokeh pages: the scheduler still serves Prometheus metrics, JSON state and a proxy
on port 8787) get no routes, are bound to an ephemeral loopback port and are stopped once the
cluster is up (`cimsim.sweep.worker.WarmWorker(quiet=True)` in each worker)."""


@dataclass
class SweepOutcome:
    """What a sweep run did."""

    table: Path
    total: int
    skipped: int = 0
    """Points already done in the directory (not run again)."""
    ok: int = 0
    failed: int = 0
    lost: int = 0
    wall_s: float = 0.0
    ran: list[str] = field(default_factory=list)
    """Keys of the points run by this invocation, in the order they finished."""

    def line(self, name: str) -> str:
        """One line saying what happened."""
        ran = self.ok + self.failed + self.lost
        return (f"sweep {name}: {self.total} points: {ran} ran ({self.ok} ok, {self.failed} failed, {self.lost} lost), "
                f"{self.skipped} already done, {self.wall_s:.1f} s; table {self.table}")


class Progress:
    """`sweep NAME: done d/N, failed f, running r` on one line of a terminal, redrawn in place."""

    def __init__(self, name: str, total: int, skipped: int, stream: TextIO | None = None) -> None:
        self.name, self.total, self.skipped = name, total, skipped
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self._drawn = 0

    def update(self, done: int, failed: int, running: int) -> None:
        """Redraw (terminals only)."""
        if not self.live:
            return
        text = (f"cimsim: sweep {self.name}: done {self.skipped + done}/{self.total}, failed {failed}, "
                f"running {running}  {time.monotonic() - self.t0:.0f} s")
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = max(self._drawn, len(text))

    def say(self, line: str) -> None:
        """One line on the stream (the progress line, if drawn, is redrawn by the next update)."""
        if self.live and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
        self.stream.write(f"cimsim: sweep {self.name}: {line}\n")
        self.stream.flush()

    def close(self) -> None:
        """Erase the line."""
        if self.live and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()


def _distributed() -> Any:
    """Dask distributed; pandas and pyarrow (the table writer) are imported here too, so that
    their import (about 0.6 s of CPU) is part of starting a sweep, not of the first finished point."""
    try:
        import distributed
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("cimsim sweep needs Dask distributed, pandas and pyarrow: "
                         "pip install 'cimsim[sweep]'") from None
    return distributed


def connect(scheduler: str, workers: int, retries: int, timeout_s: float) -> tuple[Any, Any]:
    """A (client, cluster) pair: a LocalCluster of `workers` processes (0: one per core, with
    `LOCAL_CLUSTER_CONFIG`), or a client of the scheduler at `scheduler` (cluster None). Every
    worker, now and later, gets `cimsim.sweep.worker.WarmWorker` (cimsim imported, `gc.freeze()`).
    A scheduler that does not answer within `timeout_s` is an InputError."""
    distributed = _distributed()
    import dask

    if scheduler:
        if not ADDRESS.fullmatch(scheduler):
            raise InputError(f"scheduler {scheduler!r}: expected an address like tcp://HOST:PORT")
        try:
            client = distributed.Client(scheduler, timeout=f"{timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"scheduler {scheduler}: no Dask scheduler answered within {timeout_s:g} s "
                             f"({type(exc).__name__})") from None
        try:
            _warm(client, f"the workers of {scheduler}")
        except BaseException:
            client.close()
            raise
        return client, None
    n = workers or os.cpu_count() or 1
    with dask.config.set({"distributed.scheduler.allowed-failures": retries, **LOCAL_CLUSTER_CONFIG}):
        # a deep copy for the nannies: theirs is a shallow copy of the global config, whose nested
        # tables this `with` restores on exit, and a worker restarted later would start without it
        config = copy.deepcopy(dask.config.config)
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, config=config,
                                           host=LOOPBACK, dashboard_address=None, worker_dashboard_address=None,
                                           scheduler_kwargs={"dashboard_address": f"{LOOPBACK}:0"},
                                           silence_logs=logging.ERROR)
    client = distributed.Client(cluster, set_as_default=False)
    try:
        cluster.scheduler.http_server.stop()  # in this process; each worker stops its own (quiet)
        _warm(client, "the LocalCluster's workers", quiet=True)
    except BaseException:
        client.close()
        cluster.close()
        raise
    return client, cluster


def _warm(client: Any, where: str, quiet: bool = False) -> None:
    """Register `WarmWorker` on the cluster (it runs on every worker there and on every worker that
    joins); `quiet`: it also stops the worker's HTTP server (only on a cluster cimsim started)."""
    from cimsim.sweep.worker import WarmWorker

    try:
        client.register_plugin(WarmWorker(quiet=quiet))
    except Exception as exc:
        raise InputError(f"{where} could not import cimsim ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:300]}); they need cimsim installed") from None


def run_sweep(sweep: Sweep, out: Path, *, workers: int | None = None, scheduler: str | None = None,
              trace: bool | None = None, client: Any = None, stream: TextIO | None = None,
              on_finish: Callable[[Point, dict[str, Any]], None] | None = None) -> SweepOutcome:
    """Run every point of `sweep` not yet done in `out`; write rows, summaries and the table.

    `workers`, `scheduler` and `trace` override the sweep file's `[sweep]` options; `client`
    is an existing Dask client to use (and leave open); `on_finish(point, row)` is called as
    each point finishes. Ctrl-C cancels the pending points and leaves the directory resumable.
    """
    opts = sweep.options
    traced = opts.trace if trace is None else trace
    check_outputs(out, sweep)
    write_atomic(out / "sweep.json", json.dumps({
        "name": sweep.name, "sweep_file": str(sweep.path), "base": str(sweep.base), "set": sweep.fixed,
        "keys": list(sweep.keys),
        "points": [{"point": p.key, "index": p.index, "values": p.values, "overrides": list(p.overrides)}
                   for p in sweep.points]}, indent=1) + "\n")
    rows = done_rows(out, sweep.points)
    todo = [p for p in sweep.points if p.key not in rows]
    outcome = SweepOutcome(out / "results.parquet", len(sweep.points), skipped=len(rows))
    t0 = time.perf_counter()
    if not todo:
        write_table(out, sweep, rows)
        outcome.wall_s = time.perf_counter() - t0
        return outcome
    distributed = _distributed()
    own = client is None
    cluster = None
    address = scheduler if scheduler is not None else opts.scheduler
    if own:
        client, cluster = connect(address, workers if workers is not None else opts.workers, opts.retries,
                                  opts.connect_timeout_s)
    progress = Progress(sweep.name, len(sweep.points), len(rows), stream)
    watch = _WorkerWatch(client, progress, address or "the local cluster", opts.no_worker_timeout_s,
                         resume_hint(sweep, out))
    futures: dict[Any, Point] = {}
    try:
        for p in todo:
            path = str(point_dir(out, p) / "trace.h5") if traced else None
            fut = client.submit(run_point, p.scenario, path, key=f"cimsim-point-{p.key}", pure=False,
                                retries=opts.retries)
            futures[fut] = p
        pending = set(futures)
        last_table = 0.0
        while pending:
            try:
                with client.as_current():
                    finished, pending = distributed.wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                finished = set()
            for fut in finished:
                point = futures[fut]
                result = _result(fut, distributed)
                row = make_row(sweep, point, result)
                record_point(out, point, row, result.get("summary"))
                rows[point.key] = row
                outcome.ran.append(point.key)
                status = PointStatus(result["status"])
                outcome.ok += status is PointStatus.OK
                outcome.failed += status is PointStatus.FAILED
                outcome.lost += status is PointStatus.LOST
                if on_finish is not None:
                    on_finish(point, row)
            if finished and (not pending or time.monotonic() - last_table >= TABLE_EVERY_S):
                write_table(out, sweep, rows)
                last_table = time.monotonic()
            progress.update(outcome.ok + outcome.failed + outcome.lost, outcome.failed,
                            _running(client, pending) if progress.live else 0)
            if pending:
                watch.check(outcome.skipped + outcome.ok + outcome.failed + outcome.lost, outcome.total)
    except BaseException:
        for fut in futures:
            fut.cancel()
        if rows:
            write_table(out, sweep, rows)
        raise
    finally:
        progress.close()
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    write_table(out, sweep, rows)
    outcome.wall_s = time.perf_counter() - t0
    return outcome


def resume_hint(sweep: Sweep, out: Path) -> str:
    """The command that resumes `sweep` in `out` (runs only the points without a row)."""
    return f"rerun `cimsim sweep {sweep.path} -o {out}` to resume"


class _WorkerWatch:
    """Says on stderr when the cluster loses workers, and gives up (a `SimulationError` with the
    resume line) after `timeout_s` without any worker."""

    def __init__(self, client: Any, progress: Progress, where: str, timeout_s: float, resume: str) -> None:
        self.client, self.progress, self.where = client, progress, where
        self.timeout_s, self.resume = timeout_s, resume
        self.last_look = time.monotonic()
        self.count: int | None = None
        self.empty_since: float | None = None

    def check(self, done: int, total: int) -> None:
        """Look at the workers (at most every `WORKERS_EVERY_S`)."""
        now = time.monotonic()
        if self.count is not None and now - self.last_look < WORKERS_EVERY_S:
            return
        self.last_look = now
        try:
            count = len(self.client.nthreads())
        except Exception:
            return  # the scheduler did not answer this time; the client reconnects or fails the futures
        if self.count is not None and count < self.count:
            self.progress.say(f"{self.count - count} worker(s) of {self.where} left, {count} remain")
        if count == 0 and self.empty_since is None:
            self.empty_since = now
            self.progress.say(f"{self.where} has no worker; waiting up to {self.timeout_s:g} s for one "
                              "(sweep.no_worker_timeout_s)")
        elif count and self.empty_since is not None:
            self.empty_since = None
            self.progress.say(f"{count} worker(s) joined {self.where}")
        self.count = count
        if self.empty_since is not None and now - self.empty_since >= self.timeout_s:
            raise SimulationError(f"sweep {self.progress.name}: no worker at {self.where} for "
                                  f"{self.timeout_s:g} s; {done}/{total} points done; {self.resume}")


def _result(fut: Any, distributed: Any) -> dict[str, Any]:
    """A finished future's result dict; a task lost with its workers becomes a LOST result."""
    try:
        result: dict[str, Any] = fut.result()
        return result
    except distributed.KilledWorker as exc:
        why = f"lost: its worker died while running it, more often than allowed ({' '.join(str(exc).split())})"
    except Exception as exc:  # the task itself catches cimsim's errors; this is the infrastructure
        why = f"lost: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return {"status": PointStatus.LOST.value, "exit_code": 1, "error": why[:500], "wall_s": 0.0, "cpu_s": 0.0,
            "summary": None}


def _running(client: Any, pending: set[Any]) -> int:
    """How many of the pending points a worker is processing now."""
    keys = {f.key for f in pending}
    try:
        processing = client.processing()
    except Exception:
        return 0
    return sum(1 for tasks in processing.values() for k in tasks if k in keys)
