"""The NoC under `timestep` clocking: each link has a budget of cycles per timestep.

Lock-step, as Dazzi's dataflow assumes: every transfer of timestep t starts at the
start of t, whatever the order in which the cores of that timestep fire, and is usable
in t if its last flit arrives within the timestep. Each link serialises the packets it
is given, one flit per cycle (so it carries `cycles_per_timestep` flits per timestep:
Eq. 7's bandwidth argument), cut through hop by hop after `router + link` cycles.
A transfer that ends in a later timestep is usable from that timestep on, and the
consumer waits (`noc` stall). Under `elastic` clocking the routers of
`cimsim.hw.noc` move the packets cycle by cycle instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cimsim.hw.fabric import Fabric
from cimsim.mapping.topology import node_name, packet_flits
from cimsim.network.layers import EdgeRole
from cimsim.sim.probe import Probe

if TYPE_CHECKING:
    import simpy

    from cimsim.hw.ports import OutputPort


@dataclass
class LockstepLink:
    """One directed link (its statistics come from the probe's link events)."""

    name: str
    free_at: int = 0
    """First cycle the link can start serialising another packet."""


class LinkBudgetFabric(Fabric):
    """Links as serialising resources; every transfer starts at its timestep's start."""

    def __init__(self, env: simpy.Environment, cycles_per_timestep: int, link_width_bits: int, link_cycles: int,
                 router_cycles: int, header_bits: int, partial_sum_timesteps: int, probe: Probe) -> None:
        self.env = env
        self.probe = probe
        self.cpt = cycles_per_timestep
        self.link_width_bits = link_width_bits
        self.hop_cycles = link_cycles + router_cycles
        self.header_bits = header_bits
        self.partial_hold = partial_sum_timesteps
        """A partial sum produced in timestep t is handed over no earlier than timestep t + hold."""
        self.links: dict[tuple[object, object], LockstepLink] = {}

    def flits(self, payload_bits: int) -> int:
        """Flits of a packet carrying `payload_bits` (plus the header)."""
        return packet_flits(payload_bits, self.header_bits, self.link_width_bits)

    def transmit(self, port: OutputPort, count: int, at_cycle: int) -> None:
        """Reserve the route once per pixel; deliver each when its last flit has arrived."""
        cpt = self.cpt
        ts = at_cycle // cpt
        hold = self.partial_hold if port.role is EdgeRole.PARTIAL else 0
        earliest = max(at_cycle, (ts + hold) * cpt)
        pending, when = 0, -1
        for _ in range(count):
            arrive = max(earliest, self.schedule_packet(port.route, port.flits, ts, port.source) * cpt)
            if arrive != when and pending:
                self.schedule(self.env, port, pending, when)
                pending = 0
            when = arrive
            pending += 1
        if pending:
            self.schedule(self.env, port, pending, when)

    def _link(self, a: object, b: object) -> LockstepLink:
        link = self.links.get((a, b))
        if link is None:
            link = self.links[(a, b)] = LockstepLink(f"{node_name(a)}->{node_name(b)}")
        return link

    def schedule_packet(self, route: tuple[object, ...], flits: int, timestep: int, source: str) -> int:
        """Reserve the route for one packet produced in `timestep`; return the timestep in
        which its last flit arrives (the producing timestep itself when it fits)."""
        cpt = self.cpt
        head = timestep * cpt
        end = head
        for a, b in itertools.pairwise(route):
            link = self._link(a, b)
            start = max(head + self.hop_cycles, link.free_at)
            end = start + flits
            link.free_at = end
            self.probe.link(start, link.name, source, flits, flits)
            head = start
        return max(timestep, (end - 1) // cpt)
