"""A sweep's results: one row per point, its files, and the Parquet/CSV table.

Layout of a sweep directory:

    DIR/sweep.json                 the expanded sweep (points, overrides, keys)
    DIR/points/<key>/row.json      the point's row (written last: its presence means done)
    DIR/points/<key>/summary.json  the point's full summary (`cimsim run --json`), when it ran
    DIR/points/<key>/trace.h5      its trace, with --trace
    DIR/results.parquet, .csv      every finished point's row, in point order

Every file is written beside its final name and renamed (`cimsim.io_safety`), so a crash or a
full disk leaves either the old file or the new one and no temporary file. None of the
directory's names may be an input of the sweep (`check_outputs`). The table is rebuilt from the rows, so it never lacks a point
whose row.json exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cimsim import io_safety
from cimsim.errors import InputError, OutputError
from cimsim.sim.probe import StallCause
from cimsim.sweep.spec import Point, Sweep, column_value
from cimsim.sweep.task import PointStatus

SUMMARY_METRICS = ("latency_timesteps", "latency_ns", "throughput_images_per_s", "image_interval_timesteps",
                   "total_timesteps", "batch", "cores", "simulated_cycles", "events", "source_stall_timesteps")
"""Top-level summary numbers copied into every row."""
ENERGY_METRICS = ("energy_J", "energy_per_image_J", "average_power_W", "tops", "tops_per_w", "area_mm2")
"""Numbers of the summary's `energy` section copied into the row (when the run has one)."""
HEAD = ("point", "index")
INT_COLUMNS = frozenset({"index", "exit_code", "latency_timesteps", "total_timesteps", "batch", "cores",
                         "simulated_cycles", "events", "source_stall_timesteps", "warnings"})
STATUS = ("status", "exit_code", "error", "wall_s", "cpu_s")


def point_dir(out: Path, point: Point) -> Path:
    """Where a point's files go."""
    return out / "points" / point.key


TABLE_FILES = ("sweep.json", "results.parquet", "results.csv")
"""The files a sweep writes at the top of its directory."""


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `path` atomically (`cimsim.io_safety.write_bytes`), creating its directory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    io_safety.write_bytes(path, text if isinstance(text, bytes) else text.encode("utf-8"))


def check_outputs(out: Path, sweep: Sweep) -> None:
    """Refuse (one `InputError` line) a results directory where a file the sweep writes is one of
    its inputs (the sweep file, the base scenario, a point's model or data), a directory or a device."""
    from cimsim.trace.writer import scenario_inputs

    inputs = dict.fromkeys([str(sweep.path), str(sweep.base)])
    for point in sweep.points:
        inputs.update(dict.fromkeys(scenario_inputs(point.scenario)))
    for name in TABLE_FILES:
        if (out / name).exists() or (out / name).is_symlink():
            io_safety.check_destination(out / name, inputs, what=f"-o {out}:")


def make_row(sweep: Sweep, point: Point, result: dict[str, Any]) -> dict[str, Any]:
    """The table row of a finished point: its key, coordinates, outcome and metrics."""
    row: dict[str, Any] = {"point": point.key, "index": point.index}
    row.update({k: column_value(point.values[k]) if k in point.values else None for k in sweep.keys})
    row.update({"status": result["status"], "exit_code": result["exit_code"], "error": result["error"],
                "wall_s": result["wall_s"], "cpu_s": result.get("cpu_s", 0.0)})
    summary = result.get("summary")
    if summary is not None:
        row.update(summary_metrics(summary))
    row["overrides"] = " ".join(point.overrides)
    return row


def summary_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of a summary: latency, throughput, cores, stalls by cause (summed over
    layers), the balancer's prediction and the energy figures when the summary has them."""
    out = {k: summary.get(k) for k in SUMMARY_METRICS}
    out["warnings"] = len(summary.get("warnings", []))
    totals = dict.fromkeys((c.value for c in StallCause), 0)
    for layer in summary.get("layers", []):
        for cause, n in layer.get("stall_timesteps", {}).items():
            totals[cause] = totals.get(cause, 0) + n
    out.update({f"stall_{c}": n for c, n in totals.items()})
    out["stall_total"] = sum(totals.values())
    links = summary.get("noc", {}).get("links") or []
    if links:
        out["noc_max_link_utilisation"] = max(float(link.get("utilisation", 0.0)) for link in links)
    balancer = summary.get("balancer")
    if isinstance(balancer, dict):
        out["balancer_interval_timesteps"] = balancer.get("predicted_interval_timesteps")
    energy = summary.get("energy")
    if isinstance(energy, dict):
        steady = energy.get("steady_state") or {}
        out.update({k: energy.get(k) for k in ENERGY_METRICS})
        out["steady_energy_per_image_J"] = steady.get("energy_per_image_J")
        out["steady_tops_per_w"] = steady.get("tops_per_w")
    return out


def record_point(out: Path, point: Point, row: dict[str, Any], summary: dict[str, Any] | None) -> None:
    """Write a finished point's summary, then its row (the row marks the point done)."""
    where = point_dir(out, point)
    if summary is not None:
        write_atomic(where / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(where / "row.json", json.dumps(row, indent=1) + "\n")


def done_rows(out: Path, points: Iterable[Point]) -> dict[str, dict[str, Any]]:
    """Rows of the points already finished in `out` (status ok or failed; lost points run again)."""
    rows = {}
    for point in points:
        path = point_dir(out, point) / "row.json"
        if not path.is_file():
            continue
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: run the point again
        if row.get("status") in (PointStatus.OK, PointStatus.FAILED) and row.get("point") == point.key:
            rows[point.key] = row
    return rows


def write_table(out: Path, sweep: Sweep, rows: dict[str, dict[str, Any]]) -> Path:
    """Rewrite DIR/results.parquet and DIR/results.csv from `rows`, in point order."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    ordered = sorted(rows.values(), key=lambda r: r["index"])
    columns = list(dict.fromkeys([*HEAD, *sweep.keys, *STATUS, *(k for r in ordered for k in r)]))
    frame = pd.DataFrame(ordered, columns=columns)
    for col in columns:  # counts stay integers where some rows (failed points) have none
        if col in INT_COLUMNS or col.startswith("stall_"):
            frame[col] = frame[col].astype("Int64")
    parquet = out / "results.parquet"
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    write_atomic(parquet, buffer.getvalue().to_pybytes())
    write_atomic(out / "results.csv", frame.to_csv(index=False))
    return parquet


def read_table(path: str | Path) -> Any:
    """A results table (Parquet) as a pandas DataFrame; a one-line error if it cannot be read."""
    try:
        import pandas as pd
    except ImportError:
        raise InputError("sweeps need pandas and pyarrow: pip install 'cimsim[sweep]'") from None
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise InputError(f"results table not found: {path}") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable Parquet table ({' '.join(str(exc).split())})") from None
