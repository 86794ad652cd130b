"""Clocking strategies: when a core may fire, and what one step of it costs in time.

A core calls its clocking twice per step: `hold_off` before firing (how long it must
still wait), and `step` once it fires (when the step starts and ends, when its outputs
may be delivered, and which stall it causes). The core itself never asks which clocking
it runs under.

- `LockStep` (`chip.clocking = "timestep"`, Dazzi's dataflow): one step per core per
  timestep; a step starts at its timestep's start, and one longer than a timestep
  occupies the following timesteps (an `sram`, `compute` or `recovery` stall) and
  delivers at the start of its last timestep.
- `Elastic` (`chip.clocking = "elastic"`): free-running cores; a step starts when the
  core fires and takes its own cycles; recovery cycles are announced to the consumers
  at once, so they see a `recovery` stall rather than `input`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

from cimsim.config.schema import ChipConfig
from cimsim.sim.probe import StallCause


class StepPlan(NamedTuple):
    """The timing of one core step, as the clocking decides it."""

    start_cycle: int
    """Cycle the step starts (the probe's compute event carries it)."""
    wait_cycles: int
    """Cycles the core process sleeps before it delivers (0: deliver now)."""
    deliver_cycle: int
    """Cycle from which the outputs may be delivered."""
    late_cause: StallCause | None
    """Why `deliver_cycle` lies in the future, for the consumers (None: it does not)."""
    announce: StallCause | None
    """A cause to announce to the consumers before the wait (None: nothing to announce)."""
    stall: StallCause | None
    """Cause of the stall this step itself causes on the core (None: none)."""
    stall_start_timestep: int
    stall_timesteps: int
    busy_until_timestep: int
    """Last timestep the step occupies."""
    next_mark_timestep: int
    """First timestep after the step from which waiting counts as a stall."""


_new = tuple.__new__
"""Builds a `StepPlan` without the named tuple's Python-level constructor (hot path)."""


class Clocking(ABC):
    """When cores fire and how long their steps take."""

    def __init__(self, cycles_per_timestep: int) -> None:
        self.cpt = cycles_per_timestep

    @abstractmethod
    def hold_off(self, now: int, busy_until_timestep: int) -> int:
        """Cycles a core that is ready now must still wait before it fires (0: none)."""

    @abstractmethod
    def step(self, now: int, sram_cycles: int, cycles: int, recovery_cycles: int) -> StepPlan:
        """The timing of a step fired at `now` that takes `cycles` cycles, of which
        `sram_cycles` are SRAM accesses and `recovery_cycles` speculation recovery."""

    @property
    @abstractmethod
    def one_step_per_timestep(self) -> bool:
        """True when a core computes at most one step per timestep (an invariant to check)."""


class LockStep(Clocking):
    """Dazzi's timestep clocking: one step per core per timestep, started at its start."""

    one_step_per_timestep = True

    def hold_off(self, now: int, busy_until_timestep: int) -> int:
        """Wait for the timestep after the last one the previous step occupied."""
        cpt = self.cpt
        if now // cpt <= busy_until_timestep:
            return (busy_until_timestep + 1) * cpt - now
        return 0

    def step(self, now: int, sram_cycles: int, cycles: int, recovery_cycles: int) -> StepPlan:
        """A step of `cycles` from its timestep's start; longer ones occupy the next timesteps."""
        cpt = self.cpt
        now_ts = now // cpt
        steps = -(-cycles // cpt) or 1
        deliver = (now_ts + steps - 1) * cpt
        if deliver < now:
            deliver = now
        stall: StallCause | None = None
        if steps > 1:
            stall = StallCause.COMPUTE if cycles - sram_cycles > cpt else StallCause.SRAM
            if recovery_cycles > 0 and -(-(cycles - recovery_cycles) // cpt) < steps:
                stall = StallCause.RECOVERY
        busy = now_ts + steps - 1
        return _new(StepPlan, (now_ts * cpt, 0, deliver, stall, None, stall, now_ts + 1, steps - 1, busy, busy + 1))


class Elastic(Clocking):
    """Free-running cores: a step starts when the core fires and lasts its own cycles."""

    one_step_per_timestep = False

    def hold_off(self, now: int, busy_until_timestep: int) -> int:
        """Never: the core process itself was busy for its previous step."""
        return 0

    def step(self, now: int, sram_cycles: int, cycles: int, recovery_cycles: int) -> StepPlan:
        """A step of `cycles` from now; recovery cycles are announced to the consumers and
        charged as the timestep boundaries they cross."""
        cpt = self.cpt
        end = now + cycles
        announce = stall = None
        start_ts = lost = 0
        if recovery_cycles > 0:
            announce = stall = StallCause.RECOVERY
            start_ts = (end - recovery_cycles) // cpt + 1
            lost = end // cpt - (end - recovery_cycles) // cpt
        return _new(StepPlan, (now, cycles, end, None, announce, stall, start_ts, lost, now // cpt, end // cpt + 1))


def build_clocking(chip: ChipConfig) -> Clocking:
    """The clocking strategy the scenario names (`chip.clocking`)."""
    if chip.clocking == "elastic":
        return Elastic(chip.cycles_per_timestep)
    return LockStep(chip.cycles_per_timestep)
