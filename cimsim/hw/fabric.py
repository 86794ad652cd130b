"""The fabric between cores: one interface, three implementations, built in one place.

An `OutputPort` hands the pixels it sends to `Fabric.transmit`; the fabric calls
`OutputPort.arrive` when they reach the consumer. Which fabric a chip has is decided
once, by `build_fabric`, from the scenario:

- `IdealFabric` (`noc.topology = "ideal"`): a fixed delay per stream role.
- `LinkBudgetFabric` (a mesh or prism under `timestep` clocking,
  `cimsim.hw.lockstep_noc`): links as per-timestep cycle budgets, Dazzi's lock-step.
- `RouterFabric` (a mesh or prism under `elastic` clocking, `cimsim.hw.noc`): routers
  as SimPy processes with credits and round-robin arbitration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import simpy

from cimsim.config.schema import FabricKind
from cimsim.network.layers import EdgeRole

if TYPE_CHECKING:
    from cimsim.config.schema import Scenario
    from cimsim.hw.ports import OutputMemory, OutputPort
    from cimsim.mapping.plan import MappingPlan
    from cimsim.sim.probe import Probe


class Fabric(ABC):
    """How pixels travel from an output port to its consumer."""

    @abstractmethod
    def transmit(self, port: OutputPort, count: int, at_cycle: int) -> None:
        """Carry `count` pixels of `port`, produced at `at_cycle` (now or later), and call
        `port.arrive` when they reach the consumer."""

    def flits(self, payload_bits: int) -> int:
        """Flits of one packet of `payload_bits` (0: the fabric has no packets)."""
        return 0

    def immediate(self, role: EdgeRole) -> bool:
        """True when pixels of `role` sent now arrive now and the fabric does nothing else
        with them: the port may then hand them to the consumer itself."""
        return False

    def output_memory(self, packets: int) -> OutputMemory | None:
        """A core's output memory of `packets` packets, where the fabric queues packets
        there (None: it does not)."""
        return None

    def blocked_lines(self) -> list[str]:
        """What holds packets in the fabric, for deadlock reports."""
        return []

    def drained_problems(self) -> list[str]:
        """After the run: what the fabric still holds (empty: nothing)."""
        return []

    @staticmethod
    def schedule(env: simpy.Environment, port: OutputPort, count: int, cycle: int) -> None:
        """Deliver `count` pixels of `port` at `cycle` (at once when it is not in the future)."""
        delay = cycle - env.now
        if delay <= 0:
            port.arrive(count)
        else:
            simpy.Timeout(env, delay, count).callbacks.append(port.on_arrival)


class IdealFabric(Fabric):
    """No contention: a pixel arrives a fixed number of timesteps after it is produced
    (`noc.ideal_hop_timesteps`; partial sums `chip.partial_sum_timesteps`)."""

    def __init__(self, env: simpy.Environment, cycles_per_timestep: int, hop_timesteps: int,
                 partial_sum_timesteps: int) -> None:
        self.env = env
        self.hop_cycles = hop_timesteps * cycles_per_timestep
        self.partial_cycles = partial_sum_timesteps * cycles_per_timestep

    def immediate(self, role: EdgeRole) -> bool:
        """True when the role's delay is zero."""
        return (self.partial_cycles if role is EdgeRole.PARTIAL else self.hop_cycles) == 0

    def transmit(self, port: OutputPort, count: int, at_cycle: int) -> None:
        """Deliver after the role's delay."""
        delay = (self.partial_cycles if port.role is EdgeRole.PARTIAL else self.hop_cycles) + at_cycle - self.env.now
        if delay <= 0:  # `port.arrive(count)`, inlined: the common case of the ideal fabric
            target = port.target
            target.upstream_cause = None
            port.in_flight -= count
            target.in_flight -= count
            target.deliver(port.source, count)
        else:
            simpy.Timeout(self.env, delay, count).callbacks.append(port.on_arrival)


def build_fabric(env: simpy.Environment, scenario: Scenario, plan: MappingPlan, probe: Probe) -> Fabric:
    """The fabric the scenario names, on the plan's topology."""
    from cimsim.hw.lockstep_noc import LinkBudgetFabric
    from cimsim.hw.noc import RouterFabric

    noc, chip = scenario.noc, scenario.chip
    if scenario.fabric is FabricKind.IDEAL or plan.topology is None:
        return IdealFabric(env, chip.cycles_per_timestep, noc.ideal_hop_timesteps, chip.partial_sum_timesteps)
    if scenario.fabric is FabricKind.LINK_BUDGET:
        return LinkBudgetFabric(env, chip.cycles_per_timestep, noc.link_width_bits, noc.link_cycles,
                                noc.router_cycles, noc.header_bits, chip.partial_sum_timesteps, probe)
    return RouterFabric(env, plan.topology, noc.link_width_bits, noc.link_cycles, noc.router_cycles,
                        noc.buffer_depth_flits, noc.header_bits, chip.cycles_per_timestep,
                        chip.partial_sum_timesteps, probe)
