"""Clocking strategies and the probe alone (issue 10): hand-computed step plans, and
per-kind dispatch of probe events."""

from __future__ import annotations

import pytest

from cimsim.config.schema import ChipConfig
from cimsim.hw.clocking import Elastic, LockStep, StepPlan, build_clocking
from cimsim.sim.probe import Probe, StallCause

CPT = 10

# --- lock-step ----------------------------------------------------------------------------------


def test_lockstep_holds_a_core_off_until_the_timestep_after_its_last_busy_one() -> None:
    clock = LockStep(CPT)
    assert clock.hold_off(15, busy_until_timestep=1) == 5  # wait for timestep 2 (cycle 20)
    assert clock.hold_off(10, busy_until_timestep=1) == 10
    assert clock.hold_off(20, busy_until_timestep=1) == 0
    assert clock.hold_off(0, busy_until_timestep=-1) == 0
    assert clock.one_step_per_timestep


def test_lockstep_step_that_fits_starts_at_its_timestep_and_delivers_at_once() -> None:
    plan = LockStep(CPT).step(13, sram_cycles=3, cycles=8, recovery_cycles=0)
    assert plan == StepPlan(start_cycle=10, wait_cycles=0, deliver_cycle=13, late_cause=None, announce=None,
                            stall=None, stall_start_timestep=2, stall_timesteps=0, busy_until_timestep=1,
                            next_mark_timestep=2)


@pytest.mark.parametrize(("sram", "cycles", "recovery", "cause"), [
    (15, 25, 0, StallCause.SRAM),  # 10 cycles besides SRAM fit a timestep: the SRAM overran
    (2, 25, 0, StallCause.COMPUTE),  # 23 cycles of MVM + digital do not fit
    (2, 15, 8, StallCause.RECOVERY),  # without its 8 recovery cycles the step (7) would fit
    (2, 15, 3, StallCause.COMPUTE),  # 12 cycles without recovery still overrun: not recovery's fault
])
def test_lockstep_overrun_occupies_the_next_timesteps_with_the_right_stall(sram: int, cycles: int, recovery: int,
                                                                          cause: StallCause) -> None:
    plan = LockStep(CPT).step(20, sram, cycles, recovery)
    steps = -(-cycles // CPT)  # 25 cycles: timesteps 2, 3, 4; 15 cycles: 2, 3
    assert plan.start_cycle == 20 and plan.wait_cycles == 0
    assert plan.stall is cause and plan.late_cause is cause and plan.announce is None
    assert (plan.stall_start_timestep, plan.stall_timesteps) == (3, steps - 1)
    assert plan.busy_until_timestep == 2 + steps - 1 and plan.next_mark_timestep == 2 + steps
    assert plan.deliver_cycle == (2 + steps - 1) * CPT  # usable from the start of its last timestep


# --- elastic ------------------------------------------------------------------------------------


def test_elastic_never_holds_off_and_a_step_lasts_its_own_cycles() -> None:
    clock = Elastic(CPT)
    assert clock.hold_off(15, busy_until_timestep=7) == 0 and not clock.one_step_per_timestep
    plan = clock.step(13, sram_cycles=2, cycles=8, recovery_cycles=0)
    assert plan == StepPlan(start_cycle=13, wait_cycles=8, deliver_cycle=21, late_cause=None, announce=None,
                            stall=None, stall_start_timestep=0, stall_timesteps=0, busy_until_timestep=1,
                            next_mark_timestep=3)


def test_elastic_announces_recovery_and_charges_the_boundaries_it_crosses() -> None:
    plan = Elastic(CPT).step(13, sram_cycles=2, cycles=20, recovery_cycles=8)
    # ends at 33; without recovery it would have ended at 25: boundary 30 crossed
    assert (plan.start_cycle, plan.wait_cycles, plan.deliver_cycle) == (13, 20, 33)
    assert plan.announce is StallCause.RECOVERY and plan.stall is StallCause.RECOVERY and plan.late_cause is None
    assert (plan.stall_start_timestep, plan.stall_timesteps) == (3, 1)
    assert plan.next_mark_timestep == 4
    inside = Elastic(CPT).step(11, 0, 8, 4)  # 11 -> 19, recovery from 15: no boundary crossed
    assert inside.announce is StallCause.RECOVERY and inside.stall_timesteps == 0


def test_build_clocking_follows_chip_clocking() -> None:
    assert type(build_clocking(ChipConfig(cycles_per_timestep=7))) is LockStep
    elastic = build_clocking(ChipConfig(cycles_per_timestep=7, clocking="elastic"))
    assert type(elastic) is Elastic and elastic.cpt == 7


# --- probe --------------------------------------------------------------------------------------


class _Stalls:
    def __init__(self) -> None:
        self.got: list[tuple[object, ...]] = []

    def stall(self, *args: object) -> None:
        self.got.append(args)


class _Computes:
    def __init__(self) -> None:
        self.got: list[tuple[object, ...]] = []

    def compute(self, *args: object) -> None:
        self.got.append(args)

    stall = None  # an attribute that is not a method: not a subscriber of stall events


def test_probe_dispatches_each_event_only_to_subscribers_that_define_it() -> None:
    stalls, computes = _Stalls(), _Computes()
    probe = Probe([stalls, computes])
    probe.compute(0, 0, 1, "conv", 0, 0, 1, 5, 0, 0)
    probe.stall(1, "conv", StallCause.INPUT, 0, 3)
    probe.image_done(0, 0, 5, 50)  # nobody listens: a no-op
    probe.link(0, "a->b", "conv", 2, 2)
    assert computes.got == [(0, 0, 1, "conv", 0, 0, 1, 5, 0, 0)]
    assert stalls.got == [(1, "conv", StallCause.INPUT, 0, 3)]
    later = _Stalls()
    probe.subscribe(later)  # rebinds: both stall subscribers get the next event
    probe.stall(2, "fc", "output", 4, 1)
    assert stalls.got[-1] == later.got[-1] == (2, "fc", StallCause.OUTPUT, 4, 1)
    assert type(later.got[-1][2]) is StallCause  # a plain string is turned into the enum


def test_probe_stall_rejects_a_misspelt_cause_and_drops_empty_stalls() -> None:
    stalls = _Stalls()
    probe = Probe([stalls])
    with pytest.raises(ValueError, match="inptu"):
        probe.stall(0, "conv", "inptu", 0, 1)  # type: ignore[arg-type]
    probe.stall(0, "conv", StallCause.SRAM, 3, 0)
    assert stalls.got == []
