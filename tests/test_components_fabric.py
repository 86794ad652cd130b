"""The three fabrics alone, between OutputPorts and TestSinks (issue 10): the ideal
fabric's delays by role, the link-budget fabric's per-timestep serialisation, the
router fabric's hop latency, credits and conservation under random injection."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import simpy
from harness import CoreRig, Recorder, TestSink, TestSource, build_core, random_delay, run_until

from cimsim.config.schema import ChipConfig, NocConfig, Scenario
from cimsim.hw.clocking import Elastic
from cimsim.hw.fabric import IdealFabric, build_fabric
from cimsim.hw.lockstep_noc import LinkBudgetFabric
from cimsim.hw.noc import Noc, Packet, RouterFabric
from cimsim.hw.ports import InputPort, OutputPort
from cimsim.mapping import topology
from cimsim.network.layers import EdgeRole
from cimsim.sim.probe import Probe, StallCause

CPT = 10
LINE = ((0, 0), (0, 1), (0, 2))
"""A route over three routers: two links."""

# --- ideal fabric -------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "delay"), [(EdgeRole.MAIN, 1 * CPT), (EdgeRole.RESIDUAL, 1 * CPT),
                                             (EdgeRole.PARTIAL, 3 * CPT)])
def test_ideal_fabric_delays_by_role(role: EdgeRole, delay: int) -> None:
    env = simpy.Environment()
    sink = TestSink(env, role=role)
    port = OutputPort(env, "src", sink.port, IdealFabric(env, CPT, 1, 3))
    assert port.flits == 0 and port.fabric.output_memory(4) is None
    env.run(until=4)
    port.send(2, 4)  # produced now
    port.send(1, 25)  # produced at cycle 25 (a step that overran)
    run_until(env, lambda: sink.port.arrived == 3, 1000)
    assert sink.arrivals == [4 + delay] * 2 + [25 + delay]
    assert port.drained_problems() == [] and port.fabric.drained_problems() == []


def test_ideal_fabric_without_hops_delivers_inside_send() -> None:
    env = simpy.Environment()
    sink = TestSink(env)
    port = OutputPort(env, "src", sink.port, IdealFabric(env, CPT, 0, 0))
    port.send(3, 0)
    assert sink.port.arrived == 3 and port.in_flight == 0 and sink.arrivals == [0, 0, 0]


class _Kicks:
    """An input port's owner that counts its wake-ups."""

    def __init__(self) -> None:
        self.n = 0

    def kick(self) -> None:
        self.n += 1


def test_ideal_fabric_immediate_roles_and_the_ports_own_delivery() -> None:
    """A single-producer port on a zero-delay role delivers pixels sent for now itself (one
    wake-up, nothing in flight); later pixels and a two-producer input go through the fabric."""
    env = simpy.Environment()
    fabric = IdealFabric(env, CPT, 0, 1)
    assert fabric.immediate(EdgeRole.MAIN) and fabric.immediate(EdgeRole.RESIDUAL)
    assert not fabric.immediate(EdgeRole.PARTIAL) and not IdealFabric(env, CPT, 1, 0).immediate(EdgeRole.MAIN)
    owner = _Kicks()
    inp = InputPort(owner, EdgeRole.MAIN, ["a"], capacity=8)
    port = OutputPort(env, "a", inp, fabric)
    port.send(2, 0)
    assert (inp.arrived, inp.in_flight, port.in_flight, port.sent, owner.n) == (2, 0, 0, 2, 1)
    port.send(1, 5, StallCause.COMPUTE)  # produced at cycle 5 (a step that overran): in the fabric until then
    assert (inp.arrived, inp.in_flight, inp.upstream_cause, owner.n) == (2, 1, StallCause.COMPUTE, 2)
    env.run()
    assert (env.now, inp.arrived, inp.in_flight, inp.upstream_cause, owner.n) == (5, 3, 0, None, 3)
    both = _Kicks()
    joint = InputPort(both, EdgeRole.MAIN, ["a", "b"], capacity=8)
    first, second = OutputPort(env, "a", joint, fabric), OutputPort(env, "b", joint, fabric)
    first.send(1, 5)
    assert joint.arrived == 0 and both.n == 1  # woken by the send, though no pixel is complete
    second.send(1, 5)
    assert joint.arrived == 1 and both.n == 3  # the send's wake-up and the delivery's
    assert [p.drained_problems() for p in (port, first, second)] == [[], [], []]


# --- link-budget fabric -------------------------------------------------------------------------


def _budget(route: tuple[object, ...], *, role: EdgeRole = EdgeRole.MAIN, payload: int = 64,
            hold: int = 1) -> tuple[simpy.Environment, TestSink, OutputPort, Recorder]:
    """Links of 16 bits, 1 link + 1 router cycle per hop, no header: 64-bit pixels are 4 flits."""
    env = simpy.Environment()
    rec = Recorder()
    fabric = LinkBudgetFabric(env, CPT, 16, 1, 1, 0, hold, Probe([rec]))
    sink = TestSink(env, role=role)
    return env, sink, OutputPort(env, "src", sink.port, fabric, route, payload), rec


def test_link_budget_fabric_serialises_one_flit_per_cycle_and_spills_into_the_next_timestep() -> None:
    env, sink, port, rec = _budget(LINE)
    assert port.flits == 4
    env.run(until=3)
    port.send(3, 3)  # three 4-flit packets produced in timestep 0 share both links
    run_until(env, lambda: sink.port.arrived == 3, 100 * CPT)
    # Every transfer of timestep 0 starts at cycle 0; each hop adds 2 cycles.
    # Link 1: packets at 2-6, 6-10, 10-14. Link 2 (head 2 cycles behind): 4-8, 8-12, 12-16.
    # Packet 1's last flit arrives by cycle 7 (timestep 0): usable at once (cycle 3);
    # packets 2 and 3 end in timestep 1: usable from its start, cycle 10.
    assert sink.arrivals == [3, 10, 10]
    assert [(c, name) for c, name, _, _ in rec.links] == [
        (2, "r0.0->r0.1"), (4, "r0.1->r0.2"), (6, "r0.0->r0.1"), (8, "r0.1->r0.2"),
        (10, "r0.0->r0.1"), (12, "r0.1->r0.2")]
    assert all(flits == 4 and src == "src" for _, _, src, flits in rec.links)
    assert port.drained_problems() == []


def test_link_budget_fabric_carries_a_timestep_of_flits_per_link_per_timestep() -> None:
    env, sink, port, _ = _budget(LINE[:2])
    # A 4-flit packet's last flit crosses the link in timestep (end - 1) // 10.
    port.send(5, 0)  # 20 flits: link busy 2-6, 6-10, 10-14, 14-18, 18-22 -> timesteps 0, 0, 1, 1, 2
    port.send(1, 0)  # a sixth of timestep 0: 22-26 -> timestep 2
    env.run(until=15)
    port.send(1, 15)  # timestep 1's packet finds the link busy until 26: 26-30 -> timestep 2
    run_until(env, lambda: sink.port.arrived == 7, 100 * CPT)
    assert sink.arrivals == [0, 0, 10, 10, 20, 20, 20]


def test_link_budget_fabric_holds_partial_sums_for_their_timesteps() -> None:
    env, sink, port, _ = _budget(LINE[:2], role=EdgeRole.PARTIAL, hold=2)
    env.run(until=3)
    port.send(1, 3)  # fits timestep 0, but a partial sum is handed over two timesteps later
    run_until(env, lambda: sink.port.arrived == 1, 100 * CPT)
    assert sink.arrivals == [2 * CPT]


# --- router fabric ------------------------------------------------------------------------------


def _routers(graph: object, *, depth: int = 8, hold: int = 1, router: int = 2, link: int = 1,
             width: int = 16) -> tuple[simpy.Environment, RouterFabric, Recorder]:
    env = simpy.Environment()
    rec = Recorder()
    return env, RouterFabric(env, graph, width, link, router, depth, 0, CPT, hold, Probe([rec])), rec


def test_router_fabric_uncontended_packet_takes_hops_times_latency_plus_serialisation() -> None:
    graph = topology.mesh(2, 3)
    env, fabric, rec = _routers(graph)
    sink = TestSink(env)
    route = tuple(topology.xy_route(graph, (0, 0), (1, 2)))  # 4 routers
    memory = fabric.output_memory(4)
    port = OutputPort(env, "src", sink.port, fabric, route, 32, memory)  # 2 flits
    env.run(until=5)
    port.send(1, 5)
    assert memory.free == 3 and port.blocked(4) is not None
    run_until(env, lambda: sink.port.arrived == 1, 1000)
    # each of the 4 routers adds router (2) + link (1) cycles to the head; the tail 1 cycle behind
    assert sink.arrivals == [5 + 4 * 3 + 2 - 1]
    assert memory.free == 4 and memory.peak_used == 1
    assert [name for _, name, _, _ in rec.links] == ["r0.0->r0.1", "r0.1->r0.2", "r0.2->r1.2", "r1.2->core"]
    assert fabric.drained_problems() == [] and port.drained_problems() == []


def test_router_fabric_hands_partial_sums_over_after_their_hold_and_injects_late_sends_late() -> None:
    graph = topology.mesh(1, 2)
    env, fabric, _ = _routers(graph, hold=1)
    partial = TestSink(env, role=EdgeRole.PARTIAL, sources=("a",))
    main = TestSink(env, sources=("a",))
    p = OutputPort(env, "a", partial.port, fabric, ((0, 0),), 32, fabric.output_memory(4))
    m = OutputPort(env, "a", main.port, fabric, ((0, 0), (0, 1)), 32, fabric.output_memory(4))
    env.run(until=3)
    p.send(1, 3)  # local: tail at 3 + 3 + 1 = 7, but usable from timestep 1 (cycle 10)
    m.send(1, 14)  # injected at cycle 14: 2 routers -> 14 + 6 + 1
    run_until(env, lambda: partial.port.arrived == 1 and main.port.arrived == 1, 1000)
    assert partial.arrivals == [10] and main.arrivals == [21]


def _line_packets(depth: int) -> list[tuple[str, int]]:
    env = simpy.Environment()
    noc = Noc(env, topology.mesh(1, 3), 16, 1, 1, depth, 0, Probe())
    log: list[tuple[str, int]] = []
    for tag in ("A", "B"):
        noc.inject(Packet(4, LINE, lambda _p, t=tag: log.append((t, env.now)), tag))
    run_until(env, lambda: len(log) == 2, 1000)
    assert noc.drained_problems() == []
    return log


def test_router_credits_hold_a_packet_until_the_next_buffer_has_room() -> None:
    # Two 4-flit packets over 3 routers, 1 router + 1 link cycle per hop.
    # Deep buffers: A is granted at 0, 2, 4 and arrives at 4 + 2 + 3 = 9; B follows each
    # link as soon as A's tail left it: granted at 5, 7, 9, arrives at 9 + 2 + 3 = 14.
    assert _line_packets(depth=16) == [("A", 9), ("B", 14)]
    # One-packet buffers: B may enter router (0, 1) only when A's tail has left its buffer
    # there (cycle 2 + 1 + 4 = 7, the credit), then (0, 2) at 9 when A's tail left that one:
    # granted at 7, 9, 11, arrives at 11 + 2 + 3 = 16.
    assert _line_packets(depth=4) == [("A", 9), ("B", 16)]


def test_noc_drained_problems_name_packets_still_in_a_router() -> None:
    env = simpy.Environment()
    noc = Noc(env, topology.mesh(1, 3), 16, 1, 1, 8, 0, Probe())
    log: list[int] = []
    noc.inject(Packet(4, LINE, lambda _p: log.append(env.now), "A"))
    env.run(until=3)  # granted at 0 and 2 (cut-through): its tail still streams out of (0, 1)
    assert noc.drained_problems() == [
        "router r0.1 input r0.0: 0 packets, 4 flits still held after the run (flits not conserved)",
        "router r0.2 input r0.1: 1 packets, 4 flits still held after the run (flits not conserved)"]
    assert noc.blocked_lines() and "head from A" in noc.blocked_lines()[0]
    env.run()
    assert noc.drained_problems() == [] and noc.blocked_lines() == [] and log == [9]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_router_fabric_under_random_injection_conserves_pixels_and_respects_buffers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    graph = topology.mesh(3, 3)
    depth = 6
    env, fabric, rec = _routers(graph, depth=depth, router=1, width=8)
    nodes = list(graph.nodes)
    sinks = [TestSink(env, sources=[f"s{i}" for i in range(4)], capacity=int(rng.integers(2, 5)),
                      delay=random_delay(rng, 0, 3 * CPT), name=f"sink{j}") for j in range(2)]
    dst = [nodes[int(k)] for k in rng.choice(len(nodes), 2, replace=False)]
    total = int(rng.integers(20, 40))  # every source sends the same stream (like column parts)
    sources, ports, memories = [], [], []
    for i in range(4):
        at = nodes[int(rng.integers(len(nodes)))]
        # one output memory per port (a shared one can overfill: see the xfail test below)
        mems = [fabric.output_memory(int(rng.integers(2, 6))) for _ in sinks]
        out = [OutputPort(env, f"s{i}", s.port, fabric, tuple(topology.xy_route(graph, at, d)),
                          int(rng.integers(8, 41)), m) for s, d, m in zip(sinks, dst, mems, strict=False)]
        sources.append(TestSource(env, out, total, int(rng.integers(1, 3)), CPT, gap=random_delay(rng, 0, 2)))
        ports.extend(out)
        memories.extend(mems)
    run_until(env, lambda: all(s.sent == total for s in sources)
              and all(p.in_flight == 0 for p in ports), 5000 * CPT)
    for sink in sinks:
        # a shared sink has a pixel once all four sources delivered it
        assert sink.port.counts == {f"s{i}": total for i in range(4)}
        assert sink.port.arrived == len(sink.arrivals) == total
        assert sink.held_max <= sink.port.capacity
    assert all(p.drained_problems() == [] for p in ports)
    assert fabric.drained_problems() == []
    links = fabric.noc.links()
    assert 0 < max(lk.peak_buffer_flits for lk in links) <= depth
    # back-pressure was exercised: a router buffer or a sink's buffer was full at some point
    assert max(lk.peak_buffer_flits for lk in links) == depth or any(
        s.held_max == s.port.capacity for s in sinks)
    assert all(m.free == m.capacity and 0 < m.peak_used <= m.capacity for m in memories)
    assert sum(1 for _, name, _, _ in rec.links if name.endswith("->core")) == 4 * total * 2


def test_noc_keeps_each_flow_in_order_under_random_injection() -> None:
    rng = np.random.default_rng(5)
    env = simpy.Environment()
    graph = topology.mesh(3, 3)
    noc = Noc(env, graph, 8, 1, 1, 5, 0, Probe())
    log: list[tuple[int, int]] = []
    nodes = list(graph.nodes)
    flows = [(nodes[int(a)], nodes[int(b)]) for a, b in rng.integers(0, len(nodes), (6, 2))]
    sent = [0] * len(flows)

    def inject(f: int, n: int):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield env.timeout(int(rng.integers(0, 4)))
            route = tuple(topology.xy_route(graph, *flows[f]))
            noc.inject(Packet(int(rng.integers(1, 6)), route, lambda _p, f=f, i=sent[f]: log.append((f, i)), str(f)))
            sent[f] += 1

    for f in range(len(flows)):
        env.process(inject(f, 25))
    run_until(env, lambda: len(log) == 25 * len(flows), 100_000)
    for f in range(len(flows)):
        assert [i for g, i in log if g == f] == list(range(25))
    assert noc.drained_problems() == []
    assert max(s.peak_buffer_flits for s in noc.links()) <= 5


def _core_on_routers(memory: int, seed: int = 0) -> CoreRig:
    """A rate-1 core at router (0, 0) of a 1 x 3 mesh feeding sinks at (0, 1) and (0, 2):
    its two 16-flit packets per step share the first link (32 cycles of a 20-cycle timestep),
    so packets back up into the core's output memory."""
    rng = np.random.default_rng(seed)
    graph = topology.mesh(1, 3)
    return build_core(batch=2, clocking=Elastic(20), sink_capacity=3, sink_delay=random_delay(rng, 0, 30),
                      out_fabric=lambda env, probe: RouterFabric(env, graph, 8, 1, 1, 16, 0, 20, 1, probe),
                      out_routes=(LINE[:2], LINE), payload_bits=128, memory_packets=memory)


@pytest.mark.parametrize("seed", [0, 1])
def test_core_on_the_router_fabric_delivers_everything_and_waits_on_the_noc(seed: int) -> None:
    rig = _core_on_routers(memory=4, seed=seed)
    rig.run(max_cycles=100_000)
    for sink in rig.sinks:
        assert sink.port.arrived == rig.expected_outputs and sink.held_max <= 3
    assert rig.recorder.stall_total(StallCause.NOC) > 0  # held by the output memory / link
    assert rig.core.drained_problems({"src": 16}) == []
    assert all(p.drained_problems() == [] for p in rig.out_ports)
    assert rig.out_port.fabric.drained_problems() == []
    assert rig.out_port.out_memory.free == 4


def test_output_memory_shared_by_two_ports_never_holds_more_than_its_capacity() -> None:
    rig = _core_on_routers(memory=4)
    rig.run(max_cycles=100_000)
    memory = rig.out_port.out_memory
    assert memory.peak_used <= memory.capacity


# --- built from the scenario --------------------------------------------------------------------


@pytest.mark.parametrize(("topo", "clocking", "kind"), [("ideal", "timestep", IdealFabric),
                                                        ("ideal", "elastic", IdealFabric),
                                                        ("mesh", "timestep", LinkBudgetFabric),
                                                        ("mesh", "elastic", RouterFabric)])
def test_build_fabric_picks_the_fabric_the_scenario_names(topo: str, clocking: str, kind: type) -> None:
    scenario = Scenario(model="m.toml", chip=ChipConfig(array_rows=2, array_cols=2, clocking=clocking),
                        noc=NocConfig(topology=topo))
    plan = SimpleNamespace(topology=None if topo == "ideal" else topology.mesh(2, 2))
    fabric = build_fabric(simpy.Environment(), scenario, plan, Probe())  # type: ignore[arg-type]
    assert type(fabric) is kind
    # 64-bit links, 16-bit header: a 100-bit pixel is 2 flits where there are packets
    assert fabric.flits(100) == (0 if kind is IdealFabric else 2)
    assert (fabric.output_memory(3) is not None) == (kind is RouterFabric)
