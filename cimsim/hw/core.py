"""The IMC core (Dazzi 2021 Fig. 1C) as a SimPy process.

One process per core runs the dataflow controller's loop (Algorithm 1): store the
pixels that arrived (Algorithm 2's circular buffer: a pixel may only overwrite a slot
whose previous pixel no pending group still needs), fire when the next parallel
group's windows are complete (`conditions_to_compute`), read the new kernel rows,
run the crossbar MVM and the digital processor, and deliver the outputs in stream
order. A core with nothing to do sleeps on an event; producers and consumers wake it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from cimsim.hw.datapath import Datapath
from cimsim.hw.geometry import LayerGeometry
from cimsim.hw.ports import InputPort, OutputPort
from cimsim.mapping.plan import CoreSpec, LayerMapping
from cimsim.sim.probe import Probe


@dataclass(frozen=True)
class CoreTiming:
    """Cycle costs and clocking shared by all cores of a chip."""

    cycles_per_timestep: int
    elastic: bool
    mvm_cycles: int
    digital_cycles: int
    hop_timesteps: int
    partial_sum_timesteps: int
    sram_ports: int


@dataclass(frozen=True)
class SramTiming:
    """SRAM cycles of one layer's layout: per stored slot, and per group's kernel-row reads."""

    write: np.ndarray
    """write[x, slot]: words touched storing input row x into column slot `slot`."""
    read: np.ndarray
    """read[phase, group]: words read for the group's new kernel rows; phase = first global
    column of the image modulo the slot columns (the circular buffer's rotation)."""


class Core:
    """Input SRAM + dataflow controller + crossbar + digital processor of one core."""

    def __init__(self, env: simpy.Environment, spec: CoreSpec, mapping: LayerMapping, geom: LayerGeometry,
                 sram: SramTiming, timing: CoreTiming, probe: Probe, batch: int, outputs: Sequence[OutputPort],
                 main_sources: Sequence[str], residual_sources: Sequence[str], partial_sources: Sequence[str],
                 emits_image_done: bool, pooled: bool, main_capacity: int, datapath: Datapath | None = None) -> None:
        self.env = env
        self.spec = spec
        self.map = mapping
        self.geom = geom
        self.sram = sram
        self.t = timing
        self.probe = probe
        self.batch = batch
        self.outputs = list(outputs)
        self.emits_image_done = emits_image_done
        self.pooled = pooled
        self.datapath = datapath
        self.is_writer = spec.id == mapping.merge_cores[0]
        """The core whose digital processor writes the layer's output values."""
        """Real values (functional model), or None for timing only."""
        self.main = InputPort(self, "main", main_sources, capacity=main_capacity)
        self.residual = InputPort(self, "residual", residual_sources, capacity=mapping.residual_capacity)
        self.partial = InputPort(self, "partial", partial_sources, capacity=None)
        self.slots = geom.slot_columns * geom.in_h
        self.stored = 0
        self.done = 0
        """Outputs computed so far (all images)."""
        self.group = 0
        self.total_groups = batch * geom.n_groups
        self.busy_until_ts = -1
        self.store_cycles = 0
        self.store_ts = -1
        self.started = False
        self.mark_ts = 0
        self.cause = "input"
        self._wake: simpy.Event | None = None
        self.process = env.process(self.run())

    # --- wiring ---------------------------------------------------------------------------------
    def kick(self) -> None:
        """Wake the core if it sleeps (new input, or space freed downstream)."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def line(self) -> str:
        """One-line state for debugging and deadlock reports."""
        return (f"{self.spec.name}: group {self.group}/{self.total_groups}, stored {self.stored}, "
                f"arrived {self.main.arrived}, residual {self.residual.arrived}, partial {self.partial.arrived}, "
                f"outputs {self.done}, waits for {self.cause}")

    def explain(self) -> str:
        """What the core waits for, in words, for deadlock and watchdog reports."""
        geom = self.geom
        if self.group >= self.total_groups:
            return f"{self.spec.name}: done"
        image, gi = divmod(self.group, geom.n_groups)
        r, c = (int(v) for v in geom.group_origin[gi])
        what = f"{self.spec.name} (image {image}, outputs from row {r} col {c})"
        need = int(geom.group_need[gi])
        nc, nr = divmod(need, geom.in_h)
        pixel = f"input pixel row {nr} col {nc} of image {image}"
        cause = self.cause
        if cause in ("input", "dram"):
            src = ", ".join(self.main.sources)
            return f"{what} waits for {pixel} from {src} ({self.main.arrived - image * geom.n_in} of image {image} arrived)"
        if cause == "sram":
            return (f"{what} waits to store {pixel}: its SRAM slot still holds a pixel a pending window needs "
                    f"({self.stored} stored, {self.main.arrived} arrived, {self.slots} slots)")
        if cause in ("noc", "recovery"):
            return f"{what} waits for {pixel}, sent but still in the fabric ({cause})"
        if cause == "residual":
            return (f"{what} waits for residual pixels from {', '.join(self.residual.sources)} "
                    f"({self.residual.arrived} arrived)")
        if cause == "partial":
            return (f"{what} waits for partial sums from {', '.join(self.partial.sources)} "
                    f"({self.partial.arrived} arrived)")
        if cause == "output":
            full = [p for p in self.outputs if p.blocked(1) is not None]
            names = ", ".join(f"{p.target.role} buffer of {getattr(p.target.owner, 'spec', None) and p.target.owner.spec.name}"
                              f" ({p.target.counts[p.source] - p.target.consumed}/{p.target.capacity} pixels)"
                              for p in full) or "a consumer"
            return f"{what} waits for space in the {names}"
        return f"{what} waits for {cause}"

    # --- Algorithm 2: circular store ------------------------------------------------------------
    def _slot_free(self, g: int) -> bool:
        prev = g - self.slots
        if prev < 0:
            return True
        geom = self.geom
        last = int(geom.last_group[prev % geom.n_in])
        return last < 0 or self.group > (prev // geom.n_in) * geom.n_groups + last

    def _store(self) -> None:
        geom = self.geom
        before = self.stored
        cycles = 0
        while self.stored < self.main.arrived and self._slot_free(self.stored):
            image, k = divmod(self.stored, geom.n_in)
            col, x = divmod(k, geom.in_h)
            cycles += int(self.sram.write[x, (image * geom.in_w + col) % geom.slot_columns])
            self.stored += 1
        if self.stored != before:
            now_ts = self.env.now // self.t.cycles_per_timestep
            if now_ts != self.store_ts:
                self.store_ts, self.store_cycles = now_ts, 0
            self.store_cycles += cycles
            self.main.consume_to(self.stored)

    # --- Algorithm 1: conditions_to_compute -----------------------------------------------------
    def _blocked(self) -> str | None:
        geom = self.geom
        image, gi = divmod(self.group, geom.n_groups)
        need = image * geom.n_in + int(geom.group_need[gi]) + 1
        if self.stored < need:
            if self.main.arrived >= need:
                return "sram"
            if self.main.upstream_cause is not None:
                return self.main.upstream_cause
            if self.main.arrived + self.main.in_flight >= need:
                return "noc"
            return "dram" if getattr(self.main.upstream, "dram_waiting", False) else "input"
        if self.residual.sources and self.residual.arrived < image * geom.n_out + int(geom.group_out_need[gi]):
            return "residual"
        if self.partial.sources and self.partial.arrived < image * geom.n_out + int(geom.group_done[gi]):
            return "partial"
        count = self._release_count(gi)
        for port in self.outputs:
            blocked = port.blocked(count)
            if blocked is not None:
                port.register_waiter(self)
                return blocked
        return None

    def _release_count(self, gi: int) -> int:
        """Pixels sent to each output port when group `gi` completes."""
        geom = self.geom
        if self.pooled:
            return 1 if gi == geom.n_groups - 1 else 0
        if not self.outputs or self.outputs[0].target.role == "partial":
            return int(geom.group_count[gi])
        return int(geom.group_released[gi] - (geom.group_released[gi - 1] if gi else 0))

    def _account(self, now_ts: int) -> None:
        """Charge the timesteps since the last mark to the cause in force."""
        if self.started and now_ts > self.mark_ts:
            self.probe.stall(self.spec.id, self.spec.layer, self.cause, self.mark_ts, now_ts - self.mark_ts)
            self.mark_ts = now_ts

    def _step_cycles(self, image: int, gi: int, now_ts: int, mvm: int) -> tuple[int, int]:
        """(SRAM cycles, total cycles) of computing group `gi` now with an MVM of `mvm` cycles."""
        geom, t = self.geom, self.t
        if self.store_ts != now_ts:
            self.store_cycles = 0
        phase = (image * geom.in_w) % geom.slot_columns
        reads = int(self.sram.read[phase, gi])
        sram = self.store_cycles + reads if t.sram_ports == 1 else max(self.store_cycles, reads)
        digital = t.digital_cycles * int(geom.group_count[gi])
        if self.pooled and gi == geom.n_groups - 1:
            digital += t.digital_cycles
        return sram, sram + mvm + digital

    def run(self):  # SimPy generator
        """The controller loop: one iteration per parallel group computed."""
        env, t, geom = self.env, self.t, self.geom
        cpt = t.cycles_per_timestep
        while self.group < self.total_groups:
            self._store()
            cause = self._blocked()
            now_ts = env.now // cpt
            if not self.started and self.main.arrived > 0:
                self.started, self.mark_ts = True, now_ts
            if cause is not None:
                if cause != self.cause:
                    self._account(now_ts)
                    self.cause = cause
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            if not t.elastic and now_ts <= self.busy_until_ts:
                yield env.timeout((self.busy_until_ts + 1) * cpt - env.now)
                continue
            self._account(now_ts)
            image, gi = divmod(self.group, geom.n_groups)
            mvm = t.mvm_cycles
            if self.datapath is not None:
                mvm = self.datapath.mvm(self.spec.layer, image, gi, len(self.map.cores))
            sram, cycles = self._step_cycles(image, gi, now_ts, mvm)
            self.store_cycles = 0
            steps = 1
            late = None
            if t.elastic:
                recovery = mvm - self.datapath.base_mvm_cycles if self.datapath is not None else 0
                if recovery > 0:  # the consumers now wait on this core's recovery cycles
                    for port in self.outputs:
                        port.target.upstream_cause = "recovery"
                        port.target.owner.kick()
                    end = env.now + cycles
                    lost = end // cpt - (end - recovery) // cpt
                    self.probe.stall(self.spec.id, self.spec.layer, "recovery", (end - recovery) // cpt + 1, lost)
                yield env.timeout(cycles)
                deliver_cycle = env.now
            else:
                steps = max(1, -(-cycles // cpt))
                deliver_cycle = max(env.now, (now_ts + steps - 1) * cpt)
                if steps > 1:
                    cause = "compute" if cycles - sram > cpt else "sram"
                    recovery = mvm - self.datapath.base_mvm_cycles if self.datapath is not None else 0
                    if recovery > 0 and -(-(cycles - recovery) // cpt) < steps:
                        cause = "recovery"
                    late = cause
                    self.probe.stall(self.spec.id, self.spec.layer, cause, now_ts + 1, steps - 1)
            count = int(geom.group_count[gi])
            before = int(geom.group_done[gi]) - count
            row, col = (int(v) for v in geom.group_origin[gi])
            self.probe.compute(env.now, now_ts, self.spec.id, self.spec.layer, image, before, count, cycles, row, col)
            if self.datapath is not None and self.is_writer:
                self.datapath.finish(self.spec.layer, image, gi)
            send = self._release_count(gi)
            self.group += 1
            self.done += count
            self.residual.consume_to(image * geom.n_out + int(geom.group_released[gi]))
            self.partial.consume_to(image * geom.n_out + int(geom.group_done[gi]))
            self._store()
            if send:
                for port in self.outputs:
                    port.send(send, deliver_cycle, late)
            if self.emits_image_done and gi == geom.n_groups - 1:
                self.probe.image_done(image, -1, deliver_cycle // cpt, deliver_cycle)
            self.busy_until_ts = now_ts + steps - 1
            self.mark_ts = self.busy_until_ts + 1 if not t.elastic else env.now // cpt + 1
        self.cause = "done"
        # Pixels no window uses (e.g. the odd rows of a stride-2 1 x 1 layer) may still
        # arrive after the last output: accept them so producers are never held up.
        for port in (self.main, self.residual):
            port.capacity = None
            port.release()
