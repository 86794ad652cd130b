"""Components alone: a Core of a tiny conv layer between a scripted source and a sink,
and the ports (issue 10). Harness code: tests/harness.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import simpy
from harness import CoreRig, NotFinished, Recorder, TestSink, build_core, random_delay, run_until

from cimsim.errors import SimulationError
from cimsim.hw.clocking import Elastic, LockStep
from cimsim.hw.fabric import IdealFabric
from cimsim.hw.ports import OutputMemory, OutputPort
from cimsim.network.layers import EdgeRole
from cimsim.sim.probe import StallCause

CPT = 20

# --- helpers ------------------------------------------------------------------------------------


def _burst(rig: CoreRig) -> int:
    """Largest number of outputs the core releases at once."""
    return int(np.diff(rig.geom.group_released, prepend=0).max())


def _check_stream(rig: CoreRig, hop_cycles: int = 0) -> None:
    """Every output arrived once, in stream order, no earlier than the step that released it."""
    core, geom, rec = rig.core, rig.geom, rig.recorder
    assert len(rig.sink.arrivals) == rig.expected_outputs == core.done
    assert rig.sink.port.arrived == rig.sink.port.counts["conv"] == rig.out_port.sent
    # compute events come in group order, image after image
    expected = [(i, int(geom.group_done[g] - geom.group_count[g]), int(geom.group_count[g]))
                for i in range(rig.batch) for g in range(geom.n_groups)]
    assert [(c[3], c[4], c[5]) for c in rec.computes] == expected
    released = [i * geom.n_out + int(r) for i in range(rig.batch) for r in geom.group_released]
    e = 0
    for j, cycle in enumerate(rig.sink.arrivals):
        while released[e] <= j:
            e += 1
        assert cycle >= rec.computes[e][0] + hop_cycles, f"output {j} arrived before the step releasing it"
    assert rig.sink.held_max <= (rig.sink.port.capacity or rig.expected_outputs)
    assert [im for im, _, _ in rec.images] == list(range(rig.batch))
    assert core.drained_problems({"src": geom.n_in}) == []
    assert rig.out_port.drained_problems() == []


def _check_tiled(rec: Recorder) -> None:
    """Lock-step: from the first timestep accounted, every timestep is exactly one of a
    computed step or a stall timestep."""
    covered: Counter[int] = Counter(c[1] for c in rec.computes)
    for _cause, start, n in rec.stalls:
        assert n > 0
        covered.update(range(start, start + n))
    lo, hi = min(covered), max(covered)
    assert [t for t in range(lo, hi + 1) if covered[t] != 1] == []


# --- Core: hand-derived timing ------------------------------------------------------------------

# One input pixel per timestep, pixel k (column-major: k = col * 4 + row) arriving at the
# start of timestep k. A group fires in the first timestep in which its newest input pixel
# has arrived and after the previous group's timestep (one step per timestep).
#  - 3 x 3, padding 1, rate 1: output (r, c) needs pixel min(c + 1, 3) * 4 + min(r + 1, 3):
#    column 0 needs 5, 6, 7, 7 -> timesteps 5, 6, 7, 8; column 1 9..12; column 2 13..16;
#    column 3 needs 13, 14, 15, 15 but follows column 2: timesteps 17..20.
#  - stride 2: output (r, c) needs pixel min(2c + 1, 3) * 4 + min(2r + 1, 3) = 5, 7, 13, 15.
#  - Method 2, rate 4, dW = 2: 2 x 2 output blocks; block (0, 0) needs rows/cols up to 2:
#    pixel 10; (2, 0) up to row 3: 11; (0, 2) col 3: 14; (2, 2) 15.
HAND = {
    "rate1": ({}, list(range(5, 21))),
    "stride2": ({"stride": 2}, [5, 7, 13, 15]),
    "method2": ({"rate": 4, "dw": 2}, [10, 11, 14, 15]),
}


@pytest.mark.parametrize("case", list(HAND))
def test_core_fires_each_group_in_the_hand_derived_timestep(case: str) -> None:
    kwargs, timesteps = HAND[case]
    rig = build_core(**kwargs)
    end = rig.run(max_cycles=100 * CPT)
    rec = rig.recorder
    assert [c[1] for c in rec.computes] == timesteps
    # lock-step: a step that fits starts at its timestep's start and delivers at once
    # (ideal fabric, 0 hops): the last output arrives in the last group's timestep
    assert all(c[0] == c[1] * CPT for c in rec.computes)
    assert rig.sink.arrivals[-1] == timesteps[-1] * CPT == end
    assert rec.images == [(0, timesteps[-1], timesteps[-1] * CPT)]
    # every idle timestep between the first pixel (timestep 0) and the last step waits for input
    assert {c for c, _, _ in rec.stalls} == {StallCause.INPUT}
    assert rec.stall_total(StallCause.INPUT) == timesteps[-1] + 1 - len(timesteps)
    _check_tiled(rec)
    _check_stream(rig)


def test_core_input_stalls_are_the_gaps_between_needed_pixels() -> None:
    rig = build_core(stride=2)
    rig.run(max_cycles=100 * CPT)
    # stride 2 fires at 5, 7, 13, 15 (see HAND): input stalls fill 0-4, 6, 8-12, 14
    assert rig.recorder.stalls == [(StallCause.INPUT, 0, 5), (StallCause.INPUT, 6, 1),
                                   (StallCause.INPUT, 8, 5), (StallCause.INPUT, 14, 1)]


def test_core_output_hop_delays_every_output_by_one_timestep() -> None:
    rig = build_core(out_hop_timesteps=1)
    rig.run(max_cycles=100 * CPT)
    assert rig.sink.arrivals == [(t + 1) * CPT for t in range(5, 21)]
    _check_stream(rig, hop_cycles=CPT)


@pytest.mark.parametrize(("kwargs", "cause"), [({"read": 25}, StallCause.SRAM), ({"mvm": 25}, StallCause.COMPUTE)])
def test_core_step_longer_than_a_timestep_stalls_for_its_overrun(kwargs: dict, cause: StallCause) -> None:
    rig = build_core(**kwargs)  # 25 + 5 + 2 (+ 1 write) cycles: every step takes two 20-cycle timesteps
    rig.run(max_cycles=200 * CPT)
    rec = rig.recorder
    overruns = [s for s in rec.stalls if s[0] is cause]
    assert len(overruns) == len(rec.computes) == 16
    assert all((c, s, n) == (cause, step[1] + 1, 1) for step, (c, s, n) in zip(rec.computes, overruns, strict=False))
    # the outputs are usable from the start of the step's last timestep
    assert rig.sink.arrivals == [(c[1] + 1) * CPT for c in rec.computes]
    _check_tiled(rec)
    _check_stream(rig)


class _SlowGroupDatapath:
    """A datapath stand-in: MVMs of 4 cycles, except group `slow` of image 0 (16 recovery cycles more)."""

    base_mvm_cycles = 4

    def __init__(self, slow: int) -> None:
        self.slow = slow
        self.finished: list[tuple[int, int]] = []

    def mvm(self, layer: str, image: int, gi: int, cores: int) -> int:
        return 20 if (image, gi) == (0, self.slow) else 4

    def finish(self, layer: str, image: int, gi: int) -> None:
        self.finished.append((image, gi))


def test_lockstep_core_recovery_overrun_stalls_for_recovery_and_delays_the_rest() -> None:
    dp = _SlowGroupDatapath(slow=5)  # output (1, 1), timestep 10 (see HAND)
    rig = build_core(mvm=99, datapath=dp)  # the datapath's MVM cycles replace chip.mvm_cycles
    rig.run(max_cycles=100 * CPT)
    rec = rig.recorder
    # 1 write + 20 MVM + 2 digital = 23 cycles > 20: timesteps 10 and 11; without the 16
    # recovery cycles it would have fitted, so timestep 11 is a recovery stall
    assert [c[1] for c in rec.computes] == [*range(5, 11), *range(12, 22)]
    assert (StallCause.RECOVERY, 11, 1) in rec.stalls and rec.stall_total(StallCause.RECOVERY) == 1
    assert rec.computes[5][6] == 23 and rig.sink.arrivals[5] == 11 * CPT
    assert rig.sink.upstream_causes == [(10 * CPT, StallCause.RECOVERY)]  # told at once why output 5 is late
    assert dp.finished == [(0, g) for g in range(16)]  # the writer core finished every group
    _check_tiled(rec)
    _check_stream(rig)


def test_elastic_core_announces_recovery_to_its_consumers_during_the_step() -> None:
    rig = build_core(mvm=99, datapath=_SlowGroupDatapath(slow=5), clocking=Elastic(CPT))
    rig.run(max_cycles=100 * CPT)
    rec = rig.recorder
    step = rec.computes[5]  # fires when pixel 10 arrives (cycle 200), 23 cycles
    assert (step[0], step[6]) == (200, 23) and rig.sink.arrivals[5] == 223
    assert rig.sink.upstream_causes[0] == (200, StallCause.RECOVERY)  # announced when it started
    assert rig.sink.port.upstream_cause is None  # cleared when the outputs arrived
    # recovery ran 207-223 and crossed the boundary at 220: timestep 11 charged to recovery
    assert rec.stalls.count((StallCause.RECOVERY, 11, 1)) == 1
    _check_stream(rig)


# --- Core: back-pressure with randomised sink delays --------------------------------------------

CONFIGS = {  # (core, largest sink delay in cycles: slower than the core's output rate on average)
    "rate1": ({}, 3 * CPT),
    "stride2": ({"stride": 2}, 12 * CPT),
    "method2": ({"rate": 4, "dw": 2}, 3 * CPT),
    "rate2_in2": ({"rate": 2, "in_per_timestep": 2, "main_capacity": 4}, 2 * CPT),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("clock", ["lockstep", "elastic"])
def test_core_under_random_sink_back_pressure_conserves_and_orders_outputs(config: str, clock: str,
                                                                           seed: int) -> None:
    rng = np.random.default_rng(seed)
    kwargs, max_delay = CONFIGS[config]
    burst = _burst(build_core(**kwargs))
    capacity = 2 * burst if burst > 1 else int(rng.integers(1, 4))
    hop = int(rng.integers(0, 2))
    rig = build_core(**kwargs, batch=3, sink_capacity=capacity, sink_delay=random_delay(rng, 0, max_delay),
                     out_hop_timesteps=hop, clocking=LockStep(CPT) if clock == "lockstep" else Elastic(CPT))
    rig.run(max_cycles=2000 * CPT)
    _check_stream(rig, hop_cycles=hop * CPT)
    rec = rig.recorder
    # the sink held the core back: it waited on a full buffer (output) or on pixels in flight (noc)
    assert rec.stall_total(StallCause.OUTPUT) + rec.stall_total(StallCause.NOC) > 0
    assert {c for c, _, _ in rec.stalls} <= {StallCause.INPUT, StallCause.OUTPUT, StallCause.NOC}
    if clock == "lockstep":
        _check_tiled(rec)
        assert len({c[1] for c in rec.computes}) == len(rec.computes)  # one step per timestep
    else:  # elastic: steps of one core never overlap
        assert all(b[0] >= a[0] + a[6] for a, b in zip(rec.computes, rec.computes[1:], strict=False))


def test_core_stalls_for_output_while_a_slow_sink_is_full() -> None:
    rng = np.random.default_rng(7)
    # the sink takes 2-4 timesteps per pixel; the core could produce one per timestep
    rig = build_core(batch=2, sink_capacity=1, sink_delay=random_delay(rng, 2 * CPT, 4 * CPT))
    rig.run(max_cycles=2000 * CPT)
    rec = rig.recorder
    causes = {c for c, _, _ in rec.stalls}
    assert StallCause.OUTPUT in causes and StallCause.INPUT in causes
    assert causes <= {StallCause.INPUT, StallCause.OUTPUT}
    # the sink, not the core, sets the pace: about one output per three timesteps
    assert rec.stall_total(StallCause.OUTPUT) > len(rec.computes)
    _check_tiled(rec)
    _check_stream(rig)


def test_core_that_cannot_fit_its_burst_in_the_sink_never_finishes_and_says_why() -> None:
    rig = build_core(rate=4, dw=2, sink_capacity=4)  # a Method 2 stripe releases 6 outputs at once
    with pytest.raises(NotFinished, match="deadlock"):
        rig.run(max_cycles=500 * CPT)
    assert rig.core.cause is StallCause.OUTPUT
    assert rig.out_port.blocked(6) is StallCause.OUTPUT and rig.sink.port.arrived == 2
    assert any("finished 1/4 groups" in p for p in rig.core.drained_problems({"src": 16}))


def test_explain_names_the_buffer_a_burst_waits_for() -> None:
    rig = build_core(rate=4, dw=2, sink_capacity=4)
    with pytest.raises(NotFinished):
        rig.run(max_cycles=500 * CPT)
    assert rig.core.explain().endswith("waits for space in the main buffer of sink0 (0/4 pixels)")


# --- Core: invariants ---------------------------------------------------------------------------


class _NoHoldOff(LockStep):
    """A broken lock-step clocking: lets a core fire twice in one timestep."""

    def hold_off(self, now: int, busy_until_timestep: int) -> int:
        return 0


def test_check_step_catches_two_steps_in_one_timestep() -> None:
    # column 0's last two outputs both need pixel 7 (timestep 7): without hold-off both fire then
    rig = build_core(clocking=_NoHoldOff(CPT))
    with pytest.raises(SimulationError, match="invariant violated: conv: computed two groups in timestep 7"):
        rig.run(max_cycles=100 * CPT)
    unchecked = build_core(clocking=_NoHoldOff(CPT), check=False)
    unchecked.run(max_cycles=100 * CPT)  # the same bug goes unnoticed without the check
    assert [c[1] for c in unchecked.recorder.computes].count(7) == 2


def test_check_step_catches_a_group_fired_without_its_window() -> None:
    rig = build_core()
    core = rig.core
    with pytest.raises(SimulationError, match=r"group 0 .* needs 6 stored input pixels, only 0 stored"):
        core._check_step(0, 0, 0)
    rig.run(max_cycles=100 * CPT)
    # pretend image 1 had arrived and overwritten columns 0-1 of image 0's window (12 slots)
    core.stored = core.main.arrived = 4 * 4 + 2 * 4
    with pytest.raises(SimulationError, match="needs input pixel 0, overwritten"):
        core._check_step(0, 0, 99)


def test_drained_problems_name_a_producer_that_sent_too_many_pixels() -> None:
    rig = build_core()
    rig.run(max_cycles=100 * CPT)
    assert rig.core.drained_problems({"src": 16}) == []
    rig.core.main.deliver("src", 1)  # one pixel more than the producer emits
    problems = rig.core.drained_problems({"src": 16})
    assert len(problems) == 1 and "received 17 pixels" in problems[0]


# --- ports --------------------------------------------------------------------------------------


class _Waker:
    def __init__(self) -> None:
        self.kicks = 0

    def kick(self) -> None:
        self.kicks += 1


def _port(capacity: int | None, hop: int = 1, memory: OutputMemory | None = None,
          sources: tuple[str, ...] = ("a",)) -> tuple[simpy.Environment, TestSink, OutputPort]:
    env = simpy.Environment()
    sink = TestSink(env, sources=sources, capacity=capacity, delay=lambda: 10**9)  # never consumes by itself
    return env, sink, OutputPort(env, sources[0], sink.port, IdealFabric(env, 10, hop, 0), out_memory=memory)


def test_output_port_blocked_is_noc_while_in_flight_and_output_when_the_buffer_is_full() -> None:
    env, sink, port = _port(capacity=2, hop=1)
    assert port.blocked(2) is None and port.blocked(3) is StallCause.OUTPUT
    port.send(2, 0)
    assert port.in_flight == 2 and sink.port.in_flight == 2
    assert port.blocked(1) is StallCause.NOC  # room in the buffer, but taken by pixels in flight
    env.run(until=11)
    assert port.in_flight == 0 and sink.port.arrived == 2 and sink.arrivals == [10, 10]
    assert port.blocked(1) is StallCause.OUTPUT and not port.has_space(1)
    sink.port.consume_to(1)
    assert port.blocked(1) is None and port.blocked(2) is StallCause.OUTPUT
    assert port.drained_problems() == []


def test_output_memory_full_is_a_noc_stall_and_give_back_wakes_the_core() -> None:
    memory = OutputMemory(2)
    _env, _sink, port = _port(capacity=None, memory=memory)
    core = _Waker()
    memory.take(2)
    assert memory.free == 0 and memory.peak_used == 2
    assert port.blocked(1) is StallCause.NOC
    port.register_waiter(core)
    memory.give_back()
    assert core.kicks == 1 and port.blocked(1) is None and not memory.waiters


def test_consume_to_wakes_every_waiter_once_and_never_passes_arrivals() -> None:
    _env, sink, port = _port(capacity=1, hop=0)
    port.send(1, 0)
    a, b = _Waker(), _Waker()
    port.register_waiter(a)
    port.register_waiter(b)
    sink.port.consume_to(5)  # only one pixel has arrived
    assert sink.port.consumed == 1
    assert (a.kicks, b.kicks) == (1, 1) and not sink.port.waiters
    sink.port.consume_to(1)  # nothing new: nobody to wake
    assert (a.kicks, b.kicks) == (1, 1)


def test_multi_source_port_has_a_pixel_once_every_source_delivered_it() -> None:
    _env, sink, _ = _port(capacity=3, sources=("left", "right"))
    port = sink.port
    kicks = sink.kicks
    port.deliver("left", 3)
    assert port.arrived == 0 and sink.kicks == kicks  # the right half of pixel 0 is missing
    assert port.space("left") == 0 and port.space("right") == 3
    port.deliver("right", 2)
    assert port.arrived == 2 and sink.arrivals == [0, 0] and sink.kicks == kicks + 1
    port.consume_to(2)
    assert port.space("left") == 2 and port.space("right") == 3
    port.deliver("right", 2)
    assert port.arrived == 3 and port.peak == 2


def test_input_port_reports_an_overfilled_buffer() -> None:
    _env, sink, _ = _port(capacity=2)
    assert sink.port.invariant_problems() == []
    sink.port.deliver("a", 3)  # a producer that ignored back-pressure
    assert sink.port.invariant_problems() == ["sink: main buffer holds 3 pixels, capacity 2"]


def test_port_drained_problems_name_pixels_still_in_flight() -> None:
    env, sink, port = _port(capacity=None, hop=2)
    port.send(3, 0)
    env.run(until=5)
    assert port.drained_problems() == ["port a -> main of sink: sent 3, delivered 0, in flight 3"]
    run_until(env, lambda: sink.port.arrived == 3, 100)
    assert port.drained_problems() == [] and sink.arrivals == [20, 20, 20]


def test_announce_and_late_send_tell_the_consumer_why_it_waits() -> None:
    env, sink, port = _port(capacity=None, hop=0)
    port.announce(StallCause.RECOVERY)
    assert sink.port.upstream_cause is StallCause.RECOVERY
    port.send(1, 30, late_cause=StallCause.SRAM)  # a step that overran delivers at cycle 30
    assert sink.port.upstream_cause is StallCause.SRAM and sink.port.in_flight == 1
    env.run(until=31)
    assert sink.port.upstream_cause is None and sink.arrivals == [30]
    assert port.role is EdgeRole.MAIN
