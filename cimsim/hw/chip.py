"""The chip: cores wired by the fabric, fed by the image source, run by SimPy."""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import simpy

from cimsim.config.schema import Scenario
from cimsim.errors import SimulationError
from cimsim.hw.core import Core, CoreTiming, SramTiming
from cimsim.hw.datapath import Datapath
from cimsim.hw.dram import Dram
from cimsim.hw.geometry import LayerGeometry, build_geometry
from cimsim.hw.lockstep_noc import LockstepNoc
from cimsim.hw.noc import Noc
from cimsim.hw.ports import OutputMemory, OutputPort
from cimsim.hw.source import ImageSource
from cimsim.mapping import topology
from cimsim.mapping.plan import MappingPlan
from cimsim.mapping.sram import SramLayout, make_layout
from cimsim.network import Network
from cimsim.sim.probe import Probe, Subscriber
from cimsim.sim.record import CoreRecord, RunRecord
from cimsim.sim.stats import LinkCollector, StatsCollector


def layer_geometry(net: Network, plan: MappingPlan, name: str) -> LayerGeometry:
    """Dataflow tables of a compute layer (an FC on a crossbar sees one 1 x 1 pixel)."""
    layer = net.layer(name)
    lm = plan.layers[name]
    if layer.kind == "conv":
        return build_geometry(layer.in_h, layer.in_w, layer.kernel, layer.stride, layer.padding, lm.rate, lm.dw)
    return build_geometry(1, 1, 1, 1, 0, 1)


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
    return SramTiming(lay.write_table(), read)


class Chip:
    """A built chip, ready to run once."""

    def __init__(self, env: simpy.Environment, scenario: Scenario, net: Network, plan: MappingPlan,
                 subscribers: list[Subscriber] | None = None) -> None:
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
        timing = CoreTiming(self.cpt, chip.clocking == "elastic", chip.mvm_cycles, chip.digital_cycles,
                            scenario.noc.ideal_hop_timesteps, chip.partial_sum_timesteps, chip.sram_ports)
        names = {c.id: c.name for c in plan.cores}
        self.cores: dict[int, Core] = {}
        self.ports: list[OutputPort] = []
        self.noc = self._build_noc(env, scenario, self.probe)
        geoms = {name: layer_geometry(net, plan, name) for name in plan.layers}
        # A consumer's inbox holds two of its producer's largest deliveries (a Method 2
        # stripe releases its later columns at once).
        burst = {n: int(np.diff(g.group_released, prepend=0).max()) for n, g in geoms.items()}
        burst[plan.input_name] = scenario.input.pixels_per_timestep
        self.datapath = Datapath(net, plan, scenario, geoms) if scenario.functional.enabled else None
        flows_from: dict[int | None, list] = {}
        for f in plan.flows:
            flows_from.setdefault(f.src, []).append(f)

        def sources(layer: str) -> list[str]:
            return [plan.input_name] if layer == plan.input_name else [names[c] for c in plan.layers[layer].merge_cores]

        def ports_for(src: int | None, src_name: str, memory: OutputMemory | None) -> list[OutputPort]:
            out = []
            for f in flows_from.get(src, []):
                core = self.cores[f.dst]
                target = {"main": core.main, "residual": core.residual, "partial": core.partial}[f.role]
                delay = (timing.partial_sum_timesteps if f.role == "partial" else timing.hop_timesteps) * self.cpt
                if self.noc is None:
                    out.append(OutputPort(env, src_name, target, delay))
                else:
                    hold = timing.partial_sum_timesteps if f.role == "partial" else 0
                    out.append(OutputPort(env, src_name, target, noc=self.noc, route=f.route,
                                          payload_bits=f.packet_bits, out_memory=memory,
                                          hold_until_timestep=(hold, self.cpt)))
            self.ports.extend(out)
            return out

        output_layer = plan.output_layer
        # consumers first, so every producer's ports can name them
        deps = nx.DiGraph()
        deps.add_nodes_from(plan.layers)
        deps.add_edges_from((a, b) for a, b, _ in plan.edges if a in plan.layers)
        for name in reversed(list(nx.lexicographical_topological_sort(deps, key=list(plan.layers).index))):
            lm = plan.layers[name]
            geom = geoms[name]
            lay = make_layout(lm.sram_method, lm.pixel_bits, geom.in_h, geom.slot_columns, chip.sram_word_bits)
            sram = sram_timing(lay, geom)
            pooled = any(net.layer(f).kind == "avgpool" for f in lm.fused)
            merge = set(lm.merge_cores)
            for cid in reversed(lm.cores):
                spec = plan.cores[cid]
                n_flows = len(flows_from.get(cid, []))
                memory = OutputMemory(2 * max(1, burst[name]) * max(1, n_flows)) if self.noc is not None else None
                outputs = ports_for(cid, names[cid], memory)
                partial_sources = ([names[lm.cores[r * lm.col_parts + spec.col_part]] for r in range(lm.row_parts - 1)]
                                   if cid in merge else [])
                self.cores[cid] = Core(
                    env, spec, lm, geom, sram, timing, self.probe, self.batch, outputs,
                    main_sources=sources(lm.main_input),
                    residual_sources=sources(lm.residual_input) if (lm.residual_input and cid in merge) else [],
                    partial_sources=partial_sources,
                    emits_image_done=(name == output_layer and cid == lm.merge_cores[0]),
                    pooled=pooled and cid in merge, main_capacity=2 * burst[lm.main_input],
                    datapath=self.datapath,
                )
        inp = net.input_layer
        memory = OutputMemory(4 * burst[plan.input_name] * len(flows_from.get(None, []))) if self.noc else None
        src_ports = ports_for(None, plan.input_name, memory)
        dram_cfg = scenario.dram
        self.dram = None
        if dram_cfg.enabled:
            self.dram = Dram(env, dram_cfg.bandwidth_gbps * 1e3 / chip.clock_mhz,
                             round(dram_cfg.latency_ns * chip.clock_mhz / 1e3))
            self.probe.subscribers.append(_ResultWriter(self.dram, net.output_layer.out_channels * net.bits // 8))
        self.source = ImageSource(env, src_ports, self.batch, inp.out_h * inp.out_w,
                                  scenario.input.pixels_per_timestep, self.cpt, self.probe, self.dram,
                                  pixel_bytes=-(-inp.out_channels * net.bits // 8))

    def blocked_report(self, unfinished: list[Core]) -> str:
        """What each unfinished core waits for, the cores not starved of input first (they are
        where a deadlock starts), then the routers holding packets and the image source."""
        order = sorted(unfinished, key=lambda c: (c.cause in ("input", "done"), c.spec.id))
        lines = [c.explain() for c in order[:8]]
        if len(order) > 8:
            lines.append(f"{len(order) - 8} more cores wait")
        if self.noc is not None and hasattr(self.noc, "blocked_lines"):
            lines.extend(self.noc.blocked_lines()[:4])
        if self.source.sent < self.source.batch * self.source.pixels_per_image:
            lines.append(self.source.line())
        return "; ".join(lines)

    @staticmethod
    def _build_noc(env: simpy.Environment, scenario: Scenario, probe: Probe) -> Noc | LockstepNoc | None:
        noc, chip = scenario.noc, scenario.chip
        if noc.topology == "ideal":
            return None
        if chip.clocking == "timestep":
            return LockstepNoc(chip.cycles_per_timestep, noc.link_width_bits, noc.link_cycles, noc.router_cycles,
                               noc.header_bits, probe)
        if noc.topology == "mesh":
            graph = topology.mesh(chip.array_rows, chip.array_cols, (noc.dram_row, noc.dram_col))
        else:
            graph = topology.prism(chip.array_rows, chip.array_cols, noc.prism_k)
        return Noc(env, graph, noc.link_width_bits, noc.link_cycles, noc.router_cycles, noc.buffer_depth_flits,
                   noc.header_bits, probe)

    def run(self) -> RunRecord:
        """Simulate the whole batch; raise SimulationError on deadlock or the cycle limit."""
        t0 = time.perf_counter()
        limit = self.scenario.run.max_timesteps * self.cpt
        env = self.env
        checker = None
        if self.scenario.run.check_invariants:
            from cimsim.sim.invariants import InvariantChecker

            checker = InvariantChecker(self)
            self.probe.subscribers.append(checker)
        watchdog = self.scenario.run.watchdog_timesteps * self.cpt
        stats = self.stats
        while env.peek() < limit:
            env.step()
            if env.now - max(stats.last_progress_cycle, self.source.last_emit_cycle) > watchdog:
                break
        unfinished = [c for c in self.cores.values() if c.group < c.total_groups]
        if unfinished:
            if env.peek() == float("inf"):
                what = "deadlock: no component can make progress"
            elif env.peek() >= limit:
                what = f"run.max_timesteps = {self.scenario.run.max_timesteps} reached"
            else:
                what = f"no progress for run.watchdog_timesteps = {self.scenario.run.watchdog_timesteps} timesteps"
            raise SimulationError(f"{what} at cycle {env.now} (timestep {env.now // self.cpt}): "
                                  f"{self.blocked_report(unfinished)}")
        if checker is not None:
            checker.finish()
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
            d = self.dram
            extra["dram"] = {
                "enabled": True, "bytes_read": d.bytes_read, "bytes_written": d.bytes_written,
                "busy_cycles": round(d.busy_cycles), "utilisation": round(d.busy_cycles / max(1, env.now), 4),
                "stall_timesteps": self.source.dram_stall_timesteps,
            }
        return RunRecord(
            scenario=self.scenario, network=self.net, plan=self.plan, batch=self.batch,
            image_start_ts=list(self.source.image_start_ts), image_done_ts=done,
            cycles=max(st.images[i][1] for i in range(self.batch)), events=st.events, cores=cores,
            layer_first_ts=dict(st.first_ts), layer_last_ts=dict(st.last_ts),
            progress={k: list(v) for k, v in st.progress.items()},
            source_stall_timesteps=self.source.stall_timesteps, wall_seconds=time.perf_counter() - t0,
            extra=extra,
        )


class _ResultWriter:
    """Writes each image's classifier output back to DRAM when it is produced."""

    def __init__(self, dram: Dram, nbytes: int) -> None:
        self.dram = dram
        self.nbytes = max(1, nbytes)

    def compute(self, *args: object) -> None:
        """Not needed."""

    def stall(self, *args: object) -> None:
        """Not needed."""

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """One write per image."""
        self.dram.write(self.nbytes)


def build_chip(env: simpy.Environment, scenario: Scenario, net: Network, plan: MappingPlan,
               subscribers: list[Subscriber] | None = None) -> Chip:
    """Build the chip for a mapping plan."""
    return Chip(env, scenario, net, plan, subscribers)
