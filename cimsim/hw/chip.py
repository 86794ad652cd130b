"""The chip: cores wired by the fabric, fed by the image source, run by SimPy."""

from __future__ import annotations

import time

import numpy as np
import simpy

from cimsim.config.schema import Scenario
from cimsim.errors import SimulationError
from cimsim.hw.core import Core, CoreTiming, SramTiming
from cimsim.hw.geometry import LayerGeometry, build_geometry
from cimsim.hw.ports import OutputPort
from cimsim.hw.source import ImageSource
from cimsim.mapping.plan import MappingPlan
from cimsim.mapping.sram import SramLayout, make_layout
from cimsim.network import Network
from cimsim.sim.probe import Probe, Subscriber
from cimsim.sim.record import CoreRecord, RunRecord
from cimsim.sim.stats import StatsCollector


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
        self.probe = Probe([self.stats, *(subscribers or [])])
        timing = CoreTiming(self.cpt, chip.clocking == "elastic", chip.mvm_cycles, chip.digital_cycles,
                            scenario.noc.ideal_hop_timesteps, chip.partial_sum_timesteps, chip.sram_ports)
        names = {c.id: c.name for c in plan.cores}
        self.cores: dict[int, Core] = {}
        self.ports: list[OutputPort] = []
        hop = timing.hop_timesteps * self.cpt
        psum = timing.partial_sum_timesteps * self.cpt
        consumers: dict[str, list[tuple[str, str]]] = {}
        for src, dst, role in plan.edges:
            consumers.setdefault(src, []).append((dst, role))
        geoms = {name: layer_geometry(net, plan, name) for name in plan.layers}
        # A consumer's inbox holds two of its producer's largest deliveries (a Method 2
        # stripe releases its later columns at once).
        burst = {n: int(np.diff(g.group_released, prepend=0).max()) for n, g in geoms.items()}
        burst[plan.input_name] = scenario.input.pixels_per_timestep

        def sources(layer: str) -> list[str]:
            return [plan.input_name] if layer == plan.input_name else [names[c] for c in plan.layers[layer].merge_cores]

        output_layer = plan.output_layer
        for name in reversed(list(plan.layers)):
            lm = plan.layers[name]
            geom = geoms[name]
            lay = make_layout(lm.sram_method, lm.pixel_bits, geom.in_h, geom.slot_columns, chip.sram_word_bits)
            sram = sram_timing(lay, geom)
            pooled = any(net.layer(f).kind == "avgpool" for f in lm.fused)
            merge = set(lm.merge_cores)
            for cid in reversed(lm.cores):
                spec = plan.cores[cid]
                outputs: list[OutputPort] = []
                if cid in merge:
                    for dst, role in consumers.get(name, []):
                        dlm = plan.layers[dst]
                        targets = dlm.cores if role == "main" else dlm.merge_cores
                        for t in targets:
                            port = self.cores[t].main if role == "main" else self.cores[t].residual
                            outputs.append(OutputPort(env, names[cid], port, hop))
                else:
                    merge_core = self.cores[lm.merge_cores[spec.col_part]]
                    outputs.append(OutputPort(env, names[cid], merge_core.partial, psum))
                self.ports.extend(outputs)
                partial_sources = ([names[lm.cores[r * lm.col_parts + spec.col_part]] for r in range(lm.row_parts - 1)]
                                   if cid in merge else [])
                self.cores[cid] = Core(
                    env, spec, lm, geom, sram, timing, self.probe, self.batch, outputs,
                    main_sources=sources(lm.main_input),
                    residual_sources=sources(lm.residual_input) if (lm.residual_input and cid in merge) else [],
                    partial_sources=partial_sources,
                    emits_image_done=(name == output_layer and cid == lm.merge_cores[0]),
                    pooled=pooled and cid in merge, main_capacity=2 * burst[lm.main_input],
                )
        first = [lm for lm in plan.layers.values() if lm.main_input == plan.input_name]
        src_ports = [OutputPort(env, plan.input_name, self.cores[c].main) for lm in first for c in lm.cores]
        inp = net.input_layer
        self.source = ImageSource(env, src_ports, self.batch, inp.out_h * inp.out_w,
                                  scenario.input.pixels_per_timestep, self.cpt, self.probe)

    def run(self) -> RunRecord:
        """Simulate the whole batch; raise SimulationError on deadlock or the cycle limit."""
        t0 = time.perf_counter()
        limit = self.scenario.run.max_timesteps * self.cpt
        env = self.env
        while env.peek() < limit:
            env.step()
        unfinished = [c for c in self.cores.values() if c.group < c.total_groups]
        if unfinished:
            what = ("reached run.max_timesteps" if env.peek() < float("inf")
                    else "deadlock: no component can make progress")
            blocked = "; ".join(c.line() for c in unfinished[:6])
            more = f" (+{len(unfinished) - 6} more)" if len(unfinished) > 6 else ""
            raise SimulationError(f"{what} at cycle {self.env.now} (timestep {self.env.now // self.cpt}): "
                                  f"{blocked}{more}")
        st = self.stats
        cores = [
            CoreRecord(c.spec.id, c.spec.name, c.spec.layer, st.active.get(c.spec.id, 0),
                       dict(st.stalls.get(c.spec.id, {})), c.main.peak, c.residual.peak)
            for c in sorted(self.cores.values(), key=lambda c: c.spec.id)
        ]
        done = [st.images[i][0] for i in range(self.batch)]
        return RunRecord(
            scenario=self.scenario, network=self.net, plan=self.plan, batch=self.batch,
            image_start_ts=list(self.source.image_start_ts), image_done_ts=done,
            cycles=max(st.images[i][1] for i in range(self.batch)), events=st.events, cores=cores,
            layer_first_ts=dict(st.first_ts), layer_last_ts=dict(st.last_ts),
            progress={k: list(v) for k, v in st.progress.items()},
            source_stall_timesteps=self.source.stall_timesteps, wall_seconds=time.perf_counter() - t0,
        )


def build_chip(env: simpy.Environment, scenario: Scenario, net: Network, plan: MappingPlan,
               subscribers: list[Subscriber] | None = None) -> Chip:
    """Build the chip for a mapping plan."""
    return Chip(env, scenario, net, plan, subscribers)
