"""Running a network larger than the chip (`mapping.weights = "reload"`, Meng & Lu 2024's
weight-streaming case): segment by segment, each programmed from DRAM, the whole batch passing
through one segment before the next is programmed (`run.batch` is then each weight's reuse).

Each segment (`cimsim.mapping.segments`) is simulated as a chip of its own on the full array:
its cores first read their weights from the DRAM and program them (`cimsim.hw.weights`, the
`weights` stall), its input streams from the DRAM (the images, or the previous segment's spilled
output map, at the rate the DRAM can deliver), and its output goes back to the DRAM (the
logits, or the spill the next segment reads). Weight reads, spills and the image stream share
the one DRAM channel within a segment. Segments follow one another: segment k + 1 starts at the
timestep after segment k has finished and its last DRAM write has completed, so the run's length
is the sum of the segments'. With `functional.enabled` the values flow through the segments
(`cimsim.functional.segment_values`): each segment's input is the map the previous one wrote.
With `energy.enabled` the segments' energy is summed (`cimsim.energy.segments`), programming
charged as one `crossbar.program` per device written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cimsim.config.schema import Scenario
from cimsim.energy import load_table, resolve_table
from cimsim.energy.actions import Action, Component
from cimsim.energy.segments import merge_energy
from cimsim.errors import InputError, SimulationError
from cimsim.functional.images import ImageStream
from cimsim.functional.onnx_agreement import onnx_source
from cimsim.functional.segment_values import ValueFlow, merge_functional, network_params
from cimsim.limits import check_run
from cimsim.mapping import map_network
from cimsim.mapping.segments import Segment, plan_segments
from cimsim.network import Network
from cimsim.report.summary import result_lines
from cimsim.sim.probe import StallCause, Subscriber

MAX_INPUT_RATE = 1 << 20
"""Largest pixels per timestep a spill stream is given (the loader's limit)."""


@dataclass(frozen=True)
class ReloadReport:
    """The summary of a reloading run (`summary` is what `cimsim run --json` prints)."""

    summary: dict[str, Any]
    segments: list[Any] = field(default_factory=list, compare=False, repr=False)
    """Each segment's own `Report` (its layers, stalls and DRAM section), for notebooks and tests."""

    def table(self) -> str:
        """The headline numbers and one line per segment."""
        s = self.summary
        lines = [
            (f"scenario {s['scenario']}: {s['model']} in {len(s['segments'])} segments on {s['cores']} cores "
             f"(mapping.weights = 'reload'), batch {s['batch']}, {s['timestep_ns']:g} ns timestep"),
            f"latency     {s['latency_timesteps']} timesteps = {s['latency_ns']:,.0f} ns (image 0)",
            f"throughput  {s['throughput_images_per_s']:,.0f} images/s",
            "",
            (f"{'seg':>3} {'layers':<30} {'cores':>5} {'start':>8} {'program':>8} {'compute':>8} "
             f"{'weights kB':>10} {'in kB':>9} {'out kB':>9}  stalls (core-timesteps by cause)"),
        ]
        for seg in s["segments"]:
            span = f"{seg['first_layer']}..{seg['last_layer']}" if seg["layers"] > 1 else seg["first_layer"]
            if seg["channels"]:
                span += "[{}:{}]".format(*seg["channels"])
            if seg["rows"]:
                span += "[rows {}:{}]".format(*seg["rows"])
            stalls = ", ".join(f"{k} {v}" for k, v in seg["stall_timesteps"].items() if v) or "-"
            d = seg["dram_bytes"]
            lines.append(f"{seg['index']:>3} {span[:30]:<30} {seg['cores']:>5} {seg['start_timestep']:>8} "
                         f"{seg['programming_timesteps']:>8} {seg['compute_timesteps']:>8} "
                         f"{d['weights'] / 1e3:>10.1f} {d['input'] / 1e3:>9.1f} {d['output'] / 1e3:>9.1f}  {stalls}")
        f = s.get("functional")
        if f:
            match = "yes" if f["reference_match"] else f"no ({f['mismatching_values']} values off)"
            lines.append(f"functional  {f['images_checked']} images through {len(f['segments'])} segments, "
                         f"reference match: {match}")
        lines.extend(result_lines(s))
        return "\n".join(lines)


def segment_scenario(scenario: Scenario, segment: Segment) -> Scenario:
    """The scenario one segment runs: its layers' rates only; a spill streams as fast as the
    DRAM delivers it (the source still waits for the DRAM and for room in the first cores)."""
    flow = scenario.dataflow
    rates = {k: v for k, v in flow.layer_rates.items() if k in segment.layers}
    out = dataclasses.replace(scenario, dataflow=dataclasses.replace(flow, layer_rates=rates))
    if segment.index == 0:
        return out
    chip, inp = scenario.chip, segment.network.input_layer
    bytes_per_timestep = scenario.dram.bandwidth_gbps * chip.cycles_per_timestep * 1000.0 / chip.clock_mhz
    pixel_bytes = segment.input_pixel_bytes()
    rate = max(1, min(inp.out_h * inp.out_w, MAX_INPUT_RATE, int(bytes_per_timestep // pixel_bytes)))
    return dataclasses.replace(out, input=dataclasses.replace(scenario.input, pixels_per_timestep=rate))


def _check(scenario: Scenario) -> None:
    where = scenario.source or scenario.name
    if not scenario.dram.enabled:
        raise InputError(f"{where}: mapping.weights = 'reload' reads weights from the DRAM: set dram.enabled = true")


def _value_flow(scenario: Scenario, net: Network, segments: list[Segment]) -> ValueFlow | None:
    """The values carried through the segments (None: not a functional run): the whole network's
    weights, the images."""
    if not scenario.functional.enabled:
        return None
    return ValueFlow(net, network_params(scenario, net, onnx_source(scenario.model)), ImageStream.of(scenario, net),
                     segments)


def _check_energy_table(scenario: Scenario) -> None:
    """Before any segment runs: the energy table charges (or lists as uncharged) `crossbar.program`."""
    if not scenario.energy.enabled:
        return
    base = Path(scenario.source).parent if scenario.source else None
    load_table(resolve_table(scenario.energy.table, base)).energy(Component.CROSSBAR, Action.PROGRAM)


def _check_conservation(rows: list[dict[str, Any]], segments: list[Segment], batch: int) -> None:
    """Each segment read its input (with partial sums) and wrote its output map (or partial sums)
    exactly, x the batch; and a segment reading a whole tensor read every byte the segments before
    it wrote of it (all slices of it)."""
    written: dict[str, int] = {}
    for row, seg in zip(rows, segments, strict=True):
        inp = seg.network.input_layer
        want_in = inp.out_h * inp.out_w * seg.input_pixel_bytes() * batch
        want_out = seg.output_bytes() * batch
        got_in, got_out = row["dram_bytes"]["input"], row["dram_bytes"]["output"]
        if (got_in, got_out) != (want_in, want_out):
            raise SimulationError(f"invariant violated: segment {seg.index} read {got_in} and wrote {got_out} bytes, "
                                  f"its input and output maps x batch are {want_in} and {want_out}")
        if seg.index and seg.rows is None and written.get(seg.input, want_in) != want_in:
            raise SimulationError(f"invariant violated: the segments before {seg.index} spilled "
                                  f"{written[seg.input]} bytes of '{seg.input}', segment {seg.index} read {got_in}")
        if not seg.partials_out:
            written[seg.output] = written.get(seg.output, 0) + got_out


def segment_trace(trace: str | Path | None, index: int) -> Path | None:
    """Where segment `index`'s trace goes: `<stem>.segment<index>.h5` beside `trace`."""
    if trace is None:
        return None
    path = Path(trace)
    return path.with_name(f"{path.stem}.segment{index}{path.suffix or '.h5'}")


def run_reloading(scenario: Scenario, net: Network, subscribers: list[Subscriber] | None,
                  trace: str | Path | None, trace_level: str) -> ReloadReport:
    """Simulate the segments one after another and report them together."""
    from cimsim.runner import simulate

    _check(scenario)
    _check_energy_table(scenario)
    segments = plan_segments(net, scenario)
    chip = scenario.chip
    cpt = chip.cycles_per_timestep
    timestep_ns = cpt * 1000.0 / chip.clock_mhz
    rows: list[dict[str, Any]] = []
    reports = []
    start = 0  # timestep the segment starts at on the whole run's clock (segments start on a boundary)
    first_image_start = last_image_done = 0
    events = 0
    traces = []
    flow = _value_flow(scenario, net, segments)
    functional: list[dict[str, Any]] = []
    energy: list[dict[str, Any]] = []
    for seg in segments:
        sc = segment_scenario(scenario, seg)
        check_run(sc, seg.network)
        plan = map_network(seg.network, sc)
        values = flow.values(seg) if flow is not None else None
        path = segment_trace(trace, seg.index)
        report, built = simulate(sc, seg.network, plan, subscribers, path, trace_level, program_weights=True,
                                 values=values, segment=seg)
        if "energy" in report.summary:
            energy.append(report.summary["energy"])
        if flow is not None and values is not None:
            functional.append(report.summary["functional"])
            flow.done(seg, values, scenario.run.batch)
        if path is not None:
            traces.append(str(path))
        dram, weights = built.dram, built.weights
        assert dram is not None and weights is not None
        end = -(-max(int(report.summary["simulated_cycles"]), int(-(-dram.drained_cycle() // 1))) // cpt)  # timesteps
        record = report.record
        assert record is not None
        if seg.index == 0:
            first_image_start = record.image_start_ts[0]
        if seg.index == len(segments) - 1:
            last_image_done = start + record.image_done_ts[0]
        stalls: dict[str, int] = {c.value: 0 for c in StallCause}
        for core in record.cores:
            for cause, n in core.stall_timesteps.items():
                stalls[cause] = stalls.get(cause, 0) + n
        events += int(report.summary["events"])
        rows.append({
            "index": seg.index, "first_layer": seg.layers[0], "last_layer": seg.layers[-1], "layers": len(seg.layers),
            "channels": list(seg.channels) if seg.channels else None,
            "rows": list(seg.rows) if seg.rows else None,
            "cores": plan.core_count, "start_timestep": start, "timesteps": end,
            "programming_timesteps": -(-weights.done_cycle // cpt),
            "compute_timesteps": end - -(-weights.done_cycle // cpt),
            "input": seg.input, "output": seg.output,
            "input_pixels_per_timestep": sc.input.pixels_per_timestep,
            "dram_bytes": {"weights": weights.bytes_read, "input": dram.bytes_read - weights.bytes_read,
                           "output": dram.bytes_written},
            "stall_timesteps": stalls,
        })
        reports.append(report)
        start += end
    if scenario.run.check_invariants:
        _check_conservation(rows, segments, scenario.run.batch)
    batch = scenario.run.batch
    total_s = start * cpt / (chip.clock_mhz * 1e6)
    latency = last_image_done - first_image_start + 1
    summary: dict[str, Any] = {
        "scenario": scenario.name, "overrides": list(scenario.overrides), "model": net.name,
        "weights": "reload", "batch": batch, "cores": max(r["cores"] for r in rows),
        "array": [chip.array_rows, chip.array_cols], "timestep_ns": timestep_ns,
        "latency_timesteps": latency, "latency_ns": latency * timestep_ns,
        "throughput_images_per_s": batch / total_s if total_s else 0.0,
        "total_timesteps": start, "simulated_cycles": start * cpt, "events": events,
        "dram_bytes": {k: sum(r["dram_bytes"][k] for r in rows) for k in ("weights", "input", "output")},
        "segments": rows,
        "traces": traces,
    }
    if functional:
        summary["functional"] = merge_functional(functional)
    if energy:
        summary["energy"] = merge_energy(energy, batch)
        for row, part in zip(rows, energy, strict=True):
            row["energy_J"] = part["energy_J"]
    return ReloadReport(summary, reports)
