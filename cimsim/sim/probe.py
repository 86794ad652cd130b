"""Instrumentation: components report to a probe; subscribers (stats, trace writers) listen.

Model code never prints or writes files; it calls the probe, and whatever is
subscribed turns the calls into statistics or trace records.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class StallCause(StrEnum):
    """Why a core that had work left did not compute (the report's column order)."""

    INPUT = "input"
    """Its input pixels were not produced yet."""
    RESIDUAL = "residual"
    """The shortcut pixels of its add were not there yet."""
    PARTIAL = "partial"
    """The partial sums of a split layer's other row parts were not there yet."""
    OUTPUT = "output"
    """A consumer's buffer was full (back-pressure)."""
    SRAM = "sram"
    """An SRAM slot was still needed, or stores and reads overran the timestep."""
    COMPUTE = "compute"
    """MVM and digital work overran the timestep."""
    NOC = "noc"
    """The pixels were in the fabric."""
    DRAM = "dram"
    """The DRAM was late with the image's pixels."""
    RECOVERY = "recovery"
    """Speculation failed: recovery cycles, here or upstream."""


class EventKind(StrEnum):
    """The kinds of per-event records a trace holds."""

    COMPUTE = "compute"
    STALL = "stall"
    IMAGE_DONE = "image_done"


class Subscriber(Protocol):
    """Receives the events of a run."""

    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int, col: int) -> None:
        """A core computed `count` outputs of `image` in `timestep` (`first` of the image's
        outputs were done before), a group whose top-left output is (`row`, `col`); the step
        took `cycles` cycles."""

    def stall(self, core: int, layer: str, cause: str, start_timestep: int, timesteps: int) -> None:
        """A core that had work left could not compute for `timesteps` timesteps."""

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """The network output of `image` was produced."""

    def link(self, cycle: int, link: str, source: str, flits: int, cycles: int, buffer_flits: int = -1) -> None:
        """A NoC link carried `flits` flits of a packet from core `source`, busy for `cycles`
        cycles; the input buffer it feeds then held `buffer_flits` flits (-1: not modelled)."""


class Probe:
    """Fans events out to subscribers (none: the calls cost one loop over an empty list)."""

    def __init__(self, subscribers: list[Subscriber] | None = None) -> None:
        self.subscribers: list[Subscriber] = list(subscribers or [])

    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int, col: int) -> None:
        """Forward a compute event."""
        for s in self.subscribers:
            s.compute(cycle, timestep, core, layer, image, first, count, cycles, row, col)

    def stall(self, core: int, layer: str, cause: str, start_timestep: int, timesteps: int) -> None:
        """Forward a stall interval."""
        if timesteps > 0:
            for s in self.subscribers:
                s.stall(core, layer, cause, start_timestep, timesteps)

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """Forward an image completion."""
        for s in self.subscribers:
            s.image_done(image, start_timestep, done_timestep, cycle)

    def link(self, cycle: int, link: str, source: str, flits: int, cycles: int, buffer_flits: int = -1) -> None:
        """Forward a link transfer to the subscribers that record links."""
        for s in self.subscribers:
            fn = getattr(s, "link", None)
            if fn is not None:
                fn(cycle, link, source, flits, cycles, buffer_flits)
