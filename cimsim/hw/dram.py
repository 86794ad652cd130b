"""The DRAM channel: reads stream input images in, writes take classifier outputs out.

One channel with a bandwidth (bytes per cycle) shared by reads and writes, served in
order, and a fixed latency per read (Meng and Lu's argument: a DRAM-bound input stream
caps throughput, whatever the array can do).
"""

from __future__ import annotations

import simpy

from cimsim.energy.actions import Action, Component
from cimsim.sim.probe import Probe


class Dram:
    """A single channel with bandwidth and latency."""

    def __init__(self, env: simpy.Environment, bytes_per_cycle: float, latency_cycles: int,
                 probe: Probe | None = None) -> None:
        self.env = env
        self.probe = probe
        """Receives a byte_read / byte_write action event per transfer (None: nobody)."""
        self.bytes_per_cycle = bytes_per_cycle
        self.latency_cycles = latency_cycles
        self.busy_until = 0.0
        self.bytes_read = 0
        self.bytes_written = 0
        self.busy_cycles = 0.0

    def _occupy(self, nbytes: int) -> float:
        start = max(float(self.env.now), self.busy_until)
        duration = nbytes / self.bytes_per_cycle
        self.busy_until = start + duration
        self.busy_cycles += duration
        return self.busy_until

    def read(self, nbytes: int, image: int = -1) -> simpy.Event:
        """An event that fires when `nbytes` (of `image`) requested now have been read."""
        self.bytes_read += nbytes
        if self.probe is not None:
            self.probe.action(image, "", Component.DRAM, Action.BYTE_READ, 0, nbytes, False)
        done = self._occupy(nbytes) + self.latency_cycles
        return self.env.timeout(max(0, int(-(-done // 1)) - self.env.now))

    def write(self, nbytes: int, image: int = -1) -> None:
        """Write `nbytes` (of `image`; occupies the channel; nothing waits for it)."""
        self.bytes_written += nbytes
        if self.probe is not None:
            self.probe.action(image, "", Component.DRAM, Action.BYTE_WRITE, 0, nbytes, False)
        self._occupy(nbytes)
