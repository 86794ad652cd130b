"""The RunRecord: everything a run produced, before reporting."""

from __future__ import annotations

from dataclasses import dataclass, field

from cimsim.config.schema import Scenario
from cimsim.mapping.plan import MappingPlan
from cimsim.network import Network


@dataclass
class CoreRecord:
    """Per-core outcome."""

    id: int
    name: str
    layer: str
    active_timesteps: int
    stall_timesteps: dict[str, int]
    peak_inbox_pixels: int
    """Most input pixels that had arrived but could not yet be stored."""
    peak_residual_pixels: int
    """Most residual pixels held at once."""


@dataclass
class RunRecord:
    """Raw results of one simulation."""

    scenario: Scenario
    network: Network
    plan: MappingPlan
    batch: int
    image_start_ts: list[int]
    image_done_ts: list[int]
    cycles: int
    events: int
    cores: list[CoreRecord]
    layer_first_ts: dict[str, int]
    layer_last_ts: dict[str, int]
    progress: dict[str, list[tuple[int, int]]]
    source_stall_timesteps: int
    wall_seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
