"""The chip: cores wired by the fabric, fed by the image source, run by SimPy."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import simpy

from cimsim.config.schema import Scenario
from cimsim.energy import builtin_tables, load_table, resolve_table
from cimsim.energy.table import BUILTIN_DIR
from cimsim.errors import SimulationError
from cimsim.functional.segment_values import SegmentValues
from cimsim.hw.activity import core_steps, powered_instances
from cimsim.hw.clocking import build_clocking
from cimsim.hw.core import Core, CoreTiming, SramTiming
from cimsim.hw.datapath import Datapath
from cimsim.hw.dram import DramBase, DramKind, make_dram
from cimsim.hw.fabric import build_fabric
from cimsim.hw.ports import OutputMemory, OutputPort
from cimsim.hw.source import ImageSource
from cimsim.hw.weights import WeightProgrammer
from cimsim.mapping.geometry import LayerGeometry, build_geometry
from cimsim.mapping.plan import Flow, LayerMapping, MappingPlan, dataflow_order
from cimsim.mapping.residual import send_schedule
from cimsim.mapping.segments import Segment
from cimsim.mapping.sram import SramLayout, make_layout
from cimsim.mapping.stages import Unit
from cimsim.network import Network
from cimsim.network.layers import EdgeRole, LayerKind
from cimsim.sim.energy import EnergyCollector, energy_section
from cimsim.sim.probe import Probe, StallCause, Subscriber
from cimsim.sim.record import CoreRecord, RunRecord
from cimsim.sim.stats import LinkCollector, StatsCollector


def layer_geometry(net: Network, plan: MappingPlan, name: str) -> LayerGeometry:
    """Dataflow tables of a stage: its window (a hand-built plan without one: a 1 x 1 pixel)."""
    lm = plan.layers[name]
    win = lm.window
    if win is None:
        return build_geometry(1, 1, 1, 1, 0, 1)
    return build_geometry(win.in_h, win.in_w, win.kernel, win.stride, win.padding, lm.rate, lm.dw)


def stage_timing(timing: CoreTiming, lm: LayerMapping) -> CoreTiming:
    """The chip's core timing as one stage sees it: a digital stage has no MVM and spends its
    own cycles per output; a depthwise split into jobs runs one MVM per job."""
    if lm.unit is Unit.DIGITAL:
        return replace(timing, mvm_cycles=0, digital_cycles=lm.digital_step_cycles)
    if lm.jobs > 1:
        return replace(timing, mvm_cycles=timing.mvm_cycles * lm.jobs)
    return timing


def sram_timing(lay: SramLayout, geom: LayerGeometry) -> SramTiming:
    """Word counts of every store slot and of every group's kernel-row reads, for each
    rotation (phase) of the circular buffer."""
    cols = geom.slot_columns
    read = np.zeros((cols, geom.n_groups), dtype=np.int64)
    cache: dict[tuple[int, tuple[int | None, ...]], int] = {}
    for phase in range(cols):
        for gi in range(geom.n_groups):
            lo, hi = (int(v) for v in geom.group_cols[gi])
            slots = tuple(None if c < 0 or c >= geom.in_w else (phase + c) % cols for c in range(lo, hi + 1))
            total = 0
            for x in geom.group_rows[gi]:
                key = (x, slots) if 0 <= x < geom.in_h else (-1, (None,) * len(slots))
                if key not in cache:
                    cache[key] = lay.read_words(*key)
                total += cache[key]
            read[phase, gi] = total
    return SramTiming(lay.write_table(), read, lay.pixel_read_table())


class Chip:
    """A built chip, ready to run once."""

    def __init__(self, env: simpy.Environment, scenario: Scenario, net: Network, plan: MappingPlan,
                 subscribers: list[Subscriber] | None = None, program_weights: bool = False,
                 values: SegmentValues | None = None, segment: Segment | None = None) -> None:
        self.env = env
        self.scenario = scenario
        self.net = net
        self.plan = plan
        chip = scenario.chip
        self.cpt = chip.cycles_per_timestep
        self.batch = scenario.run.batch
        rep = {plan.layers[n].merge_cores[0]: n for n in plan.layers}
        self.stats = StatsCollector(rep)
        self.link_stats = LinkCollector(self.cpt)
        self.probe = Probe([self.stats, self.link_stats, *(subscribers or [])])
        timing = CoreTiming(self.cpt, chip.mvm_cycles, chip.digital_cycles, chip.sram_ports)
        self.clocking = build_clocking(chip)
        self.fabric = build_fabric(env, scenario, plan, self.probe)
        checked = scenario.run.check_invariants
        names = {c.id: c.name for c in plan.cores}
        self.cores: dict[int, Core] = {}
        self.ports: list[OutputPort] = []
        geoms = {name: layer_geometry(net, plan, name) for name in plan.layers}
        # A consumer's inbox holds two of its producer's largest deliveries (a Method 2
        # stripe releases its later columns at once).
        burst = {n: int(np.diff(g.group_released, prepend=0).max()) for n, g in geoms.items()}
        burst[plan.input_name] = scenario.input.pixels_per_timestep
        self.datapath = Datapath(net, plan, scenario, geoms, values) if scenario.functional.enabled else None
        flows_from: dict[int | None, list[Flow]] = {}
        main_into: dict[int, list[str]] = {}  # core -> its main sources, in flow order
        residual_into: dict[int, list[str]] = {}
        for f in plan.flows:
            flows_from.setdefault(f.src, []).append(f)
            into = main_into if f.role is EdgeRole.MAIN else residual_into if f.role is EdgeRole.RESIDUAL else None
            if into is not None:
                into.setdefault(f.dst, []).append(plan.input_name if f.src is None else names[f.src])


        @functools.cache
        def schedule(adder: str) -> list[int]:
            return send_schedule([geoms[n] for n in plan.layers[adder].residual_chain]).tolist()

        def ports_for(src: int | None, src_name: str, memory: OutputMemory | None,
                      read_res: bool = False) -> list[OutputPort]:
            out = []
            for f in flows_from.get(src, []):
                if f.read_res != read_res:
                    continue
                core = self.cores[f.dst]
                target = {EdgeRole.MAIN: core.main, EdgeRole.RESIDUAL: core.residual,
                          EdgeRole.PARTIAL: core.partial}[f.role]
                out.append(OutputPort(env, src_name, target, self.fabric, f.route, f.packet_bits, memory,
                                      -1 if src is None else src))
            self.ports.extend(out)
            return out

        output_layer = plan.output_layer
        # consumers first, so every producer's ports can name them
        for name in reversed(dataflow_order(plan)):
            lm = plan.layers[name]
            geom = geoms[name]
            lay = make_layout(lm.sram_method, lm.pixel_bits, geom.in_h, geom.slot_columns, chip.sram_word_bits)
            sram = sram_timing(lay, geom)
            pooled = any(net.layer(f).kind is LayerKind.AVGPOOL for f in lm.fused)
            merge = set(lm.merge_cores)
            for cid in reversed(lm.cores):
                spec = plan.cores[cid]
                n_flows = len(flows_from.get(cid, []))
                memory = self.fabric.output_memory(2 * max(1, burst[name]) * max(1, n_flows))
                outputs = ports_for(cid, names[cid], memory)
                sends: dict[str, list[OutputPort]] = {}  # adding stage -> the read_res ports to its cores
                for f, port in zip([f for f in flows_from.get(cid, []) if f.read_res],
                                   ports_for(cid, names[cid], memory, read_res=True), strict=True):
                    sends.setdefault(f.dst_layer, []).append(port)
                residual_outputs = [(ports, schedule(dst)) for dst, ports in sends.items()]
                partial_sources = ([names[lm.cores[r * lm.col_parts + spec.col_part]] for r in range(lm.row_parts - 1)]
                                   if cid in merge else [])
                self.cores[cid] = Core(
                    env, spec, lm, geom, sram, stage_timing(timing, lm), self.clocking, self.probe, self.batch,
                    outputs, main_sources=main_into.get(cid, []),  # a row part split by channels: its share's producers
                    residual_sources=residual_into.get(cid, []),
                    partial_sources=partial_sources,
                    emits_image_done=(name == output_layer and cid in merge),
                    pooled=pooled and cid in merge, main_capacity=max(2 * max(burst[m] for m in lm.main_inputs), lm.skew_capacity),
                    datapath=self.datapath, check_invariants=checked, residual_outputs=residual_outputs,
                )
        out_merge = plan.layers[output_layer].merge_cores
        if len(out_merge) > 1:  # an output layer split by columns: done when every column part is
            join = _ImageJoin(self.probe, len(out_merge))
            for cid in out_merge:
                self.cores[cid].on_image_done = join.image_done
        self.energy = self._energy_collector() if scenario.energy.enabled else None
        inp = net.input_layer
        memory = self.fabric.output_memory(4 * burst[plan.input_name] * len(flows_from.get(None, [])))
        src_ports = ports_for(None, plan.input_name, memory)
        dram_cfg = scenario.dram
        pixel_bytes = -(-inp.out_channels * net.bits // 8) if segment is None else segment.input_pixel_bytes()
        self.dram: DramBase | None = None
        if dram_cfg.enabled:
            self.dram = make_dram(env, dram_cfg, chip.clock_mhz, self.probe)
            out = net.output_layer  # the classifier's logits, or a segment's whole output map (a spill)
            result_bytes = max(1, -(-out.out_h * out.out_w * out.out_channels * net.bits // 8) if segment is None
                               else segment.output_bytes())  # a row band of a reloading run: its partial sums
            self.dram.layout.allocate(DramKind.IMAGE, self.batch * inp.out_h * inp.out_w * pixel_bytes, "images")
            results = self.dram.layout.allocate(DramKind.RESULT, self.batch * result_bytes, "results")
            self.probe.subscribe(_ResultWriter(self.dram, result_bytes, results.base))
        self.weights: WeightProgrammer | None = None
        if program_weights:
            if self.dram is None:
                raise SimulationError(f"{scenario.source}: programming weights needs the DRAM (dram.enabled = true)")
            self.weights = WeightProgrammer(env, chip, self.dram, list(self.cores.values()), net.bits, self.probe)
        self.source = ImageSource(env, src_ports, self.batch, inp.out_h * inp.out_w,
                                  scenario.input.pixels_per_timestep, self.cpt, self.probe, self.dram,
                                  pixel_bytes=pixel_bytes)
        self.images_done: set[int] = set()
        if checked:
            self.probe.subscribe(_ImageOnce(self.images_done))

    def _energy_collector(self) -> EnergyCollector:
        """Subscribe the energy collector, with every core's step table (`energy.enabled`)."""
        sc = self.scenario
        steps = [core_steps(c, self.net, self.plan, self.fabric, sc.noc.link_width_bits, sc.functional.adc_bits,
                            self.datapath is not None) for c in self.cores.values()]
        collector = EnergyCollector(steps, powered_instances(self.plan, sc.dram.enabled))
        self.probe.subscribe(collector)
        if self.datapath is not None:
            self.datapath.probe = self.probe
        return collector

    def energy_summary(self, cycles: int, done_cycles: list[int]) -> dict[str, object]:
        """The run's `energy` section: its counts charged with the scenario's table."""
        assert self.energy is not None
        sc = self.scenario
        base = Path(sc.source).parent if sc.source else None
        table = load_table(resolve_table(sc.energy.table, base))
        macs = sum(layer.kernel_rows * layer.kernel_cols * layer.pixels_out for layer in self.net.layers)
        out = energy_section(self.energy, self.stats.active, table, sc.chip.clock_mhz * 1e6, cycles, done_cycles,
                             macs)
        if sc.energy.table in builtin_tables():  # where the package sits is no part of the result
            out["table_file"] = f"cimsim/energy/{BUILTIN_DIR}/{sc.energy.table}.toml"
        return out

    def blocked_report(self, unfinished: list[Core]) -> str:
        """What each unfinished core waits for, the cores not starved of input first (they are
        where a deadlock starts), then the routers holding packets and the image source."""
        order = sorted(unfinished, key=lambda c: (c.cause in (StallCause.INPUT, None), c.spec.id))
        lines = [c.explain() for c in order[:8]]
        if len(order) > 8:
            lines.append(f"{len(order) - 8} more cores wait")
        lines.extend(self.fabric.blocked_lines()[:4])
        if not self.source.finished:
            lines.append(self.source.line())
        return "; ".join(lines)

    def _simulate(self) -> None:
        """Step SimPy until the queue is empty, the cycle limit, or no progress (the last
        computed group or emitted pixel) for the watchdog's time."""
        env, stats, source = self.env, self.stats, self.source
        limit = self.scenario.run.max_timesteps * self.cpt
        watchdog = self.scenario.run.watchdog_timesteps * self.cpt
        step, peek = env.step, env.peek
        deadline = watchdog + 1
        while peek() < limit:
            step()
            if env.now >= deadline:  # the deadline moves with progress
                deadline = max(stats.last_progress_cycle, source.last_emit_cycle) + watchdog + 1
                if env.now >= deadline:
                    return

    def run(self) -> RunRecord:
        """Simulate the whole batch; raise SimulationError on deadlock or the cycle limit."""
        t0 = time.perf_counter()
        env = self.env
        self._simulate()
        unfinished = [c for c in self.cores.values() if not c.finished]
        if unfinished:
            limit = self.scenario.run.max_timesteps * self.cpt
            if env.peek() == float("inf"):
                what = "deadlock: no component can make progress"
            elif env.peek() >= limit:
                what = f"run.max_timesteps = {self.scenario.run.max_timesteps} reached"
            else:
                what = f"no progress for run.watchdog_timesteps = {self.scenario.run.watchdog_timesteps} timesteps"
            raise SimulationError(f"{what} at cycle {env.now} (timestep {env.now // self.cpt}): "
                                  f"{self.blocked_report(unfinished)}")
        if self.scenario.run.check_invariants:
            self.check_drained()
        st = self.stats
        cores = [
            CoreRecord(c.spec.id, c.spec.name, c.spec.layer, st.active.get(c.spec.id, 0),
                       dict(st.stalls.get(c.spec.id, {})), c.main.peak, c.residual.peak)
            for c in sorted(self.cores.values(), key=lambda c: c.spec.id)
        ]
        done = [st.images[i][0] for i in range(self.batch)]
        cycles = max(st.images[i][1] for i in range(self.batch))
        extra: dict[str, object] = {"links": self.link_stats.rows(cycles)}
        if self.datapath is not None:
            extra["functional"] = self.datapath.summary()
        if self.dram is not None:
            extra["dram"] = self.dram.summary(int(env.now), self.source.dram_stall_timesteps)
        if self.energy is not None:
            extra["energy"] = self.energy_summary(cycles, [st.images[i][1] for i in range(self.batch)])
        return RunRecord(
            scenario=self.scenario, network=self.net, plan=self.plan, batch=self.batch,
            image_start_ts=list(self.source.image_start_ts), image_done_ts=done,
            cycles=cycles, events=st.events, cores=cores,
            layer_first_ts=dict(st.first_ts), layer_last_ts=dict(st.last_ts),
            progress={k: list(v) for k, v in st.progress.items()},
            source_stall_timesteps=self.source.stall_timesteps, wall_seconds=time.perf_counter() - t0,
            extra=extra,
        )

    def drained_problems(self) -> list[str]:
        """After the run: what any component still holds or got wrong (empty: nothing).
        Every pixel sent was delivered, every consumer received exactly its producers'
        pixels, the fabric holds nothing, every image completed exactly once."""
        per_image = {self.plan.input_name: self.source.pixels_per_image}
        for c in self.cores.values():
            per_image[c.spec.name] = 1 if c.pooled else c.n_out
        problems = [p for port in self.ports for p in port.drained_problems()]
        for c in self.cores.values():
            problems.extend(c.drained_problems(per_image))
        problems.extend(self.fabric.drained_problems())
        if len(self.images_done) != self.batch:
            problems.append(f"{len(self.images_done)} images completed, batch is {self.batch}")
        return problems

    def check_drained(self) -> None:
        """Raise SimulationError naming the first problem `drained_problems` finds."""
        problems = self.drained_problems()
        if problems:
            raise SimulationError(f"invariant violated: {problems[0]}")


class _ImageJoin:
    """Reports an image done to the probe once all `parts` column parts of the output layer
    have finished it (at the latest part's timestep and cycle)."""

    def __init__(self, probe: Probe, parts: int) -> None:
        self.probe = probe
        self.parts = parts
        self.seen: dict[int, tuple[int, int, int]] = {}

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """One column part finished `image`."""
        count, ts, last = self.seen.get(image, (0, 0, 0))
        count, ts, last = count + 1, max(ts, done_timestep), max(last, cycle)
        if count < self.parts:
            self.seen[image] = (count, ts, last)
            return
        self.seen.pop(image, None)
        self.probe.image_done(image, start_timestep, ts, last)


class _ImageOnce:
    """Checks that each image completes exactly once (`run.check_invariants`)."""

    def __init__(self, done: set[int]) -> None:
        self.done = done

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """Fail on an image's second completion."""
        if image in self.done:
            raise SimulationError(f"invariant violated: image {image} completed twice (again at timestep "
                                  f"{done_timestep})")
        self.done.add(image)


class _ResultWriter:
    """Writes each image's classifier output back to DRAM when it is produced."""

    def __init__(self, dram: DramBase, nbytes: int, base: int) -> None:
        self.dram = dram
        self.nbytes = max(1, nbytes)
        self.base = base

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """One write per image, into its slot of the results region; nothing waits for it."""
        self.dram.post_write(self.nbytes, image, address=self.base + image * self.nbytes, kind=DramKind.RESULT)


def build_chip(env: simpy.Environment, scenario: Scenario, net: Network, plan: MappingPlan,
               subscribers: list[Subscriber] | None = None, program_weights: bool = False,
               values: SegmentValues | None = None, segment: Segment | None = None) -> Chip:
    """Build the chip for a mapping plan (with `program_weights`, its crossbars are programmed
    from DRAM before they compute: `cimsim.hw.weights`; `values`: a reloading run's segment,
    `cimsim.functional.segment_values`; `segment`: the reloading segment the chip runs, whose DRAM
    reads and writes carry partial sums when it is a row band, `cimsim.mapping.segments`)."""
    return Chip(env, scenario, net, plan, subscribers, program_weights, values, segment)
