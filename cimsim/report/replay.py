"""The report of a traced run, rebuilt from the trace alone.

The stored events are replayed, in their recorded order, into the same
`StatsCollector` the chip used, and the result goes through the same `make_report`,
so `cimsim report TRACE --json` prints what `cimsim run --json` printed. Top-level
summary sections the events cannot give are taken from the summary stored in the trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cimsim.report.summary import Report, ReportInput, make_report
from cimsim.sim.stats import LinkCollector, StatsCollector

if TYPE_CHECKING:
    from cimsim.trace import Trace


def replay(trace: Trace) -> StatsCollector:
    """The statistics of a run, from its event records (level `events`)."""
    plan = trace.plan
    stats = StatsCollector({lm.merge_cores[0]: name for name, lm in plan.layers.items()})
    layers = trace.layer_names
    causes = trace.cause_names
    code = {name: i for i, name in enumerate(trace.kind_names)}
    compute, stall, done = code.get("compute"), code.get("stall"), code.get("image_done")
    for block in trace.iter_events():
        for cycle, ts, kind, cause, core, layer, image, x, y, first, count, cycles in block.tolist():
            if kind == compute:
                stats.compute(cycle, ts, core, layers[layer], image, first, count, cycles, x, y)
            elif kind == stall:
                stats.stall(core, layers[layer], causes[cause], ts, count)
            elif kind == done:
                stats.image_done(image, first, ts, cycle)
            # kinds added by later schema revisions do not enter the summary
    return stats


def _extra(trace: Trace, cycles: int) -> dict[str, object]:
    """Link statistics replayed from the link records; the DRAM's from the stored summary."""
    cpt = int(trace.scenario["chip"]["cycles_per_timestep"])
    links = LinkCollector(cpt)
    names = trace.link_names
    cores = trace.core_names if hasattr(trace, "core_names") else []
    for block in trace.iter_links():
        for cycle, link, source, flits, busy, buffer in block.tolist():
            links.link(cycle, names[link], cores[source] if 0 <= source < len(cores) else "", flits, busy, buffer)
    extra: dict[str, object] = {"links": links.rows(cycles)}
    for section in ("dram", "functional", "energy"):  # component state, not events: as stored
        if section in trace.summary:
            extra[section] = trace.summary[section]
    return extra


def report_from_trace(trace: Trace) -> Report:
    """The run's report: replayed from the events, or (level `summary`) the stored summary."""
    if trace.level != "events":
        return Report(trace.summary)
    stats = replay(trace)
    run = trace.run
    batch = int(run["batch"])
    replayed = make_report(ReportInput(
        scenario=trace.scenario, model=trace.model_name,
        layer_pixels={str(r["name"]): int(r["pixels"]) for r in trace.mapping["layers"]},
        plan=trace.plan, batch=batch,
        image_start_ts=[int(t) for t in run["image_start_timestep"]],
        image_done_ts=[stats.images[i][0] for i in range(batch)],
        cycles=max(stats.images[i][1] for i in range(batch)), events=stats.events,
        active_timesteps=dict(stats.active), stall_timesteps={c: dict(s) for c, s in stats.stalls.items()},
        layer_first_ts=dict(stats.first_ts), layer_last_ts=dict(stats.last_ts),
        source_stall_timesteps=int(run["source_stall_timesteps"]),
        extra=_extra(trace, max(stats.images[i][1] for i in range(batch))),
    )).summary
    # Sections added to the summary outside `summarize` (from component state the probe does
    # not report) cannot be replayed: they come from the stored summary, in its key order.
    stored = trace.summary
    summary = {k: replayed[k] if k in replayed else stored[k] for k in stored}
    summary.update({k: v for k, v in replayed.items() if k not in summary})
    return Report(summary)
