"""Source/sink harnesses for testing one hardware component alone (PyOCN style:
TestSource -> component under test -> TestSink), with a cycle limit on every run.

`TestSink` owns an `InputPort` and consumes its pixels after (optionally random)
delays, so the component upstream sees back-pressure; `TestSource` streams pixels
into `OutputPort`s at timestep boundaries, honouring their back-pressure;
`Recorder` is a probe subscriber that keeps every event; `build_core` wires a
`Core` of a tiny conv layer between the two; `run_until` steps SimPy until a
condition holds and fails the test if it does not by the cycle limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

from cimsim.hw.clocking import Clocking, LockStep
from cimsim.hw.core import Core, CoreTiming, SramTiming
from cimsim.hw.fabric import Fabric, IdealFabric
from cimsim.hw.ports import InputPort, OutputPort
from cimsim.mapping.geometry import LayerGeometry, build_geometry
from cimsim.mapping.plan import CoreSpec, LayerMapping
from cimsim.network.layers import EdgeRole
from cimsim.sim.probe import Probe, StallCause


class NotFinished(AssertionError):
    """A harness run did not reach its goal within the cycle limit (or deadlocked)."""


def run_until(env: simpy.Environment, done: Callable[[], bool], max_cycles: int) -> int:
    """Step `env` until `done()`; raise NotFinished if the event queue empties first
    (deadlock) or the next event lies beyond `max_cycles`. Returns the cycle reached."""
    while not done():
        nxt = env.peek()
        if nxt == float("inf"):
            raise NotFinished(f"deadlock at cycle {env.now}: no event left and not finished")
        if nxt > max_cycles:
            raise NotFinished(f"cycle limit {max_cycles} reached (next event at {nxt}) and not finished")
        env.step()
    return int(env.now)


class TestSink:
    """Owner of an InputPort that consumes one pixel at a time, each after a delay drawn
    from `delay` (cycles; None: at once). Records the cycle each pixel arrived."""

    __test__ = False  # not a pytest class

    def __init__(self, env: simpy.Environment, role: EdgeRole = EdgeRole.MAIN,
                 sources: Sequence[str] = ("src",), capacity: int | None = None,
                 delay: Callable[[], int] | None = None, name: str = "sink") -> None:
        self.env = env
        self.port = InputPort(self, role, list(sources), capacity, name=name)
        self.delay = delay
        self.arrivals: list[int] = []
        """arrivals[i]: cycle pixel i became available (every source delivered it)."""
        self.kicks = 0
        self.saw_dram_waiting = False
        self.upstream_causes: list[tuple[int, StallCause]] = []
        """(cycle, cause) each time a kick found the producer's lateness explained."""
        self.held_max = 0
        self._wake: simpy.Event | None = None
        self.process = env.process(self.run())

    def kick(self) -> None:
        """Called by the port: log new arrivals and wake the consumer."""
        self.kicks += 1
        port = self.port
        self.saw_dram_waiting |= port.dram_waiting
        if port.upstream_cause is not None:
            self.upstream_causes.append((int(self.env.now), port.upstream_cause))
        while len(self.arrivals) < port.arrived:
            self.arrivals.append(int(self.env.now))
        self.held_max = max(self.held_max, port.arrived - port.consumed)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def run(self):  # type: ignore[no-untyped-def]  # SimPy generator
        """Consume pixels in order, one per (random) delay."""
        port = self.port
        while True:
            if port.consumed >= port.arrived:
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
                continue
            if self.delay is not None:
                wait = self.delay()
                if wait > 0:
                    yield self.env.timeout(wait)
            port.consume_to(port.consumed + 1)


def random_delay(rng: np.random.Generator, low: int, high: int) -> Callable[[], int]:
    """Delays drawn uniformly from [low, high] cycles."""
    return lambda: int(rng.integers(low, high + 1))


class TestSource:
    """Streams `total` pixels into `ports`, up to `per_timestep` at each timestep
    boundary (after `gap()` extra idle timesteps, if given), waiting while any port is
    blocked. Records the cycle and size of every emission."""

    __test__ = False

    def __init__(self, env: simpy.Environment, ports: Sequence[OutputPort], total: int, per_timestep: int,
                 cycles_per_timestep: int, gap: Callable[[], int] | None = None) -> None:
        self.env = env
        self.ports = list(ports)
        self.total = total
        self.per_ts = per_timestep
        self.cpt = cycles_per_timestep
        self.gap = gap
        self.sent = 0
        self.emits: list[tuple[int, int]] = []
        self._wake: simpy.Event | None = None
        self.process = env.process(self.run())

    def kick(self) -> None:
        """A consumer freed space."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def run(self):  # type: ignore[no-untyped-def]  # SimPy generator
        """Emit at timestep boundaries while there is space."""
        env, cpt = self.env, self.cpt
        next_ts = 0
        while self.sent < self.total:
            count = min(self.per_ts, self.total - self.sent)
            ts = max(next_ts, -(-int(env.now) // cpt))
            if ts * cpt > env.now:
                yield env.timeout(ts * cpt - env.now)
                continue
            if any(p.blocked(count) is not None for p in self.ports):
                for p in self.ports:
                    p.register_waiter(self)
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            for p in self.ports:
                p.send(count, int(env.now))
            self.sent += count
            self.emits.append((int(env.now), count))
            next_ts = ts + 1 + (self.gap() if self.gap is not None else 0)


@dataclass
class Recorder:
    """A probe subscriber that keeps every compute, stall, image_done and link event."""

    computes: list[tuple[int, ...]] = field(default_factory=list)
    """(cycle, timestep, core, image, first, count, cycles, row, col)"""
    stalls: list[tuple[StallCause, int, int]] = field(default_factory=list)
    """(cause, start timestep, timesteps)"""
    images: list[tuple[int, int, int]] = field(default_factory=list)
    links: list[tuple[int, str, str, int]] = field(default_factory=list)

    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int, col: int) -> None:
        """Keep a compute event."""
        self.computes.append((cycle, timestep, core, image, first, count, cycles, row, col))

    def stall(self, core: int, layer: str, cause: StallCause, start_timestep: int, timesteps: int) -> None:
        """Keep a stall event."""
        self.stalls.append((cause, start_timestep, timesteps))

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """Keep an image completion."""
        self.images.append((image, done_timestep, cycle))

    def link(self, cycle: int, name: str, source: str, flits: int, busy: int, *held: int) -> None:
        """Keep a link transfer."""
        self.links.append((cycle, name, source, flits))

    def stall_total(self, cause: StallCause) -> int:
        """Timesteps stalled for `cause`."""
        return sum(n for c, _, n in self.stalls if c is cause)


def layer_mapping(geom: LayerGeometry, rate: int, write: int = 1, read: int = 0) -> LayerMapping:
    """A hand-built LayerMapping of a one-core conv layer `conv` fed by `src`."""
    return LayerMapping(
        layer="conv", rate=rate, replicas=rate, method=1 if geom.dw == 1 else 2, dw=geom.dw, rows=1, cols=1,
        fits=True, row_parts=1, col_parts=1, cores=(0,), sram_method="plip", pixel_bits=8,
        slot_columns=geom.slot_columns, sram_words=geom.slot_columns * geom.in_h + 1, residual_capacity=0,
        sram_data_words=geom.slot_columns * geom.in_h, write_cycles=(write, write), read_cycles=(read, read),
        fused=(), main_inputs=("src",), residual_input=None,
    )


@dataclass
class CoreRig:
    """A Core of a tiny conv layer between a TestSource and a TestSink."""

    env: simpy.Environment
    core: Core
    source: TestSource
    sinks: list[TestSink]
    recorder: Recorder
    geom: LayerGeometry
    out_ports: list[OutputPort]
    batch: int

    @property
    def sink(self) -> TestSink:
        """The first (usually only) sink."""
        return self.sinks[0]

    @property
    def out_port(self) -> OutputPort:
        """The port to the first sink."""
        return self.out_ports[0]

    @property
    def expected_outputs(self) -> int:
        """out_h * out_w * batch."""
        return self.geom.n_out * self.batch

    def run(self, max_cycles: int = 200_000) -> int:
        """Run until the core finished and the sink has every output."""
        return run_until(self.env, lambda: self.core.finished and all(
            len(s.arrivals) >= self.expected_outputs for s in self.sinks), max_cycles)


def build_core(*, in_h: int = 4, in_w: int = 4, kernel: int = 3, stride: int = 1, padding: int = 1,
               rate: int = 1, dw: int = 1, cpt: int = 20, mvm: int = 5, digital: int = 2, write: int = 1,
               read: int = 0, batch: int = 1, clocking: Clocking | None = None, sink_capacity: int | None = None,
               sink_delay: Callable[[], int] | None = None, out_hop_timesteps: int = 0, main_capacity: int = 2,
               in_per_timestep: int = 1, check: bool = True, probe_subscribers: Sequence[object] = (),
               out_fabric: Callable[[simpy.Environment, Probe], Fabric] | None = None,
               out_routes: Sequence[tuple[object, ...]] = ((),), payload_bits: int = 0,
               memory_packets: int = 0, datapath: object | None = None) -> CoreRig:
    """A Core (id 0, layer `conv`) fed by a TestSource `src` over an ideal fabric with no
    delay, emitting to one TestSink per route in `out_routes` over `out_fabric` (default:
    an ideal fabric of `out_hop_timesteps`), through one output memory of
    `memory_packets` packets shared by the ports when the fabric has them."""
    env = simpy.Environment()
    geom = build_geometry(in_h, in_w, kernel, stride, padding, rate, dw)
    sram = SramTiming(np.full((in_h, geom.slot_columns), write, dtype=np.int64),
                      np.full((geom.slot_columns, geom.n_groups), read, dtype=np.int64))
    timing = CoreTiming(cpt, mvm, digital, 1)
    recorder = Recorder()
    probe = Probe([recorder, *probe_subscribers])
    sinks = [TestSink(env, capacity=sink_capacity, delay=sink_delay, sources=("conv",), name=f"sink{i}")
             for i in range(len(out_routes))]
    fabric = out_fabric(env, probe) if out_fabric is not None else IdealFabric(env, cpt, out_hop_timesteps, 1)
    memory = fabric.output_memory(memory_packets) if memory_packets else None
    out_ports = [OutputPort(env, "conv", s.port, fabric, route, payload_bits, memory, source_id=0)
                 for s, route in zip(sinks, out_routes, strict=False)]
    spec = CoreSpec(0, "conv", 0, 0, 1, 1, (0, 0))
    core = Core(env, spec, layer_mapping(geom, rate, write, read), geom, sram, timing,
                clocking or LockStep(cpt), probe, batch, out_ports, main_sources=["src"], residual_sources=[],
                partial_sources=[], emits_image_done=True, pooled=False, main_capacity=main_capacity,
                datapath=datapath, check_invariants=check)  # type: ignore[arg-type]
    in_port = OutputPort(env, "src", core.main, IdealFabric(env, cpt, 0, 0), source_id=-1)
    source = TestSource(env, [in_port], geom.n_in * batch, in_per_timestep, cpt)
    return CoreRig(env, core, source, sinks, recorder, geom, out_ports, batch)


def layer(**keys: str) -> str:
    """One `[[layers]]` table of a model TOML, its values given as TOML text."""
    return "[[layers]]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


TINY_MODEL = """\
name = "tiny_cnn"
bits = 8

[input]
height = 8
width = 8
channels = 3

[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 8
kernel = 3
padding = 1
relu = true

[[layers]]
name = "conv2"
type = "conv"
input = "conv1"
out_channels = 8
kernel = 3
stride = 2
padding = 1
relu = true

[[layers]]
name = "pool"
type = "avgpool"
input = "conv2"

[[layers]]
name = "fc"
type = "fc"
input = "pool"
out_features = 10
"""
"""The tiny CNN of the CLI and bench tests: 8 x 8 x 3 -> conv1 -> stride-2 conv2 with pool and fc."""
