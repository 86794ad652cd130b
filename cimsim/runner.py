"""One function that chains the pipeline: Scenario -> Network -> MappingPlan -> Chip -> RunRecord -> Report."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import simpy

from cimsim.config import Scenario, load_scenario
from cimsim.hw.chip import Chip, build_chip
from cimsim.limits import check_run
from cimsim.mapping import MappingPlan, map_network
from cimsim.mapping.balance import Balance, resolve
from cimsim.mapping.mapper import count_cores
from cimsim.mapping.sizing import resolve_array
from cimsim.network import Network, load_model
from cimsim.report import Report, make_report
from cimsim.sim.probe import Subscriber

if TYPE_CHECKING:
    from cimsim.functional.segment_values import SegmentValues
    from cimsim.mapping.segments import Segment
    from cimsim.reload import ReloadReport
    from cimsim.trace import TraceWriter


def run_scenario(path: str | Path, overrides: Sequence[str] = (), subscribers: list[Subscriber] | None = None,
                 trace: str | Path | None = None, trace_level: str = "events") -> Report | ReloadReport:
    """Load, map, build, simulate and report one scenario file (and trace it to `trace`)."""
    scenario = load_scenario(path, overrides)
    return run(scenario, subscribers, trace, trace_level)


def run(scenario: Scenario, subscribers: list[Subscriber] | None = None, trace: str | Path | None = None,
        trace_level: str = "events") -> Report | ReloadReport:
    """Simulate an already loaded scenario; with `trace`, write the HDF5 trace there
    (`trace_level` "events": every event; "summary": mapping and summaries only). A
    `mapping.weights = "reload"` scenario that needs more cores than its array runs segment by
    segment (`cimsim.reload`)."""
    net = load_model(scenario.model)
    scenario, balance = resolve(net, scenario)  # dataflow.mode = "balanced": choose the rates
    scenario = resolve_array(net, scenario)  # chip.array_rows / array_cols = "auto"
    if needs_reload(net, scenario):
        from cimsim.reload import run_reloading

        return run_reloading(scenario, net, subscribers, trace, trace_level)
    check_run(scenario, net)
    plan = map_network(net, scenario)
    return simulate(scenario, net, plan, subscribers, trace, trace_level, balance)[0]


def needs_reload(net: Network, scenario: Scenario) -> bool:
    """True when the scenario reloads weights and the network needs more cores than the array."""
    chip = scenario.chip
    return scenario.mapping.weights == "reload" and count_cores(net, scenario) > chip.array_rows * chip.array_cols


def simulate(scenario: Scenario, net: Network, plan: MappingPlan, subscribers: list[Subscriber] | None,
             trace: str | Path | None, trace_level: str, balance: Balance | None = None,
             program_weights: bool = False, values: SegmentValues | None = None,
             segment: Segment | None = None) -> tuple[Report, Chip]:
    """Build the chip for a mapped scenario, run it (tracing it to `trace`) and report."""
    env = simpy.Environment()
    subscribers = list(subscribers or [])
    with _writer(trace, scenario, net, plan, trace_level) as writer:
        if writer is not None and writer.records_events:
            subscribers.append(writer)
        chip = build_chip(env, scenario, net, plan, subscribers, program_weights, values, segment)
        record = chip.run()
        if balance is not None:
            timestep_ns = scenario.chip.cycles_per_timestep * 1000.0 / scenario.chip.clock_mhz
            record.extra["balancer"] = balance.as_dict(timestep_ns)
        report = make_report(record)
        if writer is not None:
            writer.finish(record, report, chip.energy)
    return report, chip


def overrides_hash(overrides: Sequence[str]) -> str:
    """Eight hex digits naming a list of `KEY=VALUE` overrides (SHA-256 of the lines, in order)."""
    return hashlib.sha256("\n".join(overrides).encode("utf-8")).hexdigest()[:8]


def default_trace_path(scenario: Scenario) -> Path:
    """`traces/<scenario name>.h5`, or `traces/<name>-<hash8>.h5` when the scenario has
    overrides (so runs with different `--set` values never overwrite each other's trace).
    The name is reduced to safe characters, so the path stays inside traces/."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", scenario.name).lstrip(".") or "run"
    suffix = f"-{overrides_hash(scenario.overrides)}" if scenario.overrides else ""
    return Path("traces") / f"{safe}{suffix}.h5"


def _writer(trace: str | Path | None, scenario: Scenario, net: Network, plan: MappingPlan,
            level: str) -> AbstractContextManager[TraceWriter | None]:
    """The trace writer (h5py is imported only when tracing), or a context holding None."""
    if trace is None:
        return nullcontext()
    from cimsim.trace import TraceWriter

    return TraceWriter(trace, scenario, net, plan, level)
