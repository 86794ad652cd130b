"""The network-on-chip: routers, links that serialise flits, credits, cycle by cycle.

Packets move by virtual cut-through at packet granularity: a router grants an output
link to one waiting packet at a time (round robin over its input ports), once the
link is free and the next router's input buffer has credits for the whole packet. The
head reaches the next router `router_cycles + link_cycles` after the grant and may be
forwarded from there while its tail is still arriving, so an uncontended packet takes
hops x (router_cycles + link_cycles) + flits - 1 cycles. Credits return when the tail
has left a buffer. A core's network interface (its output memory) queues packets for
its router's local input port.

Routers are clocked, not free-running processes: a router arbitrates in a cycle only
when something it depends on changed in that cycle (a packet reached one of its
inputs, a credit came back, an output it has a packet for became free). All of a
cycle's changes are applied first, then the routers that have work arbitrate, in a
fixed order, in one SimPy event per busy cycle (scheduled after the cycle's ordinary
events, so arbitration sees every injection, credit and arrival of that cycle, as a
router with registered inputs would).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import networkx as nx
import simpy

from cimsim.hw.fabric import Fabric
from cimsim.mapping.topology import node_name as _name
from cimsim.mapping.topology import packet_flits
from cimsim.network.layers import EdgeRole
from cimsim.sim.probe import Probe

if TYPE_CHECKING:
    from cimsim.hw.ports import OutputMemory, OutputPort

Node = object
LOCAL = "local"
"""A router's port to its own core (injection input, ejection output)."""
_ARBITRATION = 2
"""SimPy priority of the arbitration event: after the cycle's ordinary (NORMAL = 1) events."""


@dataclass(eq=False)
class Packet:
    """One pixel (or partial-sum vector) on its way from one core to another."""

    flits: int
    route: tuple[Node, ...]
    deliver: Callable[[Packet], None]
    """Called with the packet when its tail has reached the destination core."""
    source: str
    left: OutputMemory | None = None
    """The output memory the packet leaves when the first router grants it."""
    port: OutputPort | None = None
    """The output port that sent it (the router fabric delivers to it)."""
    earliest: int = 0
    """First cycle the consumer may use the packet (a partial sum's hold)."""
    hop: int = 0
    head_at: int = 0
    """Cycle the head flit reached the router at route[hop]."""


@dataclass
class LinkStats:
    """One directed link's name and the peak occupancy of the input buffer it feeds
    (what it carried comes from the probe's link events: `cimsim.sim.stats.LinkCollector`)."""

    name: str
    peak_buffer_flits: int = 0


@dataclass(eq=False)
class _InputBuffer:
    capacity: int | None
    queue: deque[Packet] = field(default_factory=deque)
    reserved: int = 0
    upstream: Router | None = None
    stats: LinkStats | None = None

    def credits(self) -> int | None:
        return None if self.capacity is None else self.capacity - self.reserved


class _Phase(simpy.Event):
    """The arbitration event of one cycle (a low-priority, already triggered event)."""

    def __init__(self, env: simpy.Environment, delay: int, callback: Callable[[simpy.Event], None]) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        self.callbacks.append(callback)
        env.schedule(self, _ARBITRATION, delay)  # type: ignore[arg-type]  # below NORMAL


class _Cycle:
    """What happens in one cycle: credits returned, packets ejected, routers to arbitrate."""

    __slots__ = ("credits", "ejected", "routers")

    def __init__(self) -> None:
        self.credits: list[tuple[_InputBuffer, int]] = []
        self.ejected: list[Packet] = []
        self.routers: set[Router] = set()


class Router:
    """One router: input buffers per incoming link (plus the local injection port), an
    output per outgoing link (plus the local ejection port), round-robin arbitration."""

    def __init__(self, noc: Noc, node: Node, index: int) -> None:
        self.noc = noc
        self.node = node
        self.index = index
        """Position in the NoC's fixed arbitration order."""
        self.inputs: dict[Node, _InputBuffer] = {LOCAL: _InputBuffer(None)}
        self.outputs: dict[Node, LinkStats] = {LOCAL: LinkStats(f"{_name(node)}->core")}
        self.busy_until: dict[Node, int] = {LOCAL: 0}
        self.rr: dict[Node, int] = {LOCAL: 0}
        self.ports: list[Node] = []
        """Input port names in arbitration order (set when the NoC is wired)."""

    def __lt__(self, other: Router) -> bool:
        return self.index < other.index

    def kick(self) -> None:
        """Something changed now: arbitrate in this cycle."""
        self.noc.request(self, int(self.noc.env.now))

    def arbitrate(self, now: int) -> None:
        """Grant free outputs to waiting packets until nothing can move; ask to arbitrate
        again when a busy output a packet waits for becomes free."""
        ports, inputs, routers, rr = self.ports, self.inputs, self.noc.routers, self.rr
        n = len(ports)
        moved = True
        while moved:
            moved = False
            wants: dict[Node, list[int]] = {}
            for i, port in enumerate(ports):
                queue = inputs[port].queue
                if queue:
                    pkt = queue[0]
                    if pkt.head_at <= now:
                        wants.setdefault(self._next(pkt), []).append(i)
            if not wants:
                return
            for out in self.outputs:
                waiting = wants.get(out)
                if waiting is None:
                    continue
                free = self.busy_until[out]
                if free > now:
                    self.noc.request(self, free)
                    continue
                start = rr[out]
                down = None if out == LOCAL else routers[out].inputs[self.node]
                for i in sorted(waiting, key=lambda j: (j - start) % n):
                    pkt = inputs[ports[i]].queue[0]
                    if down is not None and down.capacity is not None and down.capacity - down.reserved < pkt.flits:
                        continue  # arbitrates again when the next router returns credits
                    inputs[ports[i]].queue.popleft()
                    self._grant(pkt, inputs[ports[i]], out, down, now)
                    rr[out] = (i + 1) % n
                    moved = True
                    break

    def _next(self, pkt: Packet) -> Node:
        return LOCAL if pkt.hop == len(pkt.route) - 1 else pkt.route[pkt.hop + 1]

    def _grant(self, pkt: Packet, buf: _InputBuffer, out: Node, down: _InputBuffer | None, now: int) -> None:
        noc = self.noc
        tail_leaves = now + noc.router_cycles + pkt.flits
        self.busy_until[out] = tail_leaves
        stats = self.outputs[out]
        if pkt.hop == 0 and pkt.left is not None:
            pkt.left.give_back()
        if buf.capacity is not None:  # this buffer's credits go back when the tail has left
            noc.credit(buf, pkt.flits, tail_leaves)
        head = now + noc.router_cycles + noc.link_cycles
        if down is None:
            noc.probe.link(now, stats.name, pkt.source, pkt.flits, pkt.flits)
            noc.eject(pkt, head + pkt.flits - 1)
            return
        down.reserved += pkt.flits
        assert down.stats is not None
        if down.reserved > down.stats.peak_buffer_flits:
            down.stats.peak_buffer_flits = down.reserved
        noc.probe.link(now, stats.name, pkt.source, pkt.flits, pkt.flits, down.reserved)
        pkt.hop += 1
        pkt.head_at = head
        down.queue.append(pkt)
        noc.request(noc.routers[out], head)


class Noc:
    """Routers on a topology graph; cores and the DRAM port inject packets at their router."""

    def __init__(self, env: simpy.Environment, graph: nx.DiGraph, link_width_bits: int, link_cycles: int,
                 router_cycles: int, buffer_depth_flits: int, header_bits: int, probe: Probe) -> None:
        self.env = env
        self.graph = graph
        self.link_width_bits = link_width_bits
        self.link_cycles = link_cycles
        self.router_cycles = router_cycles
        self.header_bits = header_bits
        self.probe = probe
        self.routers: dict[Node, Router] = {n: Router(self, n, i) for i, n in enumerate(graph.nodes)}
        for a, b in graph.edges:
            ra, rb = self.routers[a], self.routers[b]
            stats = LinkStats(f"{_name(a)}->{_name(b)}")
            ra.outputs[b] = stats
            ra.busy_until[b] = 0
            ra.rr[b] = 0
            rb.inputs[a] = _InputBuffer(buffer_depth_flits, upstream=ra, stats=stats)
        for r in self.routers.values():
            r.ports = list(r.inputs)
        self._cycles: dict[int, _Cycle] = {}
        self._running: int | None = None
        """The cycle whose arbitration is under way (requests for it join the running phase)."""
        self.phases = 0
        """Arbitration events run (for benchmarks)."""

    # --- the per-cycle schedule ---------------------------------------------------------------
    def _at(self, cycle: int) -> _Cycle:
        entry = self._cycles.get(cycle)
        if entry is None:
            entry = self._cycles[cycle] = _Cycle()
            if cycle != self._running:
                _Phase(self.env, cycle - int(self.env.now), self._phase)
        return entry

    def request(self, router: Router, cycle: int) -> None:
        """`router` arbitrates in `cycle` (now or later)."""
        self._at(cycle).routers.add(router)

    def credit(self, buf: _InputBuffer, flits: int, cycle: int) -> None:
        """`flits` credits of `buf` come back in `cycle`; its upstream router then re-arbitrates."""
        self._at(cycle).credits.append((buf, flits))

    def eject(self, pkt: Packet, cycle: int) -> None:
        """`pkt`'s tail reaches its core in `cycle`."""
        self._at(cycle).ejected.append(pkt)

    def _phase(self, _event: simpy.Event) -> None:
        now = int(self.env.now)
        entry = self._cycles.get(now)
        if entry is None:  # already run by an earlier phase event of this cycle
            return
        self.phases += 1
        self._running = now
        self._apply(entry)
        while entry.routers:
            batch = sorted(entry.routers)
            entry.routers = set()
            for router in batch:
                router.arbitrate(now)
            self._apply(entry)  # zero-latency changes made in this cycle
        del self._cycles[now]
        self._running = None

    @staticmethod
    def _apply(entry: _Cycle) -> None:
        """Return the cycle's credits (their upstream routers then arbitrate) and hand over
        the packets ejected in it."""
        for buf, flits in entry.credits:
            buf.reserved -= flits
            if buf.upstream is not None:
                entry.routers.add(buf.upstream)
        ejected = entry.ejected
        entry.credits, entry.ejected = [], []
        for pkt in ejected:
            pkt.deliver(pkt)

    # --- interface --------------------------------------------------------------------------
    def flits(self, payload_bits: int) -> int:
        """Flits of a packet carrying `payload_bits` (plus the header)."""
        return packet_flits(payload_bits, self.header_bits, self.link_width_bits)

    def inject(self, pkt: Packet) -> None:
        """Queue a packet at its source router's local input port (the core's output memory)."""
        router = self.routers[pkt.route[0]]
        now = int(self.env.now)
        pkt.head_at = now
        router.inputs[LOCAL].queue.append(pkt)
        self.request(router, now)

    def blocked_lines(self) -> list[str]:
        """Routers holding packets, and what the packet at each buffer's head waits for."""
        lines = []
        for r in self.routers.values():
            for port, buf in r.inputs.items():
                if not buf.queue:
                    continue
                pkt = buf.queue[0]
                out = r._next(pkt)
                down = None if out == LOCAL else self.routers[out].inputs[r.node]
                credits = down.credits() if down is not None else None
                if down is not None and credits is not None and credits < pkt.flits:
                    why = (f"{pkt.flits} credits on link {_name(r.node)}->{_name(out)} "
                           f"(buffer {down.reserved}/{down.capacity} flits)")
                else:
                    why = f"link {_name(r.node)}->{_name(out) if out != LOCAL else 'core'}"
                lines.append(f"router {_name(r.node)} input {_name(port)}: {len(buf.queue)} packets, head from "
                             f"{pkt.source} waits for {why}")
        return lines

    def links(self) -> list[LinkStats]:
        """Statistics of every link, ejection ports included, in a fixed order."""
        return [s for r in self.routers.values() for s in r.outputs.values()]

    def drained_problems(self) -> list[str]:
        """After the run: no router holds a packet or reserved flits, no buffer overflowed."""
        problems = []
        for router in self.routers.values():
            for port, buf in router.inputs.items():
                if buf.queue or buf.reserved:
                    problems.append(f"router {_name(router.node)} input {_name(port)}: {len(buf.queue)} packets, "
                                    f"{buf.reserved} flits still held after the run (flits not conserved)")
                if buf.capacity is not None and buf.stats is not None and buf.stats.peak_buffer_flits > buf.capacity:
                    problems.append(f"router {_name(router.node)} input {_name(port)}: "
                                    f"{buf.stats.peak_buffer_flits} flits, depth {buf.capacity}")
        return problems


class RouterFabric(Fabric):
    """The router NoC as the chip's fabric: a port's pixels become packets at its router."""

    def __init__(self, env: simpy.Environment, graph: nx.DiGraph, link_width_bits: int, link_cycles: int,
                 router_cycles: int, buffer_depth_flits: int, header_bits: int, cycles_per_timestep: int,
                 partial_sum_timesteps: int, probe: Probe) -> None:
        self.env = env
        self.noc = Noc(env, graph, link_width_bits, link_cycles, router_cycles, buffer_depth_flits, header_bits,
                       probe)
        self.cpt = cycles_per_timestep
        self.partial_hold = partial_sum_timesteps
        """A partial sum produced in timestep t is handed over no earlier than timestep t + hold."""
        self._delivered = self.delivered

    def flits(self, payload_bits: int) -> int:
        """Flits of a packet carrying `payload_bits` (plus the header)."""
        return self.noc.flits(payload_bits)

    def output_memory(self, packets: int) -> OutputMemory:
        """The core's output memory: packets wait there for their router."""
        from cimsim.hw.ports import OutputMemory

        return OutputMemory(packets)

    def transmit(self, port: OutputPort, count: int, at_cycle: int) -> None:
        """Queue `count` packets in the output memory; inject them at `at_cycle`."""
        if port.out_memory is not None:
            port.out_memory.take(count)
        hold = self.partial_hold if port.role is EdgeRole.PARTIAL else 0
        earliest = (at_cycle // self.cpt + hold) * self.cpt
        delay = at_cycle - self.env.now
        if delay <= 0:
            self._inject(port, count, earliest)
        else:
            simpy.Timeout(self.env, delay, (port, count, earliest)).callbacks.append(self._inject_later)

    def _inject_later(self, event: simpy.Event) -> None:
        port, count, earliest = event._value
        self._inject(port, count, earliest)

    def _inject(self, port: OutputPort, count: int, earliest: int) -> None:
        noc, deliver = self.noc, self._delivered
        for _ in range(count):
            noc.inject(Packet(port.flits, port.route, deliver, port.source, port.out_memory, port, earliest))

    def delivered(self, pkt: Packet) -> None:
        """A packet's tail reached its core: hand it over from its earliest cycle."""
        assert pkt.port is not None
        self.schedule(self.env, pkt.port, 1, pkt.earliest)

    def blocked_lines(self) -> list[str]:
        """Routers holding packets and what each waits for."""
        return self.noc.blocked_lines()

    def drained_problems(self) -> list[str]:
        """Packets or flits still in the routers."""
        return self.noc.drained_problems()
