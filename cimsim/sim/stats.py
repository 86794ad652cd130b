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
        self.last_progress_cycle = 0
        """Cycle of the last computed group (the watchdog's notion of progress)."""

    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int = 0, col: int = 0) -> None:
        """Count an active timestep; track image 0's progress on representative cores."""
        self.events += 1
        self.last_progress_cycle = cycle
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


class LinkCollector:
    """Per-link statistics from link events (the same in a live run and in a trace replay)."""

    def __init__(self, cycles_per_timestep: int) -> None:
        self.cpt = cycles_per_timestep
        self.links: dict[str, dict[str, int]] = {}
        self._bin: dict[str, tuple[int, int]] = {}

    def link(self, cycle: int, link: str, source: str, flits: int, cycles: int, buffer_flits: int = -1) -> None:
        """Count one packet on `link`."""
        row = self.links.get(link)
        if row is None:
            row = self.links[link] = {"packets": 0, "flits": 0, "busy_cycles": 0, "peak_flits_per_timestep": 0,
                                      "peak_buffer_flits": -1}
        row["packets"] += 1
        row["flits"] += flits
        row["busy_cycles"] += cycles
        ts = cycle // self.cpt
        last_ts, used = self._bin.get(link, (-1, 0))
        used = used + flits if ts == last_ts else flits
        self._bin[link] = (ts, used)
        row["peak_flits_per_timestep"] = max(row["peak_flits_per_timestep"], min(used, self.cpt))
        row["peak_buffer_flits"] = max(row["peak_buffer_flits"], buffer_flits)

    def rows(self, total_cycles: int) -> list[dict[str, object]]:
        """One dict per link, in first-use order, with its utilisation over `total_cycles`."""
        out = []
        for name, row in self.links.items():
            d: dict[str, object] = {"link": name, **row, "utilisation": round(row["busy_cycles"] / max(1, total_cycles), 4)}
            if row["peak_buffer_flits"] < 0:
                del d["peak_buffer_flits"]
            out.append(d)
        return out
