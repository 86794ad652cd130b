"""The DRAM: reads stream input images (and, with reloading, weights and spills) in, writes
take classifier outputs (and spills) out.

Two models share one interface (`dram.model`):

- `Dram` ("bandwidth", the default): one channel with a bandwidth (bytes per cycle) shared by
  reads and writes, served in order, and a fixed latency per read (Meng and Lu's argument: a
  DRAM-bound input stream caps throughput, whatever the array can do). Addresses are ignored.
- `cimsim.hw.dram_banks.BankedDram` ("banks"): channels, banks and row buffers, where the
  address of every request decides its latency.

Both take `read(nbytes, image, address=..., kind=...)` and `write(...)`, which return a SimPy
event that fires when the transfer is complete, and `post_write(...)`, a write nothing waits
for (no event is created). `address=None` reads or writes the next bytes of the kind's stream:
sequentially through the first region of that kind the `DramLayout` allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import simpy

from cimsim.config.schema import DramConfig
from cimsim.energy.actions import Action, Component
from cimsim.errors import InputError
from cimsim.sim.probe import Probe


class DramKind(StrEnum):
    """What a DRAM transfer carries (the summary counts bytes per kind)."""

    IMAGE = "image"
    """Input image pixels read by the image source."""
    RESULT = "result"
    """Classifier outputs written back, one per image."""
    WEIGHTS = "weights"
    """Crossbar weights read before a segment is programmed (weight reloading)."""
    SPILL = "spill"
    """Feature maps crossing a segment boundary, written and read back (weight reloading)."""


@dataclass(frozen=True)
class DramRegion:
    """A contiguous range of DRAM addresses holding one kind of data."""

    kind: DramKind
    """What the region holds."""
    label: str
    """Who asked for it ("images", "results", a segment's name, ...)."""
    base: int
    """First byte address."""
    size: int
    """Length in bytes."""

    def address(self, offset: int) -> int:
        """The byte address `offset` bytes into the region."""
        return self.base + offset


class DramLayout:
    """A bump allocator of address regions. Regions are laid out in the order they are asked
    for, each starting at a multiple of `align` bytes (the banks model: one row in every
    channel, so a region starts at channel 0, column 0 of a fresh row of some bank). The chip
    allocates the images (batch x pixels x bytes per pixel), then the results (batch x output
    bytes); weight reloading adds its weight and spill regions after them."""

    def __init__(self, capacity_bytes: int, align: int = 1) -> None:
        self.capacity_bytes = capacity_bytes
        self.align = max(1, align)
        self.regions: list[DramRegion] = []
        self._top = 0

    def allocate(self, kind: DramKind, nbytes: int, label: str = "") -> DramRegion:
        """A new region of `nbytes` bytes; InputError when the DRAM is too small for it."""
        base = -(-self._top // self.align) * self.align
        if base + nbytes > self.capacity_bytes:
            used = ", ".join(f"{r.label or r.kind} {r.size:,}" for r in self.regions)
            raise InputError(f"dram.capacity_mib = {self.capacity_bytes >> 20}: {label or kind}: {nbytes:,} bytes "
                             f"from address {base:,} do not fit the DRAM's {self.capacity_bytes:,} bytes"
                             f"{' (already allocated: ' + used + ')' if used else ''}")
        region = DramRegion(kind, label, base, nbytes)
        self.regions.append(region)
        self._top = base + nbytes
        return region

    def first(self, kind: DramKind) -> DramRegion | None:
        """The first region of `kind` (None: none allocated)."""
        return next((r for r in self.regions if r.kind is kind), None)

    def rows(self) -> list[dict[str, object]]:
        """The regions as summary rows."""
        return [{"kind": str(r.kind), "label": r.label, "base": r.base, "bytes": r.size} for r in self.regions]


class DramBase:
    """What both models share: the layout, per-kind byte counters and streaming cursors."""

    def __init__(self, env: simpy.Environment, layout: DramLayout, probe: Probe | None) -> None:
        self.env = env
        self.layout = layout
        """Address regions (images, results; weights and spills with reloading)."""
        self.probe = probe
        """Receives a byte_read / byte_write action event per transfer (None: nobody)."""
        self.bytes_read = 0
        self.bytes_written = 0
        self.read_by_kind: dict[DramKind, int] = dict.fromkeys(DramKind, 0)
        """Bytes read per kind (as requested)."""
        self.written_by_kind: dict[DramKind, int] = dict.fromkeys(DramKind, 0)
        """Bytes written per kind (as requested)."""
        self._cursor: dict[DramKind, int] = dict.fromkeys(DramKind, 0)

    def _count(self, nbytes: int, image: int, kind: DramKind, write: bool) -> None:
        if write:
            self.bytes_written += nbytes
            self.written_by_kind[kind] += nbytes
        else:
            self.bytes_read += nbytes
            self.read_by_kind[kind] += nbytes
        if self.probe is not None:
            self.probe.action(image, "", Component.DRAM, Action.BYTE_WRITE if write else Action.BYTE_READ, 0,
                              nbytes, False)

    def drained_cycle(self) -> float:
        """The cycle by which every transfer issued so far has completed (the banks model serves
        its queues with events, so the simulation's clock has reached it once the run is over)."""
        return float(self.env.now)

    def stream_address(self, kind: DramKind, nbytes: int) -> int:
        """The address of the kind's next `nbytes`: sequential through its first region,
        back to the region's start when they would run past its end (no region: from 0)."""
        region = self.layout.first(kind)
        offset = self._cursor[kind]
        if region is None:
            self._cursor[kind] = offset + nbytes
            return offset
        if offset + nbytes > region.size:
            offset = 0
        self._cursor[kind] = offset + nbytes
        return region.base + offset

    def read(self, nbytes: int, image: int = -1, *, address: int | None = None,
             kind: DramKind = DramKind.IMAGE) -> simpy.Event:
        """An event that fires when `nbytes` at `address` (None: the kind's stream), requested
        now for `image` (-1: none), have been read."""
        raise NotImplementedError

    def write(self, nbytes: int, image: int = -1, *, address: int | None = None,
              kind: DramKind = DramKind.RESULT) -> simpy.Event:
        """An event that fires when `nbytes` written now at `address` are in the DRAM."""
        raise NotImplementedError

    def post_write(self, nbytes: int, image: int = -1, *, address: int | None = None,
                   kind: DramKind = DramKind.RESULT) -> None:
        """A write nothing waits for: it occupies the DRAM, no event is created."""
        raise NotImplementedError

    def line(self) -> str:
        """One-line state."""
        raise NotImplementedError

    def summary(self, elapsed_cycles: int, stall_timesteps: int) -> dict[str, object]:
        """The `dram` section of the summary, over `elapsed_cycles` of simulated time."""
        raise NotImplementedError

    def by_kind(self) -> dict[str, dict[str, int]]:
        """Bytes read and written per kind, for the summary."""
        return {str(k): {"read": self.read_by_kind[k], "written": self.written_by_kind[k]} for k in DramKind}


class Dram(DramBase):
    """`dram.model = "bandwidth"`: a single channel with bandwidth and latency."""

    def __init__(self, env: simpy.Environment, bytes_per_cycle: float, latency_cycles: int,
                 probe: Probe | None = None, layout: DramLayout | None = None) -> None:
        super().__init__(env, layout or DramLayout(1 << 62), probe)
        self.bytes_per_cycle = bytes_per_cycle
        self.latency_cycles = latency_cycles
        self.busy_until = 0.0
        self.busy_cycles = 0.0

    def _occupy(self, nbytes: int) -> float:
        start = max(float(self.env.now), self.busy_until)
        duration = nbytes / self.bytes_per_cycle
        self.busy_until = start + duration
        self.busy_cycles += duration
        return self.busy_until

    def read(self, nbytes: int, image: int = -1, *, address: int | None = None,
             kind: DramKind = DramKind.IMAGE) -> simpy.Event:
        """An event that fires when `nbytes` (of `image`) requested now have been read
        (`address` is ignored by this model)."""
        self._count(nbytes, image, kind, False)
        done = self._occupy(nbytes) + self.latency_cycles
        return self.env.timeout(max(0, int(-(-done // 1)) - self.env.now))

    def drained_cycle(self) -> float:
        """The cycle the channel's last transfer ends (posted writes create no event)."""
        return max(float(self.env.now), self.busy_until)

    def post_write(self, nbytes: int, image: int = -1, *, address: int | None = None,
                   kind: DramKind = DramKind.RESULT) -> None:
        """Write `nbytes` (of `image`; occupies the channel; nothing waits for it)."""
        self._count(nbytes, image, kind, True)
        self._occupy(nbytes)

    def write(self, nbytes: int, image: int = -1, *, address: int | None = None,
              kind: DramKind = DramKind.RESULT) -> simpy.Event:
        """An event that fires when `nbytes` written now have crossed the channel."""
        self._count(nbytes, image, kind, True)
        done = self._occupy(nbytes)
        return self.env.timeout(max(0, math.ceil(done) - self.env.now))

    def line(self) -> str:
        """One-line state."""
        return (f"dram: busy until cycle {self.busy_until:.1f}, read {self.bytes_read:,} B, "
                f"written {self.bytes_written:,} B")

    def summary(self, elapsed_cycles: int, stall_timesteps: int) -> dict[str, object]:
        """The `dram` section of the summary (unchanged since the first DRAM model)."""
        return {
            "enabled": True, "bytes_read": self.bytes_read, "bytes_written": self.bytes_written,
            "busy_cycles": round(self.busy_cycles), "utilisation": round(self.busy_cycles / max(1, elapsed_cycles), 4),
            "stall_timesteps": stall_timesteps,
        }


def make_dram(env: simpy.Environment, cfg: DramConfig, clock_mhz: float,
              probe: Probe | None = None) -> DramBase:
    """The DRAM model `cfg.model` names, with its address layout (`dram.capacity_mib`)."""
    capacity = cfg.capacity_mib << 20
    if cfg.model == "banks":
        from cimsim.hw.dram_banks import BankedDram, bank_params  # it builds on this module

        params = bank_params(cfg)
        return BankedDram(env, params, clock_mhz, probe,
                          DramLayout(capacity, params.row_bytes * params.channels))
    return Dram(env, cfg.bandwidth_gbps * 1e3 / clock_mhz, round(cfg.latency_ns * clock_mhz / 1e3), probe,
                DramLayout(capacity))

