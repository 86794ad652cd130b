"""`cimsim roofline SCENARIO --batch 1,2,4,... [--json] [-o PLOT.png]`: the roofline from the
simulation (Meng & Lu 2024, Fig. 6's axes).

The scenario is simulated at each batch (with `mapping.weights = "reload"` a network larger
than the chip streams its weights from DRAM once per batch). Each point gives the attained
throughput, 2 x MACs per image x batch / run time (TOPS; an MVM's multiply and add are two
operations), against the operational intensity, MACs per weight byte read x batch: with
reloading the weights are read from DRAM once per batch, so the intensity grows with the batch;
a stationary chip reads them once for ever (its points sit at the right, compute-bound). The
analytic roofline beside them: min(compute roof, DRAM slope x intensity), where the compute roof
is every core's crossbar doing one full MVM per timestep (cores x rows x cols x 2 ops per
timestep) and the slope is the DRAM bandwidth x 2 ops per MAC. `--reference-roof TOPS` adds the
roofline of the machine the simulation stands in for, with its own compute roof over the same DRAM
slope (Meng & Lu's TPU: 92 TOPS, 34 GB/s), and that machine's curve: its roofline at each batch's
intensity.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cimsim.config import load_scenario
from cimsim.errors import InputError
from cimsim.network import Network, load_model

MAX_POINTS = 64
"""Most batch sizes one roofline simulates."""


def add_parser(sub: Any) -> None:
    """The `roofline` subcommand."""
    p = sub.add_parser("roofline", help="attained TOPS against operational intensity at several batch sizes, "
                                        "over the chip's compute roof and DRAM slope (plot needs cimsim[plot])")
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--batch", required=True, metavar="B1,B2,...", help="batch sizes to simulate, e.g. 1,2,4,8")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any scenario key")
    p.add_argument("--json", action="store_true", help="print the points and the roofline as JSON")
    p.add_argument("-o", "--output", metavar="PLOT.png", help="also draw the roofline into this file")
    p.add_argument("--reference-roof", type=float, default=0.0, metavar="TOPS",
                   help=("also the roofline of a reference machine with this compute roof over the scenario's DRAM "
                         "bandwidth, e.g. 92 for Meng & Lu's TPU (34 GB/s: --set dram.bandwidth_gbps=34)"))
    p.add_argument("--reference-name", default="reference machine", metavar="NAME",
                   help="what the reference roofline is called in the plot, e.g. TPU")


def parse_batches(text: str) -> list[int]:
    """`1,2,4` -> [1, 2, 4]; a bad list is an InputError naming it."""
    try:
        batches = [int(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"--batch {text!r}: must be positive integers separated by commas, e.g. 1,2,4") from None
    if not batches or any(b < 1 for b in batches) or len(batches) > MAX_POINTS:
        raise InputError(f"--batch {text!r}: 1 to {MAX_POINTS} positive integers")
    return sorted(set(batches))


def network_macs(net: Network) -> int:
    """MACs of one image (every conv and fc, dense: a grouped conv counts its groups' MACs only)."""
    total = 0
    for layer in net.layers:
        if layer.kind in ("conv", "fc"):
            total += layer.kernel_rows // max(1, layer.groups) * layer.kernel_cols * layer.pixels_out
    return total


def network_weight_bytes(net: Network) -> int:
    """Bytes of the weights (`bits` each) of every conv and fc."""
    weights = sum(layer.kernel_rows // max(1, layer.groups) * layer.kernel_cols
                  for layer in net.layers if layer.kind in ("conv", "fc"))
    return -(-weights * net.bits // 8)


def roofline(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate every batch and return the points and the analytic roofline."""
    from cimsim.runner import run

    batches = parse_batches(args.batch)
    base = load_scenario(args.scenario, args.set)
    net = load_model(base.model)
    macs, weight_bytes = network_macs(net), network_weight_bytes(net)
    chip = base.chip
    points = []
    for batch in batches:
        scenario = load_scenario(args.scenario, [*args.set, f"run.batch={batch}"])
        summary = run(scenario).summary
        seconds = summary["simulated_cycles"] / (chip.clock_mhz * 1e6)
        reload = summary.get("weights") == "reload"
        read = summary["dram_bytes"]["weights"] if reload else weight_bytes
        points.append({
            "batch": batch, "weights": "reload" if reload else "stationary", "cores": summary["cores"],
            "seconds": seconds, "tops": 2 * macs * batch / seconds / 1e12 if seconds else 0.0,
            "intensity_macs_per_byte": macs * batch / max(1, read), "weight_bytes_read": read,
            "latency_timesteps": summary["latency_timesteps"],
        })
    cores = max(p["cores"] for p in points)
    timestep_s = chip.cycles_per_timestep / (chip.clock_mhz * 1e6)
    roof = cores * chip.crossbar_rows * chip.crossbar_cols * 2 / timestep_s / 1e12
    slope = base.dram.bandwidth_gbps * 1e9 * 2 / 1e12  # TOPS per MAC/byte
    reference = float(getattr(args, "reference_roof", 0.0) or 0.0)
    if reference < 0:
        raise InputError(f"--reference-roof {reference:g}: must be a positive number of TOPS")
    for p in points:
        p["roofline_tops"] = min(roof, slope * p["intensity_macs_per_byte"])
        if reference:
            p["reference_tops"] = min(reference, slope * macs * p["batch"] / weight_bytes)
    result = {"scenario": base.name, "model": net.name, "macs_per_image": macs, "weight_bytes": weight_bytes,
              "compute_roof_tops": roof, "dram_slope_tops_per_mac_per_byte": slope,
              "ridge_intensity_macs_per_byte": roof / slope, "points": points}
    if reference:
        result["reference"] = {"name": str(getattr(args, "reference_name", "reference machine")),
                               "compute_roof_tops": reference, "ridge_intensity_macs_per_byte": reference / slope,
                               "ridge_batch": reference / slope * weight_bytes / macs}
    return result


def format_table(result: dict[str, Any]) -> str:
    """The points as a terminal table."""
    lines = [(f"{result['scenario']}: {result['model']}, {result['macs_per_image']:,} MACs per image, "
              f"{result['weight_bytes']:,} weight bytes; compute roof {result['compute_roof_tops']:.3f} TOPS, "
              f"ridge at {result['ridge_intensity_macs_per_byte']:.1f} MACs/byte"),
             f"{'batch':>6} {'weights':<10} {'MACs/byte':>10} {'TOPS':>9} {'roofline':>9} {'latency ts':>10}"]
    ref = result.get("reference")
    if ref:
        lines[0] += (f"; {ref['name']}: roof {ref['compute_roof_tops']:g} TOPS, ridge at "
                     f"{ref['ridge_intensity_macs_per_byte']:.1f} MACs/byte (batch {ref['ridge_batch']:.3g})")
        lines[1] += f" {'reference':>9}"
    for p in result["points"]:
        lines.append(f"{p['batch']:>6} {p['weights']:<10} {p['intensity_macs_per_byte']:>10.1f} {p['tops']:>9.4f} "
                     f"{p['roofline_tops']:>9.4f} {p['latency_timesteps']:>10}"
                     + (f" {p['reference_tops']:>9.4f}" if ref else ""))
    return "\n".join(lines)


def plot_roofline(result: dict[str, Any], output: str | Path) -> Path:
    """Draw the simulated points over the analytic roofline (log-log) into `output`."""
    from cimsim.report.figures import pyplot, save_figure

    plt = pyplot()
    pts = result["points"]
    ref = result.get("reference")
    slope = result["dram_slope_tops_per_mac_per_byte"]
    xs = [p["intensity_macs_per_byte"] for p in pts]
    span = [*xs, result["ridge_intensity_macs_per_byte"], *([ref["ridge_intensity_macs_per_byte"]] if ref else [])]
    lo, hi = min(span) / 2, max(span) * 2
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if ref:
        ax.plot(grid, [min(ref["compute_roof_tops"], slope * x) for x in grid], color="k",
                label=f"{ref['name']}'s roofline ({ref['compute_roof_tops']:g} TOPS peak, DRAM slope)")
        ax.plot([result["macs_per_image"] * p["batch"] / result["weight_bytes"] for p in pts],
                [p["reference_tops"] for p in pts], "s", color="tab:blue", label=f"{ref['name']} at these batches")
        for p in pts:
            ax.annotate(str(p["batch"]), (result["macs_per_image"] * p["batch"] / result["weight_bytes"],
                                          p["reference_tops"]), textcoords="offset points", xytext=(-4, 6),
                        fontsize=7, color="tab:blue")
    ax.plot(grid, [min(result["compute_roof_tops"], slope * x) for x in grid], color="0.45",
            linestyle=":" if ref else "-",
            label=f"simulated chip's roofline ({result['compute_roof_tops']:.3g} TOPS, DRAM slope)")
    ax.plot(xs, [p["tops"] for p in pts], "o-", color="tab:red", label="simulated")
    for p in pts:
        ax.annotate(str(p["batch"]), (p["intensity_macs_per_byte"], p["tops"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.yaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("operational intensity (MACs per weight byte read x batch)")
    ax.set_ylabel("attained TOPS")
    ax.set_title(f"{result['model']}: roofline from the simulation (labels: batch)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, output, dpi=120)


def roofline_command(args: argparse.Namespace) -> str:
    """What `cimsim roofline` prints (and draws, with -o: checked before anything is simulated)."""
    if args.output:
        from cimsim.report.figures import picture_format

        picture_format(args.output)
    result = roofline(args)
    if args.output:
        plot_roofline(result, args.output)
    return json.dumps(result, indent=2) if args.json else format_table(result)
