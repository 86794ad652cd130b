"""Ports between cores: counted pixel streams with delivery times and back-pressure.

Pixels of one stream arrive in order, so a port only counts them. A consumer with
several producers on one port (the column parts of a split layer, Eq. 6) has a
pixel once every producer has delivered its slice. An OutputPort hands what it sends to
the chip's fabric (`cimsim.hw.fabric.Fabric`), whichever it is, and the fabric calls
`OutputPort.arrive` when pixels reach the consumer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from cimsim.network.layers import EdgeRole
from cimsim.sim.probe import StallCause

if TYPE_CHECKING:
    import simpy

    from cimsim.hw.fabric import Fabric


class Wakeable(Protocol):
    """Anything a port can wake: a core or the image source."""

    def kick(self) -> None:
        """Resume if sleeping."""


class InputPort:
    """The receiving end of one stream role (main, residual or partial) of a core."""

    def __init__(self, owner: Wakeable, role: EdgeRole, sources: list[str] | tuple[str, ...],
                 capacity: int | None, name: str = "") -> None:
        self.owner = owner
        self.role = role
        self.name = name
        """The owning core's name (for messages)."""
        self.sources = tuple(sources)
        self.capacity = capacity
        self.counts = dict.fromkeys(self.sources, 0)
        self._several = len(self.counts) > 1
        """More than one producer: a pixel has arrived once every producer delivered it."""
        self.arrived = 0
        self.consumed = 0
        self.in_flight = 0
        """Pixels sent to this port that have not arrived yet (all sources)."""
        self.peak = 0
        self.waiters: dict[Wakeable, None] = {}
        """Who waits for space, in the order they came (a dict: woken in a deterministic order)."""
        self.upstream_cause: StallCause | None = None
        """Why pixels already sent to this port are late, when the producer knows: its step
        overran the timestep (recovery, sram, compute); None: the fabric (noc)."""
        self.dram_waiting = False
        """Fed by the image source: True while it waits for the DRAM (`dram` stalls)."""

    def deliver(self, source: str, count: int) -> None:
        """`count` pixels from `source` have arrived."""
        counts = self.counts
        arrived = counts[source] + count
        counts[source] = arrived
        if self._several:
            arrived = min(counts.values())
        if arrived != self.arrived:
            self.arrived = arrived
            held = arrived - self.consumed
            if held > self.peak:
                self.peak = held
            self.owner.kick()

    def space(self, source: str) -> int | None:
        """Pixels `source` may still send before the buffer is full (None: unbounded)."""
        if self.capacity is None:
            return None
        return self.capacity - (self.counts[source] - self.consumed)

    def consume_to(self, n: int) -> None:
        """The owner no longer needs pixels before index `n`; wake blocked producers."""
        if n > self.consumed:
            self.consumed = n if n < self.arrived else self.arrived
            if self.waiters:
                self.release()

    def release(self) -> None:
        """Wake every producer that waited for space."""
        if self.waiters:
            waiters, self.waiters = self.waiters, {}
            for w in waiters:
                w.kick()

    def invariant_problems(self) -> list[str]:
        """What is wrong with the buffer now (empty: nothing)."""
        held = self.arrived - self.consumed
        if self.capacity is not None and held > self.capacity:
            return [f"{self.name}: {self.role} buffer holds {held} pixels, capacity {self.capacity}"]
        return []


class OutputMemory:
    """A core's output memory on a NoC: packets waiting to enter its router."""

    def __init__(self, packets: int) -> None:
        self.free = packets
        self.peak_used = 0
        self.capacity = packets
        self.waiters: dict[Wakeable, None] = {}
        """Who waits for space, in the order they came (a dict: woken in a deterministic order)."""
        self.ports = 0
        """Output ports sharing the memory: a send puts its pixels on every one of them."""

    def take(self, count: int) -> None:
        """`count` packets enter the memory."""
        self.free -= count
        self.peak_used = max(self.peak_used, self.capacity - self.free)

    def give_back(self) -> None:
        """A packet left for the network: wake the core if it waited for room."""
        self.free += 1
        if self.waiters:
            waiters, self.waiters = self.waiters, {}
            for w in waiters:
                w.kick()


class OutputPort:
    """The sending end of one flow: counts what it sent and hands it to the fabric."""

    def __init__(self, env: simpy.Environment, source: str, target: InputPort, fabric: Fabric,
                 route: tuple[object, ...] = (), payload_bits: int = 0, out_memory: OutputMemory | None = None,
                 source_id: int = -1) -> None:
        self.env = env
        self.source = source
        self.source_id = source_id
        """The sending core's id (-1: the image source)."""
        self.target = target
        self.role = target.role
        self.fabric = fabric
        self.route = route
        """Router positions from source to destination (empty on the ideal fabric)."""
        self.flits = fabric.flits(payload_bits)
        self.out_memory = out_memory
        """The sending core's output memory, shared by its ports (router fabric only)."""
        if out_memory is not None:
            out_memory.ports += 1
        self.in_flight = 0
        self.sent = 0
        self.on_arrival = self._on_arrival
        """Callback for a SimPy event whose value is the number of pixels that arrive."""
        self._transmit = fabric.transmit
        self._direct = fabric.immediate(self.role) and len(target.counts) == 1
        """Pixels sent for now reach the consumer at once and complete its input: `send`
        delivers them itself (see there)."""

    def blocked(self, count: int) -> StallCause | None:
        """None if `count` more pixels can be sent now, else the cause: `output` (the
        receiver's buffer is full) or `noc` (the core's output memory cannot take `count`
        packets for each port that shares it)."""
        target = self.target
        if target.capacity is not None:
            space = target.capacity - (target.counts[self.source] - target.consumed)
            if space - self.in_flight < count:
                return StallCause.OUTPUT if space < count else StallCause.NOC
        memory = self.out_memory
        if memory is not None and memory.free < count * memory.ports:  # the send fills every sharing port
            return StallCause.NOC
        return None

    def room(self) -> int | None:
        """Pixels this port alone can send now (None: unbounded): the receiver's free space and
        the room in the core's output memory."""
        target = self.target
        room = None
        if target.capacity is not None:
            room = target.capacity - (target.counts[self.source] - target.consumed) - self.in_flight
        memory = self.out_memory
        if memory is not None:
            room = memory.free if room is None else min(room, memory.free)
        return room

    def has_space(self, count: int) -> bool:
        """True when `count` more pixels can be sent now."""
        return self.blocked(count) is None

    def register_waiter(self, who: Wakeable) -> None:
        """Wake `who` when the receiver (or the output memory) frees space."""
        self.target.waiters[who] = None
        if self.out_memory is not None:
            self.out_memory.waiters[who] = None

    def announce(self, cause: StallCause) -> None:
        """Tell the consumer that what it waits for from this port is late, and why."""
        self.target.upstream_cause = cause
        self.target.owner.kick()

    def send(self, count: int, at_cycle: int, late_cause: StallCause | None = None) -> None:
        """Deliver `count` pixels from `at_cycle` (now or later) through the fabric;
        `late_cause` says why `at_cycle` is in the future (the producer's step overran)."""
        self.sent += count
        target = self.target
        if self._direct and count and at_cycle <= self.env.now:
            # What the fabric would do at once (`arrive`), without the round trip through it,
            # the in-flight counts that would go up and down again, and the kick before the
            # delivery: with one source a delivery always completes pixels and kicks itself.
            target.upstream_cause = None
            target.deliver(self.source, count)
            return
        if late_cause is not None and at_cycle > self.env.now:
            target.upstream_cause = late_cause
        self.in_flight += count
        target.in_flight += count
        target.owner.kick()  # the consumer now waits on the fabric, not on its producer
        self._transmit(self, count, at_cycle)

    def arrive(self, count: int) -> None:
        """The fabric delivered `count` pixels to the consumer."""
        target = self.target
        target.upstream_cause = None
        self.in_flight -= count
        target.in_flight -= count
        target.deliver(self.source, count)

    def _on_arrival(self, event: simpy.Event) -> None:
        self.arrive(event._value)  # the Timeout's value: the number of pixels

    def drained_problems(self) -> list[str]:
        """After the run: every pixel sent was delivered."""
        got = self.target.counts[self.source]
        if self.sent != got or self.in_flight:
            owner = self.target.name or "?"
            return [(f"port {self.source} -> {self.role} of {owner}: sent {self.sent}, delivered {got}, "
                    f"in flight {self.in_flight}")]
        return []
