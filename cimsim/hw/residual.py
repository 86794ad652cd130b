"""Dazzi's `read_res` (Algorithm 1 lines 21-22) at the core whose input memory holds a residual.

The block's first core (`ResidualPath.READ_RES`) sends each pixel it stored to an adding stage
when `conditions_to_residual(pointer_in)` holds: its input pointer has reached the pixel the
adding stage's output of that pixel depends on through the block (`cimsim.mapping.residual.
send_schedule`: in a pipeline without stalls the adding core computes that output in the same
timestep), and the adding core's residual inbox has room. It reads the pixel from its own input
memory (the words the pixel occupies in its layout), charged to the SRAM reads of the step of
the timestep in which it reads it, as a store is. It may not overwrite a slot whose pixel it has
not sent yet: `done` bounds its circular store (`Core._store`). An adding core that adds its own
input (`ResidualPath.OWN_INPUT`) reads the pixel in the step of the output it is added to and
keeps the slot until then (`Core`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from cimsim.hw.ports import OutputPort, Wakeable
from cimsim.mapping.geometry import LayerGeometry

NO_DUTY = 1 << 62
"""`Core.res_done` of a core that owes no residual pixels: its store is never held back by one."""


class ResidualSender:
    """The `read_res` duty of a block's first core towards one adding stage: what it has sent,
    when a pixel may go, and what reading it costs."""

    def __init__(self, ports: Sequence[OutputPort], costs: list[list[int]], schedule: Sequence[int],
                 batch: int) -> None:
        self.ports = list(ports)
        self.prefix = [list(itertools.accumulate(row, initial=0)) for row in costs]
        """prefix[image % period][k]: words read for pixels 0..k-1 of an image (its slot's rotation)."""
        self.schedule = list(schedule)
        """schedule[k]: pixels of the image stored before pixel k is sent (conditions_to_residual);
        non-decreasing in k."""
        self.n_in = len(self.schedule)
        self.total = batch * self.n_in
        """Pixels to send over the run."""
        self.done = 0
        """Pixels sent so far (all images): pixel i's slot may be overwritten once i < done."""
        self.cycles = 0
        self.ts = -1
        """SRAM read words of timestep `ts`'s sends."""
        self.need = self._need_for(0)
        """Pixels stored (all images) before the next pixel may be sent: below it, nothing can go."""

    def _need_for(self, done: int) -> int:
        if done >= self.total:
            return NO_DUTY
        base, k = done - done % self.n_in, done % self.n_in
        return max(done + 1, base + self.schedule[k])

    def send(self, owner: Wakeable, stored: int, now: int, now_ts: int) -> int:
        """Send, at cycle `now` of timestep `now_ts`, the pixels whose condition holds with `stored`
        pixels stored and the adding cores have room for; return how many. A port without room
        registers `owner` to be woken when it frees some. (Per residual pixel: kept lean.)"""
        if stored < self.need:
            return 0
        done, n_in = self.done, self.n_in
        first = done % n_in
        base = done - first
        if stored - base < n_in:  # within the image: the pixels whose schedule is met
            n = min(base + bisect.bisect_right(self.schedule, stored - base), stored) - done
        else:  # the image is stored whole: all of it, and of the next ones what is stored
            n = min(stored, self.total) - done if stored - base >= 2 * n_in else n_in - first
        for port in self.ports:
            room = port.room()
            if room is not None and room < n:
                n = room
                port.register_waiter(owner)
        if n <= 0:
            return 0
        prefix = self.prefix
        if first + n <= n_in:  # within one image (nearly always)
            row = prefix[(done // n_in) % len(prefix)]
            words = row[first + n] - row[first]
        else:
            words, k, left = 0, done, n
            while left:  # whole or partial images, each by its prefix sums
                image, at = divmod(k, n_in)
                last = min(n_in, at + left)
                row = prefix[image % len(prefix)]
                words += row[last] - row[at]
                left -= last - at
                k += last - at
        if now_ts != self.ts:  # reads of a timestep without a step fit in it: not charged
            self.ts, self.cycles = now_ts, 0
        self.cycles += words
        self.done = done = done + n
        self.need = self._need_for(done)
        for port in self.ports:
            port.send(n, now)
        return n

    def take_cycles(self, now_ts: int) -> int:
        """The read words of timestep `now_ts` so far (then zero: a step takes them once)."""
        cycles = self.cycles if self.ts == now_ts else 0
        self.cycles = 0
        return cycles


def per_pixel(table: list[list[int]], geom: LayerGeometry, period: int) -> list[list[int]]:
    """table[x][slot] (words of the slot holding row x) as costs[image % period][k] for pixel k of
    an image: image i starts at global column i x W, so its columns rotate through the slots."""
    h, w, cols = geom.in_h, geom.in_w, geom.slot_columns
    return [[table[k % h][(i * w + k // h) % cols] for k in range(geom.n_in)] for i in range(period)]


def own_residual_reads(pixel_read: list[list[int]], geom: LayerGeometry) -> list[list[int]]:
    """reads[phase][group]: words a core that adds its own input reads for the residual pixels of the
    group's outputs (an output's pixel sits in the slot of its own position; phase: the image's first
    column modulo the slot columns)."""
    cols = geom.slot_columns
    blocks = list(zip(geom.group_origin.tolist(), geom.group_shape.tolist(), strict=True))
    return [[sum(pixel_read[r][(p + c) % cols] for r in range(r0, r0 + rows) for c in range(c0, c0 + width))
             for (r0, c0), (rows, width) in blocks] for p in range(cols)]


__all__ = ["NO_DUTY", "ResidualSender", "own_residual_reads", "per_pixel"]
