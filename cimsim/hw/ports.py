"""Ports between cores: counted pixel streams with delivery times and back-pressure.

Pixels of one stream arrive in order, so a port only counts them. A consumer with
several producers on one port (the column parts of a split layer, Eq. 6) has a
pixel once every producer has delivered its slice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import simpy


class Wakeable(Protocol):
    """Anything a port can wake: a core or the image source."""

    def kick(self) -> None:
        """Resume if sleeping."""


class InputPort:
    """The receiving end of one stream role (main, residual or partial) of a core."""

    def __init__(self, owner: Wakeable, role: str, sources: list[str] | tuple[str, ...], capacity: int | None) -> None:
        self.owner = owner
        self.role = role
        self.sources = tuple(sources)
        self.capacity = capacity
        self.counts = dict.fromkeys(self.sources, 0)
        self.arrived = 0
        self.consumed = 0
        self.peak = 0
        self.waiters: set[Wakeable] = set()

    def deliver(self, source: str, count: int) -> None:
        """`count` pixels from `source` have arrived."""
        self.counts[source] += count
        arrived = min(self.counts.values())
        if arrived != self.arrived:
            self.arrived = arrived
            self.peak = max(self.peak, arrived - self.consumed)
            self.owner.kick()

    def space(self, source: str) -> int | None:
        """Pixels `source` may still send before the buffer is full (None: unbounded)."""
        if self.capacity is None:
            return None
        return self.capacity - (self.counts[source] - self.consumed)

    def consume_to(self, n: int) -> None:
        """The owner no longer needs pixels before index `n`; wake blocked producers."""
        if n > self.consumed:
            self.consumed = min(n, self.arrived)
            self.release()

    def release(self) -> None:
        """Wake every producer that waited for space."""
        if self.waiters:
            waiters, self.waiters = self.waiters, set()
            for w in waiters:
                w.kick()


class OutputPort:
    """The sending end: delivers to one InputPort after the fabric's delay."""

    def __init__(self, env: simpy.Environment, source: str, target: InputPort, delay_cycles: int = 0) -> None:
        self.env = env
        self.source = source
        self.target = target
        self.delay_cycles = delay_cycles
        """Fabric latency added to every delivery."""
        self.in_flight = 0
        self.sent = 0

    def has_space(self, count: int) -> bool:
        """True when `count` more pixels fit the receiving buffer."""
        space = self.target.space(self.source)
        return space is None or space - self.in_flight >= count

    def register_waiter(self, who: Wakeable) -> None:
        """Wake `who` when the receiver frees space."""
        self.target.waiters.add(who)

    def send(self, count: int, at_cycle: int) -> None:
        """Deliver `count` pixels at `at_cycle` plus the fabric delay (now or later)."""
        self.sent += count
        delay = at_cycle + self.delay_cycles - self.env.now
        if delay <= 0:
            self.target.deliver(self.source, count)
            return
        self.in_flight += count

        def _arrive(_event: object) -> None:
            self.in_flight -= count
            self.target.deliver(self.source, count)

        self.env.timeout(delay).callbacks.append(_arrive)
