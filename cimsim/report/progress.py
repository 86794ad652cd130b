"""A progress line on stderr for long runs: a probe subscriber, throttled by the wall clock.

Shown only when the stream is a terminal, and only once a run has taken `delay_s`
seconds; it counts images done and the simulated timestep. Model code is not involved:
the bar listens to compute and image_done events like any other subscriber.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Probe subscriber drawing `timestep T  images k/N [####....]  12 s` on one line."""

    CHECK_EVERY = 2048
    """Compute events between wall-clock checks (keeps the per-event cost to a counter)."""

    def __init__(self, batch: int, stream: TextIO | None = None, delay_s: float = 2.0, every_s: float = 0.25,
                 width: int = 24) -> None:
        self.batch = batch
        self.stream = stream if stream is not None else sys.stderr
        self.delay_s = delay_s
        self.every_s = every_s
        self.width = width
        self.t0 = time.monotonic()
        self.next_s = self.t0 + delay_s
        self.images = 0
        self.timestep = 0
        self.shown = False
        self._n = 0
        self._drawn = 0

    @staticmethod
    def wanted(stream: TextIO, quiet: bool) -> bool:
        """Whether to show a bar on `stream` (a terminal, and not --json)."""
        return not quiet and hasattr(stream, "isatty") and stream.isatty()

    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int, col: int) -> None:
        """Every CHECK_EVERY compute events, maybe redraw."""
        self._n += 1
        if self._n >= self.CHECK_EVERY:
            self._n = 0
            self.timestep = max(self.timestep, timestep)
            self._tick()

    def stall(self, core: int, layer: str, cause: str, start_timestep: int, timesteps: int) -> None:
        """Stalls do not move the bar."""

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """Count an image; maybe redraw."""
        self.images += 1
        self.timestep = max(self.timestep, done_timestep)
        self._tick()

    def line(self) -> str:
        """The progress line."""
        filled = self.width * self.images // max(1, self.batch)
        bar = "#" * filled + "." * (self.width - filled)
        return (f"cimsim: timestep {self.timestep:,}  images {self.images}/{self.batch} [{bar}]  "
                f"{time.monotonic() - self.t0:.0f} s")

    def _tick(self) -> None:
        now = time.monotonic()
        if now < self.next_s:
            return
        self.next_s = now + self.every_s
        text = self.line()
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = max(self._drawn, len(text))
        self.shown = True

    def close(self) -> None:
        """Erase the line (if one was drawn)."""
        if self.shown:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self.shown = False
