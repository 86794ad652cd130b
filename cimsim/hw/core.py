"""The IMC core (Dazzi 2021 Fig. 1C) as a SimPy process.

One process per core runs the dataflow controller's loop (Algorithm 1): store the
pixels that arrived (Algorithm 2's circular buffer: a pixel may only overwrite a slot
whose previous pixel no pending group still needs), fire when the next parallel
group's windows are complete (`conditions_to_compute`), read the new kernel rows,
run the crossbar MVM and the digital processor, and deliver the outputs in stream
order. A core with nothing to do sleeps on an event; producers and consumers wake it.

Residual pixels follow `LayerMapping.residual_path` (`cimsim.mapping.residual`): the block's
first core reads each pixel of its input memory again and sends it to the adding core
(Dazzi's `read_res`, `cimsim.hw.residual.ResidualSender`), keeping its slot until then; a core
that adds its own input reads the pixel in the step of its output; a core that keeps a copy
(`ADDER_COPY`) pays its words (`LayerMapping.residual_pixel_words`) when it stores it, in the
part of its input SRAM the input buffer leaves free, and again when its digital processor reads
it back for the add, in the step of that output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import simpy
from simpy import Event

from cimsim.errors import SimulationError
from cimsim.hw.clocking import Clocking
from cimsim.hw.datapath import Datapath
from cimsim.hw.ports import InputPort, OutputPort
from cimsim.hw.residual import NO_DUTY, ResidualSender, own_residual_reads, per_pixel
from cimsim.mapping.geometry import LayerGeometry
from cimsim.mapping.plan import CoreSpec, LayerMapping, ResidualPath
from cimsim.mapping.stages import Unit
from cimsim.network.layers import EdgeRole
from cimsim.sim.probe import Probe, StallCause


@dataclass(frozen=True)
class CoreTiming:
    """Cycle costs shared by all cores of a chip."""

    cycles_per_timestep: int
    mvm_cycles: int
    """MVM cycles of the timing-only model (the functional datapath gives its own)."""
    digital_cycles: int
    """Digital-processor cycles per output pixel (and once more for a pooled layer's pool)."""
    sram_ports: int
    """1: stores and reads share the SRAM port (cycles add up); 2: they overlap."""


@dataclass(frozen=True)
class SramTiming:
    """SRAM cycles of one layer's layout: per stored slot, and per group's kernel-row reads."""

    write: np.ndarray
    """write[x, slot]: words touched storing input row x into column slot `slot`."""
    read: np.ndarray
    """read[phase, group]: words read for the group's new kernel rows; phase = first global
    column of the image modulo the slot columns (the circular buffer's rotation)."""
    pixel_read: np.ndarray | None = None
    """pixel_read[x, slot]: words touched reading the one pixel stored there (`read_res`); None:
    the same as `write`."""


class Core:
    """Input SRAM + dataflow controller + crossbar + digital processor of one core.

    The per-group tables of the layer's geometry and SRAM layout are copied into plain
    Python lists once: the controller loop reads them for every pixel and group.
    """

    def __init__(self, env: simpy.Environment, spec: CoreSpec, mapping: LayerMapping, geom: LayerGeometry,
                 sram: SramTiming, timing: CoreTiming, clocking: Clocking, probe: Probe, batch: int,
                 outputs: Sequence[OutputPort], main_sources: list[str], residual_sources: list[str],
                 partial_sources: list[str], emits_image_done: bool, pooled: bool, main_capacity: int,
                 datapath: Datapath | None = None, check_invariants: bool = False,
                 residual_outputs: Sequence[tuple[Sequence[OutputPort], Sequence[int]]] = ()) -> None:
        self.env = env
        self.spec = spec
        self.map = mapping
        self.geom = geom
        self.sram = sram
        self.t = timing
        self.clock = clocking
        self.probe = probe
        self.batch = batch
        self.outputs = list(outputs)
        self.emits_image_done = emits_image_done
        self.on_image_done: Callable[[int, int, int, int], None] | None = None
        """Called instead of the probe when this core finishes an image's last group, if it emits
        image completions (the chip joins the column parts of a split output layer: an image is
        done when all are); None: the probe's image_done, looked up when called."""
        self.pooled = pooled
        self.datapath = datapath
        """Real values (functional model), or None for timing only."""
        self.base_mvm_cycles = (timing.mvm_cycles if datapath is None or mapping.unit is Unit.DIGITAL
                                else datapath.base_mvm_cycles * mapping.jobs
                                * getattr(datapath, "sign_passes", {}).get(mapping.layer, 1))  # split-sign: 2
        """MVM cycles without (data-dependent) recovery: a longer MVM is a recovery (a digital
        stage has none; a depthwise split into jobs runs one MVM per job; split-sign inputs two passes)."""
        self.is_writer = spec.id == mapping.merge_cores[0]
        """The core whose digital processor writes the layer's output values."""
        self.check_invariants = check_invariants
        """Check the dataflow invariants at every step (`run.check_invariants`)."""
        name = spec.name
        self.main = InputPort(self, EdgeRole.MAIN, main_sources, capacity=main_capacity, name=name)
        self.residual = InputPort(self, EdgeRole.RESIDUAL, residual_sources, capacity=mapping.residual_capacity,
                                  name=name)
        self.partial = InputPort(self, EdgeRole.PARTIAL, partial_sources, capacity=None, name=name)
        self.slots = geom.slot_columns * geom.in_h
        copy = mapping.residual_path is ResidualPath.ADDER_COPY
        self._res_words = mapping.residual_pixel_words if residual_sources and copy else 0
        """A copy's SRAM words per residual pixel: its write cycles when stored, its read cycles when added."""
        self.res_stored = 0
        """Residual pixels stored so far (all images)."""
        # plain-list copies of the tables (hot path)
        self.n_groups = geom.n_groups
        self.n_in = geom.n_in
        self.n_out = geom.n_out
        self._in_h, self._in_w, self._slot_columns = geom.in_h, geom.in_w, geom.slot_columns
        self._cpt = timing.cycles_per_timestep
        self._need = geom.group_need.tolist()
        self._out_need = geom.group_out_need.tolist()
        self._done = geom.group_done.tolist()
        self._count = geom.group_count.tolist()
        self._first_input = geom.group_first_input.tolist()
        self._last_group = geom.last_group.tolist()
        self._origin = [tuple(o) for o in geom.group_origin.tolist()]
        # SRAM words written storing pixel k of an image, per image modulo the period of the
        # circular buffer's rotation (image i starts at global column i * in_w)
        write = sram.write.tolist()
        period = geom.slot_columns // math.gcd(geom.in_w, geom.slot_columns)
        self._write_cost = per_pixel(write, geom, period)
        self._read = sram.read.tolist()
        pixel_read = (sram.write if sram.pixel_read is None else sram.pixel_read).tolist()
        self._res_cost = res_costs = per_pixel(pixel_read, geom, period)
        """_res_cost[image % period][k]: words read for `read_res` of pixel k of an image."""
        self.senders = [ResidualSender(ports, res_costs, schedule, batch) for ports, schedule in residual_outputs]
        """`read_res`: this core is a block's first core and sends its input pixels to these adding stages."""
        self._own_residual = (mapping.residual_path is ResidualPath.OWN_INPUT
                              and spec.id in mapping.merge_cores)
        """It adds its own input: each output reads its residual pixel from this input memory."""
        self.res_done = 0 if self._own_residual else NO_DUTY
        """Input pixels read for a residual so far (all images): a slot is not overwritten before."""
        self.owed_holds = 0
        """Times a store stopped at a slot whose pixel was not yet read for its residual add."""
        digital = [timing.digital_cycles * n for n in self._count]
        if pooled:
            digital[-1] += timing.digital_cycles  # the pool, once per image
        self._digital = digital
        """Digital-processor cycles of each group (requantise/ReLU/add per output, and the pool)."""
        self._res_read = (own_residual_reads(pixel_read, geom) if self._own_residual
                          else [[self._res_words * n for n in self._count]] * geom.slot_columns)
        """_res_read[phase][group]: SRAM words of the residual pixels the group's digital processor
        reads for its adds (a copy's read-back, or its own input's pixels)."""
        released = geom.group_released.tolist()
        self._released = released
        if pooled:
            self._send = [0] * (self.n_groups - 1) + [1]
        elif not self.outputs or self.outputs[0].role is EdgeRole.PARTIAL:
            self._send = list(self._count)
        else:
            self._send = [r - (released[g - 1] if g else 0) for g, r in enumerate(released)]
        """Pixels sent to each output port when group g completes."""
        self.stored = 0
        self.done = 0
        """Outputs computed so far (all images)."""
        self.group = 0
        self.total_groups = batch * self.n_groups
        self.busy_until_ts = -1
        self.store_cycles = 0
        self.store_ts = -1
        self.started = False
        self.mark_ts = 0
        self.cause: StallCause | None = StallCause.INPUT
        """What the core waits for now (None: it has finished)."""
        self._last_step_ts = -1
        self._wake: simpy.Event | None = None
        self.weights_ready: simpy.Event | None = None
        """Set by the chip when weights are programmed before the run (`mapping.weights = "reload"`):
        the controller starts once it fires, and the wait is charged to the `weights` stall."""
        self.process = env.process(self.run())

    # --- wiring ---------------------------------------------------------------------------------
    def kick(self) -> None:
        """Wake the core if it sleeps (new input, or space freed downstream)."""
        wake = self._wake
        if wake is not None:
            self._wake = None  # one wake-up is enough
            wake.succeed()

    @property
    def finished(self) -> bool:
        """True when every group of the batch has been computed."""
        return self.group >= self.total_groups

    def line(self) -> str:
        """One-line state for debugging and deadlock reports."""
        return (f"{self.spec.name}: group {self.group}/{self.total_groups}, stored {self.stored}, "
                f"arrived {self.main.arrived}, residual {self.residual.arrived}, partial {self.partial.arrived}, "
                f"outputs {self.done}, waits for {self.cause or 'nothing (done)'}")

    def explain(self) -> str:
        """What the core waits for, in words, for deadlock and watchdog reports."""
        if self.finished:
            return f"{self.spec.name}: done"
        image, gi = divmod(self.group, self.n_groups)
        r, c = self._origin[gi]
        what = f"{self.spec.name} (image {image}, outputs from row {r} col {c})"
        nc, nr = divmod(self._need[gi], self.geom.in_h)
        pixel = f"input pixel row {nr} col {nc} of image {image}"
        cause = self.cause
        if cause in (StallCause.INPUT, StallCause.DRAM):
            src = ", ".join(self.main.sources)
            return f"{what} waits for {pixel} from {src} ({self.main.arrived - image * self.n_in} of image {image} arrived)"
        if cause is StallCause.SRAM:
            if self.stored - self.slots >= self.owed_to():
                return (f"{what} waits to store {pixel}: its SRAM slot still holds pixel {self.stored - self.slots} "
                        "owed to a residual add (read_res)")
            return (f"{what} waits to store {pixel}: its SRAM slot still holds a pixel a pending window needs "
                    f"({self.stored} stored, {self.main.arrived} arrived, {self.slots} slots)")
        if cause in (StallCause.NOC, StallCause.RECOVERY):
            return f"{what} waits for {pixel}, sent but still in the fabric ({cause})"
        if cause is StallCause.RESIDUAL:
            return (f"{what} waits for residual pixels from {', '.join(self.residual.sources)} "
                    f"({self.residual.arrived} arrived)")
        if cause is StallCause.PARTIAL:
            return (f"{what} waits for partial sums from {', '.join(self.partial.sources)} "
                    f"({self.partial.arrived} arrived)")
        if cause is StallCause.OUTPUT:
            full = [p for p in self.outputs if p.blocked(self._send[gi]) is not None]
            names = ", ".join(f"{p.role} buffer of {p.target.name or 'the consumer'}"
                              f" ({p.target.counts[p.source] - p.target.consumed}/{p.target.capacity} pixels)"
                              for p in full) or "a consumer"
            return f"{what} waits for space in the {names}"
        return f"{what} waits for {cause}"

    def owed_to(self) -> int:
        """Input pixels read for residual adds so far: a slot whose pixel is not among them is kept."""
        if self.senders:
            return min(sender.done for sender in self.senders)
        return self.res_done

    # --- Algorithm 2: circular store ------------------------------------------------------------
    def _store(self, now_ts: int) -> int:
        """Store arrived pixels while their slot's previous pixel is no longer needed (in
        timestep `now_ts`); return the pixels stored so far."""
        arrived = self.main.arrived
        stored = before = self.stored
        n_in, slots, n_groups, group = self.n_in, self.slots, self.n_groups, self.group
        last_group, write_cost = self._last_group, self._write_cost
        senders = self.senders
        owed = (senders[0].done if len(senders) == 1 else self.owed_to()) if senders else self.res_done
        image, k = divmod(stored, n_in)
        costs = write_cost[image % len(write_cost)]
        cycles = 0
        while stored < arrived:
            prev = stored - slots
            if prev >= 0:
                if prev >= owed:
                    self.owed_holds += 1
                    break  # the slot holds a pixel not yet read for its residual add
                prev_image, prev_k = divmod(prev, n_in)
                last = last_group[prev_k]
                if last >= 0 and group <= prev_image * n_groups + last:
                    break  # the slot still holds a pixel a pending window needs
            cycles += costs[k]
            stored += 1
            k += 1
            if k == n_in:
                image, k = image + 1, 0
                costs = write_cost[image % len(write_cost)]
        if stored != before:
            self.stored = stored
            if now_ts != self.store_ts:
                self.store_ts, self.store_cycles = now_ts, 0
            self.store_cycles += cycles
            self.main.consume_to(stored)
        return stored

    def _store_residual(self, now_ts: int) -> None:
        """Store the residual pixels that arrived (the port's capacity is the SRAM room left
        for them, so they are stored at once): their words join this timestep's store cycles."""
        arrived = self.residual.arrived
        if now_ts != self.store_ts:
            self.store_ts, self.store_cycles = now_ts, 0
        self.store_cycles += (arrived - self.res_stored) * self._res_words
        self.res_stored = arrived

    def _send_residual(self, now_ts: int) -> int:
        """`read_res`: send the residual pixels whose conditions hold and the adding cores have
        room for, store what that frees, again; return the pixels stored."""
        senders, main = self.senders, self.main
        now = int(self.env.now)
        while True:
            sent = 0
            for sender in senders:
                sent += sender.send(self, self.stored, now, now_ts)
            if not sent or self.stored >= main.arrived:
                return self.stored
            self._store(now_ts)

    # --- Algorithm 1: conditions_to_compute -----------------------------------------------------
    def _blocked(self, image: int, gi: int, now_ts: int) -> StallCause | None:
        """Store what arrived, then what keeps group `gi` of `image` from firing now (None:
        nothing). A blocked output port registers the core to be woken when it frees space."""
        main, residual = self.main, self.residual
        if residual.arrived > self.res_stored:
            self._store_residual(now_ts)
        stored = self.stored
        if stored < main.arrived:
            stored = self._store(now_ts)
        senders = self.senders
        if senders and (stored >= senders[0].need or len(senders) > 1):
            stored = self._send_residual(now_ts)
        need = image * self.n_in + self._need[gi] + 1
        if stored < need:
            arrived = main.arrived
            if arrived >= need:
                return StallCause.SRAM
            if main.upstream_cause is not None:
                return main.upstream_cause
            if arrived + main.in_flight >= need:
                return StallCause.NOC
            return StallCause.DRAM if main.dram_waiting else StallCause.INPUT
        if residual.sources and residual.arrived < image * self.n_out + self._out_need[gi]:
            return StallCause.RESIDUAL
        partial = self.partial
        if partial.sources and partial.arrived < image * self.n_out + self._done[gi]:
            return StallCause.PARTIAL
        count = self._send[gi]
        for port in self.outputs:
            blocked = port.blocked(count)
            if blocked is not None:
                port.register_waiter(self)
                return blocked
        return None

    def _account(self, now_ts: int) -> None:
        """Charge the timesteps since the last mark to the cause in force."""
        if self.started and now_ts > self.mark_ts:
            assert self.cause is not None
            self.probe.stall(self.spec.id, self.spec.layer, self.cause, self.mark_ts, now_ts - self.mark_ts)
            self.mark_ts = now_ts

    def run(self) -> Generator[simpy.Event, object, None]:
        """The controller loop: one iteration per parallel group computed.

        Subscribe to the probe before the run starts: the loop binds its event methods once.
        """
        env, clock, probe = self.env, self.clock, self.probe
        compute_event, stall_event = probe.compute, probe.stall
        cpt = self._cpt
        core_id, layer, n_groups, n_out = self.spec.id, self.spec.layer, self.n_groups, self.n_out
        main, residual, partial, outputs = self.main, self.residual, self.partial, self.outputs
        counts, done_at, origin, send_at, released = self._count, self._done, self._origin, self._send, self._released
        datapath, checked = self.datapath, self.check_invariants
        n_cores = len(self.map.cores)
        read_words, digital_at, res_read, senders = self._read, self._digital, self._res_read, self.senders
        in_w, slot_columns, one_port = self._in_w, self._slot_columns, self.t.sram_ports == 1
        base_mvm, timing_mvm = self.base_mvm_cycles, self.t.mvm_cycles
        if self.weights_ready is not None:
            self.started, self.cause, self.mark_ts = True, StallCause.WEIGHTS, 0
            yield self.weights_ready
        image, gi = divmod(self.group, n_groups)  # the group to compute next: group gi of image
        while self.group < self.total_groups:
            now = int(env.now)
            now_ts = now // cpt
            cause = self._blocked(image, gi, now_ts)
            if not self.started and main.arrived > 0:
                self.started, self.mark_ts = True, now_ts
            if cause is not None:
                if cause != self.cause:
                    self._account(now_ts)
                    self.cause = cause
                self._wake = wake = Event(env)
                yield wake
                continue
            wait = clock.hold_off(now, self.busy_until_ts)
            if wait:
                yield env.timeout(wait)
                continue
            if self.started and now_ts > self.mark_ts:
                self._account(now_ts)
            if checked:
                self._check_step(image, gi, now_ts)
            mvm = timing_mvm if datapath is None else datapath.mvm(layer, image, gi, n_cores)
            # SRAM cycles: this timestep's stores (input pixels, a residual copy), the group's
            # kernel-row reads (Algorithm 2), the residual pixels its adds read (a copy's
            # read-back, or its own input's) and the pixels read_res sent this timestep
            stores = self.store_cycles if self.store_ts == now_ts else 0
            phase = (image * in_w) % slot_columns
            reads = read_words[phase][gi] + res_read[phase][gi]
            for sender in senders:
                reads += sender.take_cycles(now_ts)
            sram = stores + reads if one_port else max(stores, reads)
            cycles = sram + mvm + digital_at[gi]
            self.store_cycles = 0
            (start, wait_cycles, deliver, late, announce, stall, stall_start, stall_timesteps, busy,
             mark) = clock.step(now, sram, cycles, mvm - base_mvm)  # a StepPlan, unpacked once
            if announce is not None:  # the consumers now wait on this core, not the fabric
                for port in outputs:
                    port.announce(announce)
            if stall is not None:
                stall_event(core_id, layer, stall, stall_start, stall_timesteps)
            if wait_cycles:
                yield env.timeout(wait_cycles)
            count = counts[gi]
            row, col = origin[gi]
            compute_event(start, now_ts, core_id, layer, image, done_at[gi] - count, count, cycles, row, col)
            if datapath is not None and self.is_writer:
                datapath.finish(layer, image, gi)
            self.group += 1
            self.done += count
            base = image * n_out
            if residual.sources:
                residual.consume_to(base + released[gi])
            elif self._own_residual:  # its own input's pixels, read for these adds
                self.res_done = image * self.n_in + released[gi]
            if partial.sources:
                partial.consume_to(base + done_at[gi])
            if self.stored < main.arrived:
                self._store(int(env.now) // cpt)
            if residual.arrived > self.res_stored:
                self._store_residual(int(env.now) // cpt)
            if senders and (self.stored >= senders[0].need or len(senders) > 1):
                self._send_residual(int(env.now) // cpt)
            send = send_at[gi]
            if send:
                for port in outputs:
                    port.send(send, deliver, late)
            if gi == n_groups - 1:
                if self.emits_image_done:
                    (self.on_image_done or probe.image_done)(image, -1, deliver // cpt, deliver)
                image, gi = image + 1, 0
            else:
                gi += 1
            self.busy_until_ts = busy
            self.mark_ts = mark
        batch_pixels = self.batch * self.n_in
        while senders and self.owed_to() < batch_pixels:  # read_res of the last pixels
            if self.stored < main.arrived:
                self._store(int(env.now) // cpt)
            self._send_residual(int(env.now) // cpt)
            if self.owed_to() < batch_pixels:
                self._wake = Event(env)
                yield self._wake
        self.cause = None
        # Pixels no window uses (e.g. the odd rows of a stride-2 1 x 1 layer) may still
        # arrive after the last output: accept them so producers are never held up.
        for inport in (main, residual):
            inport.capacity = None
            inport.release()

    # --- invariants -----------------------------------------------------------------------------
    def _check_step(self, image: int, gi: int, timestep: int) -> None:
        """The group about to be computed has all it needs, and nothing it needs was overwritten."""
        if timestep <= self._last_step_ts and self.clock.one_step_per_timestep:
            _fail(f"{self.spec.name}: computed two groups in timestep {timestep} "
                  f"(previous at {self._last_step_ts})")
        self._last_step_ts = timestep
        stored, main = self.stored, self.main
        first = image * self.n_in
        if stored <= first + self._need[gi]:
            self._fail_step(image, gi, f"needs {first + self._need[gi] + 1} stored input pixels, only {stored} "
                            f"stored ({main.arrived} arrived) at timestep {timestep}")
        if stored > main.arrived:
            _fail(f"{self.spec.name}: {stored} input pixels stored but only {main.arrived} arrived")
        # pixel i lives in slot i % slots until pixel i + slots is stored, so the stored
        # window is [stored - slots, stored)
        oldest = first + self._first_input[gi]
        if oldest < stored - self.slots:
            self._fail_step(image, gi, f"needs input pixel {oldest}, overwritten: {stored} stored in "
                            f"{self.slots} slots (H x F) at timestep {timestep}")
        if main.capacity is not None and main.arrived - main.consumed > main.capacity:
            _fail(main.invariant_problems()[0])
        owed = self.owed_to()
        if stored - self.slots > owed:
            _fail(f"{self.spec.name}: input pixel {owed} overwritten before it was read for its residual "
                  f"add ({stored} stored in {self.slots} slots) at timestep {timestep}")
        residual, partial = self.residual, self.partial
        if residual.sources:  # a port without sources holds nothing
            if residual.capacity is not None and residual.arrived - residual.consumed > residual.capacity:
                _fail(residual.invariant_problems()[0])
            if residual.arrived < image * self.n_out + self._out_need[gi]:
                self._fail_step(image, gi, f"needs {image * self.n_out + self._out_need[gi]} residual pixels, "
                                f"{residual.arrived} arrived at timestep {timestep}")
        if partial.sources and partial.arrived < image * self.n_out + self._done[gi]:
            self._fail_step(image, gi, f"needs {image * self.n_out + self._done[gi]} partial sums, "
                            f"{partial.arrived} arrived at timestep {timestep}")

    def _fail_step(self, image: int, gi: int, problem: str) -> None:
        end = self._done[gi]
        _fail(f"{self.spec.name}: group {self.group} (image {image}, outputs {end - self._count[gi]}..{end - 1}) "
              f"{problem}")

    def drained_problems(self, per_image: dict[str, int]) -> list[str]:
        """After the run: every group computed, and each input received exactly what its
        producers emit (`per_image`: pixels per image of each producer)."""
        name, batch = self.spec.name, self.batch
        problems = []
        if self.group != self.total_groups or self.done != batch * self.n_out:
            problems.append(f"{name}: finished {self.group}/{self.total_groups} groups, {self.done} outputs "
                            f"(expected {batch * self.n_out})")
        problems += [f"{name}: read_res sent {sender.done} residual pixels of {sender.total}"
                     for sender in self.senders if sender.done != sender.total]
        for port in (self.main, self.residual, self.partial):
            for src, got in port.counts.items():
                expected = per_image[src] * batch
                if got != expected:
                    problems.append(f"{name}: {port.role} input from {src} received {got} pixels, the producer "
                                    f"emits {per_image[src]} per image x batch {batch} = {expected}")
        return problems


def _fail(message: str) -> None:
    raise SimulationError(f"invariant violated: {message}")
