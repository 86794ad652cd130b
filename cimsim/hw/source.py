"""The image source: streams input pixels into the first layer's cores."""

from __future__ import annotations

import simpy

from cimsim.hw.ports import OutputPort
from cimsim.sim.probe import Probe


class ImageSource:
    """Streams `batch` images of `pixels_per_image` pixels, `rate` pixels per timestep,
    column by column, back to back; waits when the first cores' buffers are full."""

    def __init__(self, env: simpy.Environment, outputs: list[OutputPort], batch: int, pixels_per_image: int,
                 rate: int, cycles_per_timestep: int, probe: Probe) -> None:
        self.env = env
        self.outputs = outputs
        self.batch = batch
        self.pixels_per_image = pixels_per_image
        self.rate = rate
        self.cpt = cycles_per_timestep
        self.probe = probe
        self.sent = 0
        self.image_start_ts: list[int] = []
        self.stall_timesteps = 0
        self._wake: simpy.Event | None = None
        self.process = env.process(self.run())

    def kick(self) -> None:
        """Resume after a consumer freed buffer space."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def line(self) -> str:
        """One-line state."""
        return f"source: sent {self.sent}/{self.batch * self.pixels_per_image} pixels"

    def run(self):
        """Emit up to `rate` pixels at each timestep boundary, never splitting an image's pixel group."""
        total = self.batch * self.pixels_per_image
        next_ts = 0
        while self.sent < total:
            k = self.sent % self.pixels_per_image
            count = min(self.rate, self.pixels_per_image - k)
            if any(not p.has_space(count) for p in self.outputs):
                for p in self.outputs:
                    p.register_waiter(self)
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
                continue
            now_ts = -(-self.env.now // self.cpt)
            ts = max(next_ts, now_ts)
            if ts * self.cpt > self.env.now:
                yield self.env.timeout(ts * self.cpt - self.env.now)
            if ts > next_ts:
                self.stall_timesteps += ts - next_ts
            if k == 0:
                self.image_start_ts.append(ts)
            for p in self.outputs:
                p.send(count, self.env.now)
            self.sent += count
            next_ts = ts + 1
