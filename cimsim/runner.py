"""One function that chains the pipeline: Scenario -> Network -> MappingPlan -> Chip -> RunRecord -> Report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import simpy

from cimsim.config import Scenario, load_scenario
from cimsim.hw.chip import build_chip
from cimsim.mapping import map_network
from cimsim.network import load_model
from cimsim.report import Report, make_report
from cimsim.sim.probe import Subscriber


def run_scenario(path: str | Path, overrides: Sequence[str] = (), subscribers: list[Subscriber] | None = None) -> Report:
    """Load, map, build, simulate and report one scenario file."""
    scenario = load_scenario(path, overrides)
    return run(scenario, subscribers)


def run(scenario: Scenario, subscribers: list[Subscriber] | None = None) -> Report:
    """Simulate an already loaded scenario."""
    net = load_model(scenario.model)
    plan = map_network(net, scenario)
    env = simpy.Environment()
    chip = build_chip(env, scenario, net, plan, subscribers)
    record = chip.run()
    report = make_report(record)
    return report
