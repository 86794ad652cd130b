"""Ports between cores: counted pixel streams with delivery times and back-pressure.

Pixels of one stream arrive in order, so a port only counts them. A consumer with
several producers on one port (the column parts of a split layer, Eq. 6) has a
pixel once every producer has delivered its slice. On the ideal fabric an OutputPort
delivers after a fixed delay; on a simulated NoC it sends one packet per pixel through
the routers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import simpy

    from cimsim.hw.lockstep_noc import LockstepNoc
    from cimsim.hw.noc import Noc


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
        self.in_flight = 0
        """Pixels sent to this port that have not arrived yet (all sources)."""
        self.peak = 0
        self.waiters: set[Wakeable] = set()
        self.upstream_cause: str | None = None
        """Why pixels already sent to this port are late, when the producer knows: its step
        overran the timestep ("recovery", "sram", "compute"); None: the fabric ("noc")."""
        self.upstream: object | None = None
        """The image source when this port is fed by it (to tell `dram` stalls from `input`)."""

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


class OutputMemory:
    """A core's output memory on a NoC: packets waiting to enter its router."""

    def __init__(self, packets: int) -> None:
        self.free = packets
        self.peak_used = 0
        self.capacity = packets
        self.waiters: set[Wakeable] = set()

    def take(self, count: int) -> None:
        """`count` packets enter the memory."""
        self.free -= count
        self.peak_used = max(self.peak_used, self.capacity - self.free)

    def give_back(self) -> None:
        """A packet left for the network: wake the core if it waited for room."""
        self.free += 1
        if self.waiters:
            waiters, self.waiters = self.waiters, set()
            for w in waiters:
                w.kick()


class OutputPort:
    """The sending end of one flow: delivers to one InputPort after the fabric's delay,
    or through the NoC (`noc` and `route` given)."""

    def __init__(self, env: simpy.Environment, source: str, target: InputPort, delay_cycles: int = 0,
                 noc: Noc | LockstepNoc | None = None, route: tuple[object, ...] = (), payload_bits: int = 0,
                 out_memory: OutputMemory | None = None, hold_until_timestep: tuple[int, int] = (0, 1)) -> None:
        self.env = env
        self.source = source
        self.target = target
        self.delay_cycles = delay_cycles
        """Fabric latency added to every delivery (ideal fabric)."""
        self.noc = noc
        self.lockstep = noc is not None and not hasattr(noc, "inject")
        """True for the per-timestep link budget NoC of `timestep` clocking."""
        self.route = route
        self.flits = noc.flits(payload_bits) if noc is not None else 0
        self.out_memory = out_memory
        """The sending core's output memory, shared by its ports (NoC only)."""
        self.hold, self.cpt = hold_until_timestep
        """NoC: a packet sent in timestep t is handed over no earlier than timestep t + hold."""
        self.in_flight = 0
        self.sent = 0

    def blocked(self, count: int) -> str | None:
        """None if `count` more pixels can be sent now, else the cause: "output" (the
        receiver's buffer is full) or "noc" (the core's output memory is full)."""
        space = self.target.space(self.source)
        if space is not None and space - self.in_flight < count:
            return "output" if space < count else "noc"
        if self.out_memory is not None and self.out_memory.free < count:
            return "noc"
        return None

    def has_space(self, count: int) -> bool:
        """True when `count` more pixels can be sent now."""
        return self.blocked(count) is None

    def register_waiter(self, who: Wakeable) -> None:
        """Wake `who` when the receiver (or the output memory) frees space."""
        self.target.waiters.add(who)
        if self.out_memory is not None:
            self.out_memory.waiters.add(who)

    def send(self, count: int, at_cycle: int, late_cause: str | None = None) -> None:
        """Deliver `count` pixels at `at_cycle` (now or later) plus the fabric's delay;
        `late_cause` says why `at_cycle` is in the future (the producer's step overran)."""
        self.sent += count
        if late_cause is not None and at_cycle > self.env.now:
            self.target.upstream_cause = late_cause
        self.in_flight += count
        self.target.in_flight += count
        self.target.owner.kick()  # the consumer now waits on the fabric, not on its producer
        if self.noc is not None:
            earliest = (at_cycle // self.cpt + self.hold) * self.cpt
            if self.lockstep:
                ts = at_cycle // self.cpt
                for _ in range(count):
                    when = max(at_cycle, self.noc.schedule(self.route, self.flits, ts, self.source) * self.cpt, earliest)
                    self._when(when, lambda: self._arrive(1))
                return
            if self.out_memory is not None:
                self.out_memory.take(count)
            self._when(at_cycle, lambda: self._inject(count, earliest))
            return
        self._when(at_cycle + self.delay_cycles, lambda: self._arrive(count))

    def _when(self, cycle: int, action: object) -> None:
        delay = cycle - self.env.now
        if delay <= 0:
            action()
        else:
            self.env.timeout(delay).callbacks.append(lambda _e: action())

    def _arrive(self, count: int) -> None:
        self.target.upstream_cause = None
        self.in_flight -= count
        self.target.in_flight -= count
        self.target.deliver(self.source, count)

    def _inject(self, count: int, earliest: int) -> None:
        from cimsim.hw.noc import Packet

        def arrived() -> None:
            self._when(earliest, lambda: self._arrive(1))

        for _ in range(count):
            self.noc.inject(Packet(self.flits, self.route, arrived, self.source, self._left))

    def _left(self) -> None:
        if self.out_memory is not None:
            self.out_memory.give_back()
