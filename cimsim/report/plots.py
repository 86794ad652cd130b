"""Pictures of a traced run (matplotlib, the optional `plot` extra; Agg backend, PNG files).

- `progress`: image 0's cumulative output pixels per layer against the timestep
  (Dazzi 2021 Fig. 10), from the compute events of each layer's representative core
  (its first merge core), coloured by the layer's output channels;
- `occupancy`: what every core did in every timestep (computing, stalled by cause, idle);
- `stalls`: stall timesteps per layer by cause, stacked;
- `links`: utilisation of every NoC link on the core array (needs link events);
- `energy`: energy per image by layer and component kind (`energy.enabled`);
- `power`: power over time by component kind, from the energy per time bin the trace
  stores (`energy.enabled`, trace level events), with the image completions marked.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cimsim.report.figures import PlotError, picture_format, pyplot, save_figure

if TYPE_CHECKING:
    from cimsim.trace import Trace
    from cimsim.trace.reader import PowerSeries

KINDS = ("progress", "occupancy", "stalls", "links", "energy", "power")
"""What `cimsim plot --kind` draws."""
MAX_COLUMNS = 1200
"""Occupancy map: at most this many timestep columns (longer runs are binned, majority state)."""
CAUSE_COLOURS = {
    "input": "#9ecae1", "residual": "#c994c7", "partial": "#fdae6b", "output": "#de2d26", "sram": "#8c6d31",
    "compute": "#636363", "noc": "#fd8d3c", "dram": "#756bb1", "recovery": "#e7298a",
}
FAMILIES = ("Reds", "Blues", "Greens", "Purples", "Oranges", "Greys")


def _need_events(trace: Trace, kind: str) -> None:
    if trace.level != "events":
        raise PlotError(f"{trace.path}: --kind {kind} needs the events, and this trace has level "
                        f"{trace.level!r}: rerun with --trace-level events")


def plot(trace: Trace, kind: str, out: str | Path) -> Path:
    """Draw picture `kind` of the trace into `out` (PNG, or any format matplotlib writes named
    by the suffix), written atomically: an existing file survives any failure."""
    if kind not in KINDS:
        raise PlotError(f"--kind {kind}: must be one of {', '.join(KINDS)}")
    plt = pyplot()
    picture_format(out, [trace.path])
    draw = {"progress": _progress, "occupancy": _occupancy, "stalls": _stalls, "links": _links, "energy": _energy,
            "power": _power}
    fig = draw[kind](trace, plt)
    return save_figure(fig, out, [trace.path], dpi=110, bbox_inches="tight")


def _title(trace: Trace) -> str:
    s = trace.summary
    return f"{s['scenario']}: {s['model']}, {s['dataflow']} dataflow, batch {s['batch']}"


def progress_curves(trace: Trace, image: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Layer -> (timesteps, outputs of `image` done by the end of each) on its representative core."""
    _need_events(trace, "progress")
    layers = trace.mapping["layers"]
    rep = np.full(int(trace.mapping["cores"]["id"].max()) + 1, -1, dtype=np.int64)
    rep[layers["representative_core"]] = layers["index"]
    code = trace.kind_names.index("compute")
    parts: list[np.ndarray] = []
    for block in trace.iter_events():
        sel = block[(block["kind"] == code) & (block["image"] == image)]
        sel = sel[rep[sel["core"]] == sel["layer"]]
        parts.append(sel[["timestep", "layer", "first", "count"]])
    ev = np.concatenate(parts) if parts else np.zeros(0, [("timestep", "<i4"), ("layer", "<i2")])
    out = {}
    for row in layers:
        mine = ev[ev["layer"] == row["index"]]
        out[str(row["name"])] = (mine["timestep"].astype(np.int64), (mine["first"] + mine["count"]).astype(np.int64))
    return out


def _progress(trace: Trace, plt: Any) -> Any:
    curves = progress_curves(trace)
    layers = trace.mapping["layers"]
    channels = sorted({int(c) for c in layers["out_channels"]})
    family = {c: plt.get_cmap(FAMILIES[i % len(FAMILIES)]) for i, c in enumerate(channels)}
    members = {c: [str(r["name"]) for r in layers if r["out_channels"] == c] for c in channels}
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in layers:
        name, c = str(row["name"]), int(row["out_channels"])
        ts, done = curves[name]
        if not len(ts):
            continue
        shade = 0.45 + 0.5 * members[c].index(name) / max(1, len(members[c]) - 1)
        ax.step(np.concatenate([[ts[0]], ts + 1]), np.concatenate([[0], done]), where="post", lw=1.1,
                color=family[c](shade))
    for c in channels:
        names = members[c]
        span = names[0] if len(names) == 1 else f"{names[0]}-{names[-1]}"
        ax.plot([], [], color=family[c](0.75), lw=2, label=f"{c} output channels ({span})")
    s = trace.summary
    ax.set_xlabel("timestep")
    ax.set_ylabel("output pixels computed (image 0)")
    ax.set_title(f"{_title(trace)}\nlatency {s['latency_timesteps']} timesteps", fontsize=10)
    ax.set_xlim(0, s["latency_timesteps"] + int(trace.run["image_start_timestep"][0]))
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def occupancy(trace: Trace, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, list[str], int]:
    """(cores x columns state codes, state names, timesteps per column). Code 0 = idle,
    1 = computing, 2 + i = stalled by `cause_names[i + 1]`; a column is the majority state
    of its timesteps."""
    _need_events(trace, "occupancy")
    cores = trace.mapping["cores"]
    n_cores = int(cores["id"].max()) + 1
    kinds = trace.kind_names
    comp, stall = kinds.index("compute"), kinds.index("stall")
    end = 1
    for block in trace.iter_events():
        if len(block):
            end = max(end, int((block["timestep"] + np.where(block["kind"] == stall, block["count"], 1)).max()))
    state = np.zeros((n_cores, end), dtype=np.int8)
    for block in trace.iter_events():
        c = block[block["kind"] == comp]
        state[c["core"], c["timestep"]] = 1
        st = block[block["kind"] == stall]
        for core, ts, n, cause in zip(st["core"].tolist(), st["timestep"].tolist(), st["count"].tolist(),
                                      st["cause"].tolist(), strict=True):
            state[core, ts:ts + n] = 1 + cause
    names = ["idle", "computing", *(f"stalled: {c}" for c in trace.cause_names[1:])]
    width = -(-end // max_columns)
    if width > 1:
        cols = -(-end // width)
        padded = np.zeros((n_cores, cols * width), dtype=np.int8)
        padded[:, :end] = state
        blocks = padded.reshape(n_cores, cols, width)
        counts = np.stack([(blocks == s).sum(axis=2) for s in range(len(names))])
        state = counts.argmax(axis=0).astype(np.int8)
    return state, names, width


def _occupancy(trace: Trace, plt: Any) -> Any:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    state, names, width = occupancy(trace)
    colours = ["#f7f7f7", "#31a354", *(CAUSE_COLOURS.get(c, "#000000") for c in trace.cause_names[1:])]
    used = sorted(set(np.unique(state).tolist()) | {0, 1})
    cores = trace.mapping["cores"]
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.14 * len(cores) + 1.5)))
    ax.imshow(state, aspect="auto", interpolation="nearest", cmap=ListedColormap(colours), vmin=0,
              vmax=len(colours) - 1, extent=(0, state.shape[1] * width, state.shape[0] - 0.5, -0.5))
    step = max(1, len(cores) // 60)
    ax.set_yticks(cores["id"][::step], [str(n) for n in cores["name"][::step]], fontsize=6)
    ax.set_xlabel("timestep" + (f" (columns of {width} timesteps, majority state)" if width > 1 else ""))
    ax.set_title(f"{_title(trace)}: core occupancy", fontsize=10)
    ax.legend(handles=[Patch(color=colours[s], label=names[s]) for s in used], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    return fig


def _stalls(trace: Trace, plt: Any) -> Any:
    layers = trace.mapping["layers"]
    run = trace.run
    row_of = {int(c): i for i, c in enumerate(run["cores"]["id"])}
    stalls = np.array([run["core_stalls"][row_of[int(c)]] for c in layers["representative_core"]])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(layers) + 2), 4.5))
    x = np.arange(len(layers))
    bottom = np.zeros(len(layers))
    for i, cause in enumerate(trace.cause_names):
        if i == 0 or i >= stalls.shape[1] or not stalls[:, i].any():
            continue
        ax.bar(x, stalls[:, i], bottom=bottom, color=CAUSE_COLOURS.get(cause, "#000000"), label=cause, width=0.8)
        bottom += stalls[:, i]
    ax.set_xticks(x, [str(n) for n in layers["name"]], rotation=90, fontsize=7)
    ax.set_ylabel("stalled timesteps (representative core)")
    ax.set_title(f"{_title(trace)}: stalls by cause", fontsize=10)
    if bottom.any():
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no stalls", transform=ax.transAxes, ha="center")
    ax.grid(axis="y", alpha=0.3)
    return fig


_ROUTER = re.compile(r"r(\d+)\.(\d+)")


def link_utilisation(trace: Trace) -> dict[str, float]:
    """Link name -> busy cycles / simulated cycles."""
    _need_events(trace, "links")
    if trace.n_links == 0:
        raise PlotError(f"{trace.path}: no NoC link events in this trace (the run used no modelled NoC links)")
    links = trace.links
    busy = np.bincount(links["link"], weights=links["cycles"], minlength=len(trace.link_names))
    total = max(1, int(trace.run["cycles"]))
    return {name: float(busy[i]) / total for i, name in enumerate(trace.link_names)}


def _links(trace: Trace, plt: Any) -> Any:
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    util = link_utilisation(trace)
    rows, cols = (int(v) for v in trace.file["mapping"].attrs["array"])
    cores = trace.mapping["cores"]
    fig, ax = plt.subplots(figsize=(1.3 * cols + 2.5, 1.3 * rows + 1))
    for c in cores:
        ax.add_patch(plt.Rectangle((c["pos_col"] - 0.3, c["pos_row"] - 0.3), 0.6, 0.6, color="#deebf7", zorder=1))
        ax.text(c["pos_col"], c["pos_row"], str(c["name"]), ha="center", va="center", fontsize=6, zorder=2)
    norm = Normalize(0, max(1e-9, max(util.values())))
    cmap = colormaps["inferno_r"]
    other = []
    for name, u in util.items():
        ends = [(int(r), int(c)) for r, c in _ROUTER.findall(name)]
        if len(ends) != 2 or ends[0] == ends[1]:
            other.append((name, u))
            continue
        (r0, c0), (r1, c1) = ends
        length = max(1e-9, float(np.hypot(r1 - r0, c1 - c0)))
        dr, dc = 0.08 * (c1 - c0) / length, -0.08 * (r1 - r0) / length  # the two directions side by side
        ax.annotate("", xy=(c1 + dc, r1 + dr), xytext=(c0 + dc, r0 + dr), zorder=3,
                    arrowprops={"arrowstyle": "->", "color": cmap(norm(u)), "lw": 1 + 4 * norm(u),
                                "shrinkA": 12, "shrinkB": 12})
    ax.set_xlim(-0.7, cols - 0.3)
    ax.set_ylim(rows - 0.3, -0.7)
    ax.set_aspect("equal")
    ax.set_xlabel("array column")
    ax.set_ylabel("array row")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="link utilisation (busy / simulated cycles)")
    note = f"; {len(other)} port links not drawn, busiest {max(other, key=lambda t: t[1])[0]}" if other else ""
    ax.set_title(f"{_title(trace)}: NoC links{note}", fontsize=9)
    return fig


def _energy(trace: Trace, plt: Any) -> Any:
    """Energy per image by layer and by component kind, dynamic, clocked and static stacked (`energy.enabled`)."""
    energy = trace.summary.get("energy")
    if not isinstance(energy, dict):
        raise PlotError(f"{trace.path}: no energy in this trace (run the scenario with energy.enabled = true)")
    images = max(1, int(energy["images"]))
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.25 * len(energy["by_layer"]) + 5), 4.5),
                             gridspec_kw={"width_ratios": [3, 1]})
    for ax, part, label in ((axes[0], energy["by_layer"], "layer"), (axes[1], energy["by_component"], "component")):
        order = {n: i for i, n in enumerate(trace.layer_names)}
        names = sorted(part, key=lambda n: (order.get(n, len(order)), n))  # layers in dataflow order
        x = np.arange(len(names))
        dyn = np.array([part[n]["dynamic_J"] for n in names]) / images * 1e6
        stat = np.array([part[n]["static_J"] for n in names]) / images * 1e6
        clocked = np.array([part[n].get("clocked_J", 0.0) for n in names]) / images * 1e6
        ax.bar(x, dyn, color="#3182bd", label="dynamic", width=0.8)
        ax.bar(x, clocked, bottom=dyn, color="#9e9ac8", label="clocked", width=0.8)
        ax.bar(x, stat, bottom=dyn + clocked, color="#fdae6b", label="static", width=0.8)
        ax.set_xticks(x, names, rotation=90, fontsize=7)
        ax.set_xlabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("energy per image (uJ, whole run / batch)")
    axes[0].legend(fontsize=8)
    uncharged = ", ".join(sorted(energy["uncharged_counts"])) or "none"
    fig.suptitle(f"{_title(trace)}: energy ({energy['table']}; uncharged: {uncharged})", fontsize=8)
    return fig


COMPONENT_COLOURS = {
    "dfc": "#fdae6b", "sram": "#3182bd", "crossbar": "#31a354", "dac": "#9ecae1", "adc": "#de2d26",
    "digital": "#756bb1", "router": "#fd8d3c", "link": "#e7298a", "dram": "#636363", "core": "#bdbdbd",
}


def power_series(trace: Trace) -> PowerSeries:
    """The trace's energy over time; PlotError if it has none (and why)."""
    if not isinstance(trace.summary.get("energy"), dict):
        raise PlotError(f"{trace.path}: no energy in this trace (run the scenario with energy.enabled = true)")
    _need_events(trace, "power")
    series = trace.energy_power
    if series is None:
        raise PlotError(f"{trace.path}: no energy over time in this trace (schema version {trace.schema_version}; "
                        "rerun it with this cimsim)")
    return series


def _power(trace: Trace, plt: Any) -> Any:
    """Power over time: the static and clocked power of every powered instance at the bottom, the dynamic
    power of each component kind stacked on it; image completions marked."""
    series = power_series(trace)
    width = np.diff(series.edges_s)
    dynamic = np.divide(series.dynamic_J, width[:, None], out=np.zeros_like(series.dynamic_J),
                        where=width[:, None] > 0)
    edges_us = series.edges_s * 1e6
    used = [i for i, _ in enumerate(series.components) if dynamic[:, i].any()]
    static = float(series.static_W.sum())
    powered = ", ".join(c for c, w in zip(series.components, series.static_W, strict=True) if w) or "none"
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = np.repeat(edges_us, 2)[1:-1]  # a step curve: each bin's power over its whole length
    ys = [np.repeat(dynamic[:, i], 2) for i in used]
    labels = [f"{series.components[i]} (dynamic)" for i in used]
    colours = [COMPONENT_COLOURS.get(series.components[i], "#000000") for i in used]
    if static:
        ys.insert(0, np.full(len(x), static))
        labels.insert(0, f"static + clocked ({powered}): {static * 1e3:.4g} mW")
        colours.insert(0, "#d9d9d9")
    ax.stackplot(x, ys, labels=labels, colors=colours, linewidth=0)
    cpt = int(trace.file["events"].attrs["timestep_cycles"])
    code = trace.kind_names.index("image_done")
    done = [int(c) for block in trace.iter_events() for c in block["cycle"][block["kind"] == code]]
    for i, cycle in enumerate(sorted(done)):
        ax.axvline(cycle / series.clock_hz * 1e6, color="#555555", lw=0.6, ls="--",
                   label="image completed" if i == 0 else None)
    energy = trace.summary["energy"]
    ax.set_xlim(0, edges_us[-1])
    ax.set_ylim(0, None)
    ax.set_xlabel(f"time (us; bins of {series.bin_cycles} cycles = {series.bin_cycles / cpt:g} timesteps)")
    ax.set_ylabel("power (W)")
    uncharged = textwrap.fill(", ".join(sorted(energy["uncharged_counts"])) or "none", 140)
    ax.set_title(f"{_title(trace)}: power ({energy['table']}, average {energy['average_power_W']:.3g} W)\n"
                 f"uncharged: {uncharged}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
