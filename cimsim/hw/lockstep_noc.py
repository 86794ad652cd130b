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

from cimsim.sim.probe import Probe


@dataclass
class LockstepLink:
    """One directed link (its statistics come from the probe's link events)."""

    name: str
    free_at: int = 0
    """First cycle the link can start serialising another packet."""


class LockstepNoc:
    """Links as serialising resources; every transfer starts at its timestep's start."""

    def __init__(self, cycles_per_timestep: int, link_width_bits: int, link_cycles: int, router_cycles: int,
                 header_bits: int, probe: Probe) -> None:
        self.probe = probe
        self.cpt = cycles_per_timestep
        self.link_width_bits = link_width_bits
        self.hop_cycles = link_cycles + router_cycles
        self.header_bits = header_bits
        self.links: dict[tuple[object, object], LockstepLink] = {}

    def flits(self, payload_bits: int) -> int:
        """Flits of a packet carrying `payload_bits` (plus the header)."""
        return -(-(payload_bits + self.header_bits) // self.link_width_bits)

    def _link(self, a: object, b: object) -> LockstepLink:
        link = self.links.get((a, b))
        if link is None:
            link = self.links[(a, b)] = LockstepLink(f"{_name(a)}->{_name(b)}")
        return link

    def schedule(self, route: tuple[object, ...], flits: int, timestep: int, source: str) -> int:
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


def _name(node: object) -> str:
    return node if isinstance(node, str) else f"r{node[0]}.{node[1]}"
