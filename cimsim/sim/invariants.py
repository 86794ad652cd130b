"""Run-time invariants of the dataflow, checked by a probe subscriber.

Attach an `InvariantChecker` to a built chip before running it::

    checker = InvariantChecker(chip)
    chip.probe.subscribers.append(checker)
    chip.run()
    checker.finish()

On every compute event it checks, on the core that computed, that the group is the
next one in order, that every input pixel of the group's windows is stored and not yet
overwritten in the circular H x F buffer, and that the residual and partial-sum inputs
of the group's outputs are present. `finish()` checks that every pixel sent was
delivered and that every consumer received exactly its producers' pixels. A violation
raises `SimulationError` with a one-line message naming the core and the numbers.
The per-event checks are a few integer comparisons, so a checked run costs little more
than an unchecked one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cimsim.errors import SimulationError

if TYPE_CHECKING:
    from cimsim.hw.chip import Chip


class InvariantChecker:
    """Probe subscriber that checks a chip's dataflow invariants while it runs."""

    def __init__(self, chip: Chip) -> None:
        self.chip = chip
        self.cores = chip.cores
        self.elastic = chip.scenario.chip.clocking == "elastic"
        self.last_ts: dict[int, int] = {}
        self.computes = 0
        self.images_done: set[int] = set()

    # --- probe interface ------------------------------------------------------------------------
    def compute(self, cycle: int, timestep: int, core: int, layer: str, image: int, first: int, count: int,
                cycles: int, row: int = 0, col: int = 0) -> None:
        """Check the group about to be delivered by `core` (its `group` is not advanced yet)."""
        self.computes += 1
        c = self.cores[core]
        g = c.geom
        name = c.spec.name
        n_groups = g.n_groups
        exp_image, gi = divmod(c.group, n_groups)
        end = int(g.group_done[gi])
        start = end - int(g.group_count[gi])
        if image != exp_image or first != start or count != end - start:
            self._fail(f"{name}: computed image {image} outputs {first}..{first + count - 1}, expected the next "
                       f"group {c.group} = image {exp_image} outputs {start}..{end - 1}")
        if not self.elastic:
            prev = self.last_ts.get(core, -1)
            if timestep <= prev:
                self._fail(f"{name}: computed two groups in timestep {timestep} (previous at {prev})")
            self.last_ts[core] = timestep
        # Inputs: the newest pixel the group's windows need has been stored...
        need = image * g.n_in + int(g.group_need[gi]) + 1
        if c.stored < need:
            self._fail(f"{name}: group {c.group} (image {image}, outputs {start}..{end - 1}) needs {need} stored "
                       f"input pixels, only {c.stored} stored ({c.main.arrived} arrived) at timestep {timestep}")
        if c.stored > c.main.arrived:
            self._fail(f"{name}: {c.stored} input pixels stored but only {c.main.arrived} arrived")
        # ...and the oldest one has not been overwritten: pixel i lives in slot i % slots
        # until pixel i + slots is stored, so the stored window is [stored - slots, stored).
        oldest = image * g.n_in + int(g.group_first_input[gi])
        if oldest < c.stored - c.slots:
            self._fail(f"{name}: group {c.group} (image {image}, outputs {start}..{end - 1}) needs input pixel "
                       f"{oldest}, overwritten: {c.stored} stored in {c.slots} slots (H x F) at timestep {timestep}")
        for port in (c.main, c.residual):
            if port.capacity is not None and port.arrived - port.consumed > port.capacity:
                self._fail(f"{name}: {port.role} buffer holds {port.arrived - port.consumed} pixels, "
                           f"capacity {port.capacity}")
        out_end = image * g.n_out + end
        res_end = image * g.n_out + int(g.group_out_need[gi])
        if c.residual.sources and c.residual.arrived < res_end:
            self._fail(f"{name}: group {c.group} needs {res_end} residual pixels, {c.residual.arrived} arrived "
                       f"at timestep {timestep}")
        if c.partial.sources and c.partial.arrived < out_end:
            self._fail(f"{name}: group {c.group} needs {out_end} partial sums, {c.partial.arrived} arrived "
                       f"at timestep {timestep}")

    def stall(self, core: int, layer: str, cause: str, start_timestep: int, timesteps: int) -> None:
        """Stalls are not checked."""

    def image_done(self, image: int, start_timestep: int, done_timestep: int, cycle: int) -> None:
        """Each image completes exactly once."""
        if image in self.images_done:
            self._fail(f"image {image} completed twice (again at timestep {done_timestep})")
        self.images_done.add(image)

    # --- end of run -----------------------------------------------------------------------------
    def finish(self) -> None:
        """Check the conservation of pixels after `chip.run()` returned."""
        chip = self.chip
        batch = chip.batch
        for port in [*chip.ports, *chip.source.outputs]:
            got = port.target.counts[port.source]
            if port.sent != got or port.in_flight:
                self._fail(f"port {port.source} -> {port.target.role} of {self._owner(port.target)}: sent "
                           f"{port.sent}, delivered {got}, in flight {port.in_flight}")
        per_image = {chip.plan.input_name: chip.net.input_layer.out_h * chip.net.input_layer.out_w}
        for c in self.cores.values():
            per_image[c.spec.name] = 1 if c.pooled else c.geom.n_out
        for c in self.cores.values():
            name = c.spec.name
            if c.group != c.total_groups or c.done != batch * c.geom.n_out:
                self._fail(f"{name}: finished {c.group}/{c.total_groups} groups, {c.done} outputs "
                           f"(expected {batch * c.geom.n_out})")
            for port in (c.main, c.residual, c.partial):
                for src, got in port.counts.items():
                    expected = per_image[src] * batch
                    if got != expected:
                        self._fail(f"{name}: {port.role} input from {src} received {got} pixels, the producer "
                                   f"emits {per_image[src]} per image x batch {batch} = {expected}")
        noc = getattr(chip, "noc", None)
        if noc is not None and hasattr(noc, "routers"):
            for router in noc.routers.values():
                for port, buf in router.inputs.items():
                    if buf.queue or buf.reserved:
                        self._fail(f"router {router.node} input {port}: {len(buf.queue)} packets, {buf.reserved} "
                                   "flits still held after the run (flits not conserved)")
                    if buf.capacity is not None and buf.stats is not None and buf.stats.peak_buffer_flits > buf.capacity:
                        self._fail(f"router {router.node} input {port}: {buf.stats.peak_buffer_flits} flits, "
                                   f"depth {buf.capacity}")
        if len(self.images_done) != batch:
            self._fail(f"{len(self.images_done)} images completed, batch is {batch}")

    # --- helpers --------------------------------------------------------------------------------
    def _owner(self, port: object) -> str:
        owner = getattr(port, "owner", None)
        spec = getattr(owner, "spec", None)
        return spec.name if spec is not None else "?"

    @staticmethod
    def _fail(message: str) -> None:
        raise SimulationError(f"invariant violated: {message}")
