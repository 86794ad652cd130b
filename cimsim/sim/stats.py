"""Statistics collected from probe events: per-core activity, stalls and image times."""

from __future__ import annotations

from collections import defaultdict


class StatsCollector:
    """Aggregates compute and stall events; keeps image 0's per-layer progress curve."""

    def __init__(self, representative: dict[int, str]) -> None:
        self.representative = representative
        """core id -> layer, for the core that stands for its layer in per-layer figures."""
        self.active: dict[int, int] = defaultdict(int)
        self.stalls: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.progress: dict[str, list[tuple[int, int]]] = defaultdict(list)
        """layer -> [(timestep, outputs done so far)] for image 0."""
        self.first_ts: dict[str, int] = {}
        self.last_ts: dict[str, int] = {}
        self.images: dict[int, tuple[int, int]] = {}
        """image -> (done timestep, done cycle)."""
        self.events = 0

    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int = 0, col: int = 0) -> None:
        """Count an active timestep; track image 0's progress on representative cores."""
        self.events += 1
        self.active[core] += 1
        if image == 0 and core in self.representative:
            self.first_ts.setdefault(layer, timestep)
            self.last_ts[layer] = timestep
            self.progress[layer].append((timestep, first + count))

    def stall(self, core: int, layer: str, cause: str, start_timestep: int, timesteps: int) -> None:
        """Add stall timesteps by cause."""
        self.events += 1
        self.stalls[core][cause] += timesteps

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """Record when an image's output was produced."""
        self.events += 1
        self.images[image] = (done_timestep, cycle)
