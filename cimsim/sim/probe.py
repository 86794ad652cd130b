"""Instrumentation: components report to a probe; subscribers (stats, trace writers) listen.

Model code never prints or writes files; it calls the probe, and whatever is
subscribed turns the calls into statistics or trace records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    WEIGHTS = "weights"
    """Its weights were still being read from DRAM and programmed (`mapping.weights = "reload"`)."""


class EventKind(StrEnum):
    """The kinds of per-event records a trace holds."""

    COMPUTE = "compute"
    STALL = "stall"
    IMAGE_DONE = "image_done"


class Subscriber(Protocol):
    """Receives the events of a run. A subscriber defines only the methods of the events
    it uses; the probe dispatches each kind of event only to those that define it."""


class ComputeSubscriber(Protocol):
    """The compute event (and its contract)."""

    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int, col: int) -> None:
        """A core computed `count` outputs of `image` (`first` of the image's outputs were done
        before), a group whose top-left output is (`row`, `col`). The step started at cycle
        `cycle`, in timestep `timestep`, and took `cycles` cycles, whatever the clocking."""


class ActionSubscriber(Protocol):
    """The action event (and its contract): energy-relevant work, counted, never priced."""

    def action(self, image: int, layer: str, component: str, action: str, argument: int, n: int,
               recovery: bool) -> None:
        """`component` (a `cimsim.energy.Component`) performed `action` (a `cimsim.energy.Action`)
        `n` times with `argument`, for `image` (-1: none) of `layer` ("": none); `recovery`:
        work that speculation's recovery ran."""


def _fanout(name: str, subscribers: list[object]) -> Callable[..., None]:
    """One callable for event `name`: the only subscriber's bound method, a loop over
    several, or a no-op."""
    methods = [getattr(s, name) for s in subscribers if callable(getattr(s, name, None))]
    if not methods:
        return _ignore
    if len(methods) == 1:
        return methods[0]

    def fan(*args: object) -> None:
        for m in methods:
            m(*args)

    return fan


def _ignore(*args: object) -> None:
    """No subscriber uses this event."""


EVENTS = ("compute", "stall", "image_done", "link", "action")
"""The probe's event methods."""


class Probe:
    """Fans events out to the subscribers that use them.

    The event methods (`compute`, `stall`, `image_done`, `link`, `action`) are rebound
    whenever a subscriber is added, so an event nobody uses costs one call to a no-op;
    `counts_actions` says whether anyone listens to `action`, so that a component can skip
    the work of preparing one.
    """

    def __init__(self, subscribers: Iterable[object] | None = None) -> None:
        self.subscribers: list[object] = list(subscribers or [])
        self._bind()

    def subscribe(self, subscriber: object) -> None:
        """Add a subscriber (before or during the run)."""
        self.subscribers.append(subscriber)
        self._bind()

    def _bind(self) -> None:
        self.compute: Callable[[int, int, int, str, int, int, int, int, int, int], None] = _fanout(
            "compute", self.subscribers)
        """Forward a compute event (see `ComputeSubscriber.compute`)."""
        self._stall = _fanout("stall", self.subscribers)
        self.image_done: Callable[[int, int, int, int], None] = _fanout("image_done", self.subscribers)
        """Forward an image completion: image, start timestep, done timestep, cycle."""
        self.link: Callable[..., None] = _fanout("link", self.subscribers)
        """Forward a link transfer: cycle, link name, source core name, flits, busy cycles,
        and the flits the input buffer it feeds then held (-1: not modelled)."""
        self.action: Callable[[int, str, str, str, int, int, bool], None] = _fanout("action", self.subscribers)
        """Forward an action event (see `ActionSubscriber.action`)."""
        self.counts_actions = self.action is not _ignore
        """True when a subscriber listens to action events."""

    def stall(self, core: int, layer: str, cause: StallCause, start_timestep: int, timesteps: int) -> None:
        """A core that had work left could not compute for `timesteps` timesteps (from
        `start_timestep`) because of `cause`."""
        if timesteps > 0:
            self._stall(core, layer, StallCause(cause), start_timestep, timesteps)
