"""The network-on-chip: routers as SimPy processes, links that serialise flits, credits.

Packets move by virtual cut-through at packet granularity: a router grants an output
link to one waiting packet at a time (round robin over its input ports), once the
link is free and the next router's input buffer has credits for the whole packet. The
head reaches the next router `router_cycles + link_cycles` after the grant and may be
forwarded from there while its tail is still arriving, so an uncontended packet takes
hops x (router_cycles + link_cycles) + flits - 1 cycles. Credits return when the tail
has left a buffer. A core's network interface (its output memory) queues packets for
its router's local input port.
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


@dataclass
class _InputBuffer:
    capacity: int | None
    queue: deque[Packet] = field(default_factory=deque)
    reserved: int = 0
    upstream: Router | None = None
    stats: LinkStats | None = None

    def credits(self) -> int | None:
        return None if self.capacity is None else self.capacity - self.reserved


class Router:
    """One router: input buffers per incoming link (plus the local injection port), an
    output per outgoing link (plus the local ejection port), round-robin arbitration."""

    def __init__(self, env: simpy.Environment, noc: Noc, node: Node) -> None:
        self.env = env
        self.noc = noc
        self.node = node
        self.inputs: dict[Node, _InputBuffer] = {"local": _InputBuffer(None)}
        self.outputs: dict[Node, LinkStats] = {"local": LinkStats(f"{_name(node)}->core")}
        self.busy_until: dict[Node, int] = {"local": 0}
        self.rr: dict[Node, int] = {"local": 0}
        self._wake: simpy.Event | None = None
        self._timer_at: int | None = None
        self.process = env.process(self.run())

    def kick(self) -> None:
        """Something changed: re-arbitrate."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _wake_at(self, cycle: int) -> None:
        if self._timer_at is not None and self._timer_at <= cycle:
            return
        self._timer_at = cycle
        self.env.timeout(cycle - self.env.now).callbacks.append(lambda _e: self._timer_fired(cycle))

    def _timer_fired(self, cycle: int) -> None:
        if self._timer_at == cycle:
            self._timer_at = None
        self.kick()

    def run(self):  # SimPy generator
        """Grant free outputs to waiting packets until nothing can move, then sleep."""
        env = self.env
        ports = list(self.inputs)
        while True:
            moved = False
            later: int | None = None
            for out in self.outputs:
                free = self.busy_until[out]
                if free > env.now:
                    later = free if later is None else min(later, free)
                    continue
                n = len(ports)
                start = self.rr[out]
                for i in range(n):
                    port = ports[(start + i) % n]
                    buf = self.inputs[port]
                    if not buf.queue:
                        continue
                    pkt = buf.queue[0]
                    if self._next(pkt) != out:
                        continue
                    if pkt.head_at > env.now:
                        later = pkt.head_at if later is None else min(later, pkt.head_at)
                        continue
                    down = None if out == "local" else self.noc.routers[out].inputs[self.node]
                    if down is not None and down.credits() is not None and down.credits() < pkt.flits:
                        continue  # woken again when the next router returns credits
                    buf.queue.popleft()
                    self._grant(pkt, buf, out, down)
                    self.rr[out] = (start + i + 1) % n
                    moved = True
                    break
            if moved:
                continue
            if later is not None:
                self._wake_at(later)
            self._wake = env.event()
            yield self._wake
            self._wake = None

    def _next(self, pkt: Packet) -> Node:
        return "local" if pkt.hop == len(pkt.route) - 1 else pkt.route[pkt.hop + 1]

    def _grant(self, pkt: Packet, buf: _InputBuffer, out: Node, down: _InputBuffer | None) -> None:
        env, cfg = self.env, self.noc
        now = env.now
        tail_leaves = now + cfg.router_cycles + pkt.flits
        self.busy_until[out] = tail_leaves
        stats = self.outputs[out]
        if pkt.hop == 0 and pkt.left is not None:
            pkt.left.give_back()
        if buf.capacity is not None:  # this buffer's credits go back when the tail has left
            up = buf.upstream
            flits = pkt.flits

            def _credit(_e: object) -> None:
                buf.reserved -= flits
                if up is not None:
                    up.kick()

            env.timeout(tail_leaves - now).callbacks.append(_credit)
        head = now + cfg.router_cycles + cfg.link_cycles
        if out == "local":
            self.noc.probe.link(now, stats.name, pkt.source, pkt.flits, pkt.flits)
            simpy.Timeout(env, head + pkt.flits - 1 - now, pkt).callbacks.append(_ejected)
            return
        down.reserved += pkt.flits
        down.stats.peak_buffer_flits = max(down.stats.peak_buffer_flits, down.reserved)
        self.noc.probe.link(now, stats.name, pkt.source, pkt.flits, pkt.flits, down.reserved)
        pkt.hop += 1
        pkt.head_at = head
        down.queue.append(pkt)
        nxt = self.noc.routers[out]
        if head > now:
            nxt._wake_at(head)
        else:
            nxt.kick()


def _ejected(event: simpy.Event) -> None:
    pkt = event.value
    pkt.deliver(pkt)


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
        self.routers: dict[Node, Router] = {n: Router(env, self, n) for n in graph.nodes}
        for a, b in graph.edges:
            ra, rb = self.routers[a], self.routers[b]
            stats = LinkStats(f"{_name(a)}->{_name(b)}")
            ra.outputs[b] = stats
            ra.busy_until[b] = 0
            ra.rr[b] = 0
            rb.inputs[a] = _InputBuffer(buffer_depth_flits, upstream=ra, stats=stats)

    def flits(self, payload_bits: int) -> int:
        """Flits of a packet carrying `payload_bits` (plus the header)."""
        return packet_flits(payload_bits, self.header_bits, self.link_width_bits)

    def inject(self, pkt: Packet) -> None:
        """Queue a packet at its source router's local input port (the core's output memory)."""
        router = self.routers[pkt.route[0]]
        pkt.head_at = self.env.now
        router.inputs["local"].queue.append(pkt)
        router.kick()

    def blocked_lines(self) -> list[str]:
        """Routers holding packets, and what the packet at each buffer's head waits for."""
        lines = []
        for r in self.routers.values():
            for port, buf in r.inputs.items():
                if not buf.queue:
                    continue
                pkt = buf.queue[0]
                out = r._next(pkt)
                down = None if out == "local" else self.routers[out].inputs[r.node]
                if down is not None and down.credits() is not None and down.credits() < pkt.flits:
                    why = (f"{pkt.flits} credits on link {_name(r.node)}->{_name(out)} "
                           f"(buffer {down.reserved}/{down.capacity} flits)")
                else:
                    why = f"link {_name(r.node)}->{_name(out) if out != 'local' else 'core'}"
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
        self._inject(*event.value)

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
