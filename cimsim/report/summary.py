"""Per-layer latency/throughput report of a run (live RunRecord or trace), as a dict and as a table."""

from __future__ import annotations

import csv as csvlib
import io
import shlex
from dataclasses import dataclass, field
from typing import Any

from cimsim.config.load import scenario_to_dict
from cimsim.mapping.plan import MappingPlan, layer_pixels
from cimsim.report.noc import noc_summary
from cimsim.sim.probe import StallCause
from cimsim.sim.record import RunRecord

STALL_CAUSES: tuple[str, ...] = tuple(c.value for c in StallCause)
CSV_COLUMNS = ("name", "cores", "pixels_per_timestep", "replicas", "crossbar_rows", "first_output_timestep",
               "last_output_timestep", "pixels", "active_timesteps")


@dataclass(frozen=True)
class Report:
    """The summary of a run (`summary` is what `cimsim run --json` prints)."""

    summary: dict[str, Any]
    record: RunRecord | None = field(default=None, compare=False, repr=False)
    """The raw run (per-core records, image 0's per-layer progress), for notebooks and tests."""

    def table(self) -> str:
        """Human-readable per-layer table plus the headline numbers."""
        s = self.summary
        energy = s.get("energy")
        per_layer = ({k: v["energy_J"] / max(1, energy["images"]) for k, v in energy["by_layer"].items()}
                     if energy else {})
        lines = [
            (f"scenario {s['scenario']}: {s['model']} on {s['cores']} cores, batch {s['batch']}, "
            f"{s['clocking']} clocking, {s['timestep_ns']:g} ns timestep"),
            *([f"overrides   {shlex.join(s['overrides'])}"] if s.get("overrides") else []),
            *([_balancer_line(s["balancer"])] if s.get("balancer") else []),
            f"latency     {s['latency_timesteps']} timesteps = {s['latency_ns']:,.0f} ns (image 0)",
            f"throughput  {s['throughput_images_per_s']:,.0f} images/s",
            "",
            (f"{'layer':<8} {'cores':>5} {'rate':>4} {'meth':>4} {'rows':>5} {'first':>6} {'last':>6} {'pixels':>6} "
            f"{'active':>7}{' uJ/img' if energy else ''}  stalls (timesteps by cause)"),
        ]
        for lay in s["layers"]:
            stalls = ", ".join(f"{k} {v}" for k, v in lay["stall_timesteps"].items() if v) or "-"
            lines.append(
                f"{lay['name']:<8} {lay['cores']:>5} {lay['pixels_per_timestep']:>4} {_method(lay):>4} "
                f"{lay['crossbar_rows']:>5} "
                f"{lay['first_output_timestep']:>6} {lay['last_output_timestep']:>6} {lay['pixels']:>6} "
                f"{lay['active_timesteps']:>7}{_energy_cell(per_layer, lay['name']) if energy else ''}  {stalls}"
            )
        lines.extend(result_lines(s))
        for w in s["warnings"]:
            lines.append(f"warning: {w}")
        return "\n".join(lines)

    def csv(self) -> str:
        """The per-layer table as CSV: one row per layer, stalls as `stall_<cause>` columns."""
        out = io.StringIO()
        writer = csvlib.writer(out, lineterminator="\n")
        writer.writerow([*CSV_COLUMNS, *(f"stall_{c}" for c in STALL_CAUSES)])
        for lay in self.summary["layers"]:
            writer.writerow([lay[k] for k in CSV_COLUMNS] + [lay["stall_timesteps"].get(c, 0) for c in STALL_CAUSES])
        return out.getvalue()


def result_lines(s: dict[str, Any]) -> list[str]:
    """The lines under a run's table: energy, ONNX agreement and accuracy, where the summary has them."""
    lines = _energy_lines(s["energy"]) if s.get("energy") else []
    agreement = s.get("functional", {}).get("onnx_agreement")
    if agreement:
        lines.append(_agreement_line(agreement))
    acc = s.get("functional", {}).get("accuracy")
    if acc and acc.get("images"):
        pct = {k: "-" if acc[k] is None else f"{100 * acc[k]:.2f} %" for k in ("chip", "int8_reference", "float")}
        lines.append(f"top-1 accuracy ({acc['images']} labelled images): chip {pct['chip']}, int8 reference "
                     f"{pct['int8_reference']}, float {pct['float']}")
    return lines


def _energy_cell(per_layer: dict[str, float], name: str) -> str:
    """A layer's energy per image in microjoules, 7 wide ('-' if it has none)."""
    joules = per_layer.get(name)
    return f"{'-':>7}" if joules is None else f"{joules * 1e6:>7.3f}"


def _energy_lines(e: dict[str, Any]) -> list[str]:
    """The energy headline under the table."""
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    steady = e.get("steady_state") or {}
    fill = e.get("fill") or {}
    per_image = steady.get("energy_per_image_J")
    fill_static = None if fill.get("static_J") is None else fill["static_J"] + fill.get("clocked_J", 0.0)
    area_note = "" if e["area_complete"] else f" (incomplete: no area for {', '.join(e['area_missing'])})"
    windows = (f"{num(None if per_image is None else per_image * 1e6, ',.3f')} uJ per image in steady state, "
               f"fill static+clocked {num(None if fill_static is None else fill_static * 1e6, ',.3f')} uJ"
               if "fill" in e else f"{e['energy_per_image_J'] * 1e6:,.3f} uJ per image (all segments)")
    lines = [
        (f"energy      {e['energy_J'] * 1e6:,.3f} uJ for the run ({e['table']}: dynamic "
         f"{e['dynamic_J'] * 1e6:,.3f}, static {e['static_J'] * 1e6:,.3f}, clocked "
         f"{e.get('clocked_J', 0.0) * 1e6:,.3f}), {windows}"),
        (f"power       {num(e['average_power_W'], '.4f')} W, {num(e['tops'], '.4f')} TOPS, "
         f"{num(e['tops_per_w'], '.3f')} TOPS/W, area {e['area_mm2']:.4f} mm2{area_note}"),
    ]
    if e["uncharged_counts"]:
        lines.append(f"uncharged   {', '.join(sorted(e['uncharged_counts']))} (no value in the table)")
    return lines


def _agreement_line(a: dict[str, Any]) -> str:
    """The functional run's agreement with onnxruntime (a model imported from ONNX)."""
    if not a.get("available"):
        return f"onnxruntime agreement: not available ({a.get('reason', '')})"
    l2 = "-" if a["rel_l2"] is None else f"{100 * a['rel_l2']:.2f} %"
    bad = f", {a['non_finite_images']} with non-finite outputs" if a.get("non_finite_images") else ""
    return (f"onnxruntime agreement: top-1 {100 * a['top1']:.1f} %, relative L2 of the logits {l2} "
            f"({a['images']} images{bad})")


def _balancer_line(b: dict[str, Any]) -> str:
    """The balanced dataflow's choice in one line."""
    return (f"balancer    {b['cores']} of max {b['max_cores']} cores, input {b['input_pixels_per_timestep']} "
            f"pixels/timestep, predicted interval {b['predicted_interval_timesteps']:g} timesteps/image "
            f"(bottleneck {_first(b['bottleneck'])})")


def _first(names: list[str], n: int = 3) -> str:
    """The first `n` names, then how many more."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _method(layer: dict[str, Any]) -> str:
    """Replica layout in short: '-' (one kernel), 'M1' or 'M2/2' (Method 2, dW = 2); '!' if it does not fit."""
    if layer["replicas"] == 1:
        return "-"
    text = "M1" if layer["replica_method"] == 1 else f"M2/{layer['replica_dw']}"
    return text + ("" if layer["replicas_fit"] else "!")


@dataclass(frozen=True)
class ReportInput:
    """Everything `make_report` reads, from a live run (`report_input`) or from a trace
    (`cimsim.report.replay`), so the two cannot compute different numbers."""

    scenario: dict[str, Any]
    """The resolved scenario as `cimsim.config.scenario_to_dict` gives it."""
    model: str
    """The network's name."""
    layer_pixels: dict[str, int]
    """Output pixels of each compute layer per image (`layer_pixels`)."""
    plan: MappingPlan
    batch: int
    image_start_ts: list[int]
    image_done_ts: list[int]
    cycles: int
    events: int
    active_timesteps: dict[int, int]
    """Core id -> timesteps in which it computed."""
    stall_timesteps: dict[int, dict[str, int]]
    """Core id -> cause -> stalled timesteps."""
    layer_first_ts: dict[str, int]
    layer_last_ts: dict[str, int]
    source_stall_timesteps: int
    extra: dict[str, Any] = field(default_factory=dict)
    """Fabric and DRAM statistics of the run: "links" (list of per-link dicts), "dram"."""


def report_input(record: RunRecord) -> ReportInput:
    """The report inputs of a live run."""
    return ReportInput(
        scenario=scenario_to_dict(record.scenario), model=record.network.name,
        layer_pixels=layer_pixels(record.network, record.plan), plan=record.plan, batch=record.batch,
        image_start_ts=list(record.image_start_ts), image_done_ts=list(record.image_done_ts),
        cycles=record.cycles, events=record.events,
        active_timesteps={c.id: c.active_timesteps for c in record.cores},
        stall_timesteps={c.id: dict(c.stall_timesteps) for c in record.cores},
        layer_first_ts=dict(record.layer_first_ts), layer_last_ts=dict(record.layer_last_ts),
        source_stall_timesteps=record.source_stall_timesteps, extra=dict(record.extra),
    )


def make_report(source: RunRecord | ReportInput) -> Report:
    """Latency, throughput and per-layer behaviour of a run (live, or rebuilt from a trace)."""
    if isinstance(source, RunRecord):
        return Report(summarize(report_input(source)), source)
    return Report(summarize(source), None)


def summarize(inp: ReportInput) -> dict[str, Any]:
    """The summary dict (`cimsim run --json`) of a run's report inputs."""
    chip = inp.scenario["chip"]
    timestep_ns = chip["cycles_per_timestep"] * 1000.0 / chip["clock_mhz"]
    latency = inp.image_done_ts[0] - inp.image_start_ts[0] + 1
    span = inp.image_done_ts[-1] - inp.image_start_ts[0] + 1
    layers = []
    for name, lm in inp.plan.layers.items():
        rep = lm.merge_cores[0]
        stalls = inp.stall_timesteps.get(rep, {})
        layers.append({
            "name": name,
            "cores": len(lm.cores),
            "core_ids": list(lm.cores),
            "pixels_per_timestep": lm.rate,
            "replicas": lm.replicas,
            "replica_method": lm.method,
            "replica_dw": lm.dw,
            "replicas_fit": lm.fits,
            "crossbar_rows": lm.rows,
            "crossbar_cols": lm.cols,
            "sram_method": lm.sram_method,
            "sram_words": lm.sram_words,
            "sram_write_cycles": list(lm.write_cycles),
            "sram_read_cycles": list(lm.read_cycles),
            "fused": list(lm.fused),
            "first_output_timestep": inp.layer_first_ts.get(name, -1),
            "last_output_timestep": inp.layer_last_ts.get(name, -1),
            "pixels": inp.layer_pixels[name],
            "active_timesteps": inp.active_timesteps.get(rep, 0),
            "stall_timesteps": {c: stalls.get(c, 0) for c in STALL_CAUSES},
        })
    summary: dict[str, Any] = {
        "scenario": inp.scenario["name"],
        "overrides": list(inp.scenario.get("overrides", [])),
        "model": inp.model,
        "clocking": chip["clocking"],
        "dataflow": inp.scenario["dataflow"]["mode"],
        "batch": inp.batch,
        "cores": inp.plan.core_count,
        "timestep_ns": timestep_ns,
        "latency_timesteps": latency,
        "latency_ns": latency * timestep_ns,
        "throughput_images_per_s": inp.batch / (span * timestep_ns * 1e-9),
        "total_timesteps": span,
        "image_interval_timesteps": ((inp.image_done_ts[-1] - inp.image_done_ts[0]) / (inp.batch - 1)
                                     if inp.batch > 1 else None),
        "simulated_cycles": inp.cycles,
        "events": inp.events,
        "source_stall_timesteps": inp.source_stall_timesteps,
        "warnings": list(inp.plan.warnings),
        "noc": noc_summary(inp.plan, inp.scenario["noc"]["topology"], inp.extra.get("links", []), timestep_ns),
        "dram": dict(inp.extra.get("dram", {"enabled": False})),
        "functional": dict(inp.extra.get("functional", {"enabled": False})),
        "layers": layers,
    }
    if "energy" in inp.extra:  # only when energy.enabled: summaries without it stay as they were
        layers_ = summary.pop("layers")
        summary["energy"] = dict(inp.extra["energy"])
        summary["layers"] = layers_
    if "balancer" in inp.extra:  # only in the balanced dataflow: other summaries stay as they were
        layers_ = summary.pop("layers")
        summary["balancer"] = inp.extra["balancer"]
        summary["layers"] = layers_
    return summary
