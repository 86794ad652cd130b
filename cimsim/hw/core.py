"""The IMC core (Dazzi 2021 Fig. 1C) as a SimPy process.

One process per core runs the dataflow controller's loop (Algorithm 1): store the
pixels that arrived (Algorithm 2's circular H x F buffer: a pixel may only
overwrite a slot whose previous pixel no output still needs), fire when the next
parallel group's windows are complete (`conditions_to_compute`), read the new kernel
rows, run the crossbar MVM and the digital processor, and deliver the outputs.
A core with nothing to do sleeps on an event; producers and consumers wake it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import simpy

from cimsim.hw.geometry import LayerGeometry
from cimsim.hw.ports import InputPort, OutputPort
from cimsim.mapping.plan import CoreSpec, LayerMapping
from cimsim.sim.probe import Probe

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class CoreTiming:
    """Cycle costs and clocking shared by all cores of a chip."""

    cycles_per_timestep: int
    elastic: bool
    mvm_cycles: int
    digital_cycles: int
    hop_timesteps: int
    partial_sum_timesteps: int


class Core:
    """Input SRAM + dataflow controller + crossbar + digital processor of one core."""

    def __init__(self, env: simpy.Environment, spec: CoreSpec, mapping: LayerMapping, geom: LayerGeometry,
                 timing: CoreTiming, probe: Probe, batch: int, outputs: Sequence[OutputPort],
                 main_sources: Sequence[str], residual_sources: Sequence[str], partial_sources: Sequence[str],
                 emits_image_done: bool, pooled: bool, main_capacity: int) -> None:
        self.env = env
        self.spec = spec
        self.map = mapping
        self.geom = geom
        self.t = timing
        self.probe = probe
        self.batch = batch
        self.outputs = list(outputs)
        self.emits_image_done = emits_image_done
        self.pooled = pooled
        self.main = InputPort(self, "main", main_sources, capacity=main_capacity)
        self.residual = InputPort(self, "residual", residual_sources, capacity=3 * geom.out_h)
        self.partial = InputPort(self, "partial", partial_sources, capacity=None)
        self.slots = geom.kernel * geom.in_h
        self.stored = 0
        self.done = 0
        self.group = 0
        self.total_groups = batch * geom.n_groups
        self.busy_until_ts = -1
        self.store_cycles = 0
        self.store_ts = -1
        self.peak_occupancy = 0
        self.started = False
        self.mark_ts = 0
        self.cause = "input"
        self.blocked_on: OutputPort | None = None
        self.waiters: set[Core] = set()
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

    # --- Algorithm 2: circular H x F store ----------------------------------------------------------
    def _slot_free(self, g: int) -> bool:
        prev = g - self.slots
        if prev < 0:
            return True
        n_in = self.geom.n_in
        last = int(self.geom.last_use[prev % n_in])
        return last < 0 or self.done > (prev // n_in) * self.geom.n_out + last

    def _store(self) -> None:
        stored_before = self.stored
        while self.stored < self.main.arrived and self._slot_free(self.stored):
            self.stored += 1
        n = self.stored - stored_before
        if n:
            now_ts = self.env.now // self.t.cycles_per_timestep
            if now_ts != self.store_ts:
                self.store_ts, self.store_cycles = now_ts, 0
            self.store_cycles += n * self.map.write_cycles
            self.main.consume_to(self.stored)

    # --- Algorithm 1: conditions_to_compute -----------------------------------------------------
    def _blocked(self) -> str | None:
        geom = self.geom
        image, gi = divmod(self.group, geom.n_groups)
        need = image * geom.n_in + int(geom.group_need[gi]) + 1
        if self.stored < need:
            return "sram" if self.main.arrived >= need else "input"
        end = image * geom.n_out + int(geom.group_end[gi])
        if self.residual.sources and self.residual.arrived < end:
            return "residual"
        if self.partial.sources and self.partial.arrived < end:
            return "partial"
        count = int(geom.group_end[gi] - geom.group_start[gi])
        for port in self.outputs:
            if not port.has_space(1 if self.pooled else count):
                self.blocked_on = port
                port.register_waiter(self)
                return "output"
        return None

    def _account(self, now_ts: int, cause: str | None) -> None:
        """Charge the timesteps since the last mark to the cause in force."""
        if self.started and now_ts > self.mark_ts:
            self.probe.stall(self.spec.id, self.spec.layer, self.cause, self.mark_ts, now_ts - self.mark_ts)
            self.mark_ts = now_ts
        if cause is not None:
            self.cause = cause

    def run(self):
        """The controller loop: one iteration per parallel group computed."""
        env, t, geom = self.env, self.t, self.geom
        cpt = t.cycles_per_timestep
        while self.group < self.total_groups:
            self._store()
            cause = self._blocked()
            now_ts = env.now // cpt
            if not self.started and (self.main.arrived > 0):
                self.started, self.mark_ts = True, now_ts
            if cause is not None:
                if cause != self.cause:
                    self._account(now_ts, cause)
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            if not t.elastic and now_ts <= self.busy_until_ts:
                yield env.timeout((self.busy_until_ts + 1) * cpt - env.now)
                continue
            self._account(now_ts, None)
            image, gi = divmod(self.group, geom.n_groups)
            first = int(geom.group_start[gi])
            count = int(geom.group_end[gi]) - first
            last_of_image = gi == geom.n_groups - 1
            if self.store_ts != now_ts:
                self.store_cycles = 0
            cycles = (self.store_cycles + int(geom.group_rows[gi]) * self.map.read_cycles + t.mvm_cycles
                      + t.digital_cycles * count + (t.digital_cycles if last_of_image and self.pooled else 0))
            self.store_cycles = 0
            if t.elastic:
                yield env.timeout(cycles)
                deliver_cycle = env.now
                steps = 1
            else:
                steps = max(1, -(-cycles // cpt))
                deliver_cycle = (now_ts + steps - 1) * cpt
                if steps > 1:
                    self.probe.stall(self.spec.id, self.spec.layer, "sram" if cycles - t.mvm_cycles > cpt
                                     else "compute", now_ts + 1, steps - 1)
            self.probe.compute(env.now, now_ts, self.spec.id, self.spec.layer, image, first, count, cycles)
            self.group += 1
            self.done = image * geom.n_out + first + count
            self.residual.consume_to(self.done)
            self.partial.consume_to(self.done)
            self._store()
            if self.pooled:
                if last_of_image:
                    for port in self.outputs:
                        port.send(1, deliver_cycle)
            else:
                for port in self.outputs:
                    port.send(count, deliver_cycle)
            if self.emits_image_done and last_of_image:
                self.probe.image_done(image, -1, (deliver_cycle // cpt), deliver_cycle)
            self.busy_until_ts = now_ts + steps - 1
            self.mark_ts = self.busy_until_ts + 1 if not t.elastic else env.now // cpt + 1
        self.cause = "done"
        # Pixels no window uses (e.g. the odd rows of a stride-2 1 x 1 layer) may still
        # arrive after the last output: accept them so producers are never held up.
        for port in (self.main, self.residual):
            port.capacity = None
            port.release()
