"""Pictures of a sweep's results table: a metric against a key, optionally coloured by
another column, and the Pareto front of two objectives (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cimsim.errors import InputError
from cimsim.report.figures import picture_format, pyplot, save_figure
from cimsim.sweep.results import read_table

MAX_LEGEND = 12
"""A colour column with at most this many distinct values gets a legend; more, a colour bar."""


def pareto_front(xs: list[float], ys: list[float], x_better: str = "low", y_better: str = "high") -> list[int]:
    """Indices of the points no other point dominates (at least as good in both, better in
    one), sorted by x. `x_better`/`y_better`: "low" or "high"."""
    sx = 1.0 if x_better == "low" else -1.0
    sy = 1.0 if y_better == "low" else -1.0
    pts = [(sx * x, sy * y, i) for i, (x, y) in enumerate(zip(xs, ys, strict=True))]
    pts.sort()
    front: list[int] = []
    best = float("inf")
    for _, y, i in pts:  # by x ascending (better first); keep strictly better y
        if y < best:
            front.append(i)
            best = y
    return sorted(front, key=lambda i: xs[i])


def plot_results(results: str | Path, x: str, y: str, out: str | Path, *, color: str | None = None,
                 line: bool = False, pareto: bool = False, x_better: str = "low", y_better: str = "high",
                 logx: bool = False, logy: bool = False, title: str | None = None) -> Path:
    """Draw column `y` against column `x` of the points that ran ("ok" rows) into `out` (PNG, or
    the format its suffix names), written atomically to exactly that name; `out` may not be `results`."""
    picture_format(out, [results])
    frame = read_table(results)
    for option, col in (("--x", x), ("--y", y), ("--color", color)):
        if col is not None and col not in frame.columns:
            raise InputError(f"{option} {col}: no such column in {results} (columns: {', '.join(frame.columns)})")
    if "status" in frame.columns:
        frame = frame[frame["status"] == "ok"]
    frame = frame.dropna(subset=[x, y])
    if frame.empty:
        raise InputError(f"{results}: no point that ran has both {x} and {y}")
    for option, col in (("--x", x), ("--y", y)):
        if not _numeric(frame[col]):
            raise InputError(f"{option} {col}: not a numeric column")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    if color is None:
        groups: list[tuple[Any, Any]] = [(None, frame)]
    else:
        groups = list(frame.groupby(color, sort=True, dropna=False))
    if color is not None and (len(groups) > MAX_LEGEND and _numeric(frame[color])):
        sc = ax.scatter(frame[x], frame[y], c=frame[color], cmap="viridis", s=28, zorder=3)
        fig.colorbar(sc, ax=ax, label=color)
    else:
        for value, g in groups:
            g = g.sort_values(x)
            label = None if color is None else f"{color} = {value}"
            ax.plot(g[x], g[y], marker="o", linestyle="-" if line else "none", markersize=5, label=label, zorder=3)
        if color is not None:
            ax.legend(fontsize=8)
    if pareto:
        xs, ys = [float(v) for v in frame[x]], [float(v) for v in frame[y]]
        front = pareto_front(xs, ys, x_better, y_better)
        ax.plot([xs[i] for i in front], [ys[i] for i in front], color="black", linewidth=1.2, linestyle="--",
                marker="s", markerfacecolor="none", markersize=9, label="Pareto front", zorder=4)
        ax.legend(fontsize=8)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    ax.set_title(title if title is not None else Path(results).resolve().parent.name, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, [results])


def _numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not bool(pd.api.types.is_bool_dtype(series))
