"""Per-layer latency/throughput report from a RunRecord, as a dict and as a table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from cimsim.sim.record import RunRecord

STALL_CAUSES = ("input", "residual", "partial", "output", "sram", "compute")


@dataclass(frozen=True)
class Report:
    """The summary of a run (`summary` is what `cimsim run --json` prints)."""

    summary: dict[str, Any]
    record: RunRecord | None = field(default=None, compare=False, repr=False)
    """The raw run (per-core records, image 0's per-layer progress), for notebooks and tests."""

    def table(self) -> str:
        """Human-readable per-layer table plus the headline numbers."""
        s = self.summary
        lines = [
            (f"scenario {s['scenario']}: {s['model']} on {s['cores']} cores, batch {s['batch']}, "
            f"{s['clocking']} clocking, {s['timestep_ns']:g} ns timestep"),
            f"latency     {s['latency_timesteps']} timesteps = {s['latency_ns']:,.0f} ns (image 0)",
            f"throughput  {s['throughput_images_per_s']:,.0f} images/s",
            "",
            (f"{'layer':<8} {'cores':>5} {'rate':>4} {'meth':>4} {'rows':>5} {'first':>6} {'last':>6} {'pixels':>6} "
            f"{'active':>7}  stalls (timesteps by cause)"),
        ]
        for lay in s["layers"]:
            stalls = ", ".join(f"{k} {v}" for k, v in lay["stall_timesteps"].items() if v) or "-"
            lines.append(
                f"{lay['name']:<8} {lay['cores']:>5} {lay['pixels_per_timestep']:>4} {_method(lay):>4} "
                f"{lay['crossbar_rows']:>5} "
                f"{lay['first_output_timestep']:>6} {lay['last_output_timestep']:>6} {lay['pixels']:>6} "
                f"{lay['active_timesteps']:>7}  {stalls}"
            )
        for w in s["warnings"]:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


def _method(layer: dict[str, Any]) -> str:
    """Replica layout in short: '-' (one kernel), 'M1' or 'M2/2' (Method 2, dW = 2); '!' if it does not fit."""
    if layer["replicas"] == 1:
        return "-"
    text = "M1" if layer["replica_method"] == 1 else f"M2/{layer['replica_dw']}"
    return text + ("" if layer["replicas_fit"] else "!")


def make_report(record: RunRecord) -> Report:
    """Latency, throughput and per-layer behaviour of a run."""
    sc = record.scenario
    cpt = sc.chip.cycles_per_timestep
    timestep_ns = cpt * 1000.0 / sc.chip.clock_mhz
    latency = record.image_done_ts[0] - record.image_start_ts[0] + 1
    span = record.image_done_ts[-1] - record.image_start_ts[0] + 1
    per_core = {c.id: c for c in record.cores}
    layers = []
    for name, lm in record.plan.layers.items():
        rep = per_core[lm.merge_cores[0]]
        stalls: dict[str, int] = defaultdict(int)
        for k, v in rep.stall_timesteps.items():
            stalls[k] += v
        layer = record.network.layer(name)
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
            "first_output_timestep": record.layer_first_ts.get(name, -1),
            "last_output_timestep": record.layer_last_ts.get(name, -1),
            "pixels": layer.out_h * layer.out_w if layer.kind == "conv" else 1,
            "active_timesteps": rep.active_timesteps,
            "stall_timesteps": {c: stalls.get(c, 0) for c in STALL_CAUSES},
        })
    summary = {
        "scenario": sc.name,
        "model": record.network.name,
        "clocking": sc.chip.clocking,
        "dataflow": sc.dataflow.mode,
        "batch": record.batch,
        "cores": record.plan.core_count,
        "timestep_ns": timestep_ns,
        "latency_timesteps": latency,
        "latency_ns": latency * timestep_ns,
        "throughput_images_per_s": record.batch / (span * timestep_ns * 1e-9),
        "total_timesteps": span,
        "image_interval_timesteps": ((record.image_done_ts[-1] - record.image_done_ts[0]) / (record.batch - 1)
                                     if record.batch > 1 else None),
        "simulated_cycles": record.cycles,
        "events": record.events,
        "source_stall_timesteps": record.source_stall_timesteps,
        "warnings": list(record.plan.warnings),
        "layers": layers,
    }
    return Report(summary, record)
