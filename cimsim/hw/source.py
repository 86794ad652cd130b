"""The image source: streams input pixels into the first layer's cores, from DRAM if modelled."""

from __future__ import annotations

from collections import deque

import simpy

from cimsim.hw.dram import DramBase
from cimsim.hw.ports import OutputPort
from cimsim.sim.probe import Probe


class ImageSource:
    """Streams `batch` images of `pixels_per_image` pixels, `rate` pixels per timestep,
    column by column, back to back; waits when the first cores' buffers are full or the
    DRAM has not delivered the pixels yet (it prefetches `prefetch` groups ahead)."""

    def __init__(self, env: simpy.Environment, outputs: list[OutputPort], batch: int, pixels_per_image: int,
                 rate: int, cycles_per_timestep: int, probe: Probe, dram: DramBase | None = None,
                 pixel_bytes: int = 0, prefetch: int = 4) -> None:
        self.env = env
        self.outputs = outputs
        self.batch = batch
        self.pixels_per_image = pixels_per_image
        self.rate = rate
        self.cpt = cycles_per_timestep
        self.probe = probe
        self.dram = dram
        self.pixel_bytes = pixel_bytes
        self.prefetch = prefetch
        self.sent = 0
        self.last_emit_cycle = 0
        self.image_start_ts: list[int] = []
        self.stall_timesteps = 0
        self.dram_stall_timesteps = 0
        self._ready: deque[int] = deque()
        self._outstanding = [0]
        self._wake: simpy.Event | None = None
        self._fetch_wake: simpy.Event | None = None
        self.process = env.process(self.run())
        if dram is not None:
            env.process(self.fetch())

    def kick(self) -> None:
        """Resume after a consumer freed buffer space or the DRAM delivered."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _set_dram_waiting(self, waiting: bool) -> None:
        """Tell the consumers whether the pixels they wait for are late from the DRAM."""
        for p in self.outputs:
            p.target.dram_waiting = waiting
            if waiting:
                p.target.owner.kick()

    @property
    def finished(self) -> bool:
        """True when every pixel of the batch has been sent."""
        return self.sent >= self.batch * self.pixels_per_image

    def line(self) -> str:
        """One-line state."""
        return f"source: sent {self.sent}/{self.batch * self.pixels_per_image} pixels"

    def _groups(self) -> list[int]:
        sizes = []
        for _ in range(self.batch):
            k = 0
            while k < self.pixels_per_image:
                n = min(self.rate, self.pixels_per_image - k)
                sizes.append(n)
                k += n
        return sizes

    def fetch(self):  # SimPy generator
        """Issue DRAM reads for the pixel groups in order, at most `prefetch` groups ahead
        (reads in flight or delivered but not yet sent); they pipeline on the channel."""
        outstanding = [0]

        def arrived(count: int) -> None:
            self._ready.append(count)
            self.kick()

        per_image = len(self._groups()) // max(1, self.batch)
        for i, count in enumerate(self._groups()):
            while outstanding[0] >= self.prefetch:
                self._fetch_wake = self.env.event()
                yield self._fetch_wake
            outstanding[0] += 1
            self._outstanding = outstanding
            self.dram.read(count * self.pixel_bytes, i // per_image).callbacks.append(lambda _e, n=count: arrived(n))

    def run(self):  # SimPy generator
        """Emit up to `rate` pixels at each timestep boundary, never splitting an image's group."""
        total = self.batch * self.pixels_per_image
        next_ts = 0
        while self.sent < total:
            k = self.sent % self.pixels_per_image
            count = min(self.rate, self.pixels_per_image - k)
            now_ts = -(-self.env.now // self.cpt)
            ts = max(next_ts, now_ts)
            if ts * self.cpt > self.env.now:
                yield self.env.timeout(ts * self.cpt - self.env.now)
                continue
            if self.dram is not None and not self._ready:
                self._set_dram_waiting(True)
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
                self.dram_stall_timesteps += -(-self.env.now // self.cpt) - ts
                self._set_dram_waiting(False)
                continue
            if any(not p.has_space(count) for p in self.outputs):
                for p in self.outputs:
                    p.register_waiter(self)
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
                continue
            if ts > next_ts:
                self.stall_timesteps += ts - next_ts
            if k == 0:
                self.image_start_ts.append(ts)
            if self.dram is not None:
                self._ready.popleft()
                self._outstanding[0] -= 1
                if self._fetch_wake is not None and not self._fetch_wake.triggered:
                    self._fetch_wake.succeed()
            for p in self.outputs:
                p.send(count, self.env.now)
            self.sent += count
            self.last_emit_cycle = self.env.now
            next_ts = ts + 1
