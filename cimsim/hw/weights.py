"""Programming the crossbars before a segment runs (`mapping.weights = "reload"`).

Every core's weights are read from DRAM (one read per core, in core order, issued at once: they
queue on the channel with the image or spill stream) and, once they have arrived, written into
its crossbar: the larger of its rows x the device's row write time and its weight bits over
`chip.weight_write_bits_per_cycle`. A core computes only after its crossbar is programmed (the
`weights` stall); a core without weights (a digital stage) is ready at once. Every device
written is one `crossbar.program` action (energy, when the run counts actions).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence

import simpy

from cimsim.config.schema import ChipConfig
from cimsim.energy.actions import Action, Component
from cimsim.hw.core import Core
from cimsim.hw.dram import DramBase, DramKind
from cimsim.sim.probe import Probe

ROW_WRITE_NS: dict[str, int] = {"rram": 100, "pcm": 50}
"""Device write time per row in ns: Meng & Lu 2024, Table 5 (write time: RRAM 100 ns, PCRAM
~50 ns; data collected from their refs [29]-[31]). One pulse programs a row's devices in parallel."""


def row_write_cycles(chip: ChipConfig) -> int:
    """Cycles to program one crossbar row."""
    ns = chip.weight_write_ns_per_row or ROW_WRITE_NS[chip.weight_device]
    return math.ceil(ns * chip.clock_mhz / 1000)


class WeightProgrammer:
    """Reads and programs every core's weights; fires each core's `weights_ready`."""

    def __init__(self, env: simpy.Environment, chip: ChipConfig, dram: DramBase, cores: Sequence[Core], bits: int,
                 probe: Probe | None = None) -> None:
        self.env = env
        self.probe = probe
        """Where each core's `crossbar.program` actions go (one per device written; None: nowhere)."""
        self.row_cycles = row_write_cycles(chip)
        self.bits_per_cycle = chip.weight_write_bits_per_cycle
        self.bits = bits
        self.bytes_read = 0
        self.done_cycle = 0
        """Cycle the last core's crossbar was programmed."""
        ordered = sorted(cores, key=lambda c: c.spec.id)
        total = sum(self.core_bytes(c) for c in ordered)
        region = dram.layout.allocate(DramKind.WEIGHTS, max(1, total), "weights")
        self.addresses: dict[int, int] = {}
        """Core id -> address of its weights (laid out one core after another)."""
        at = region.base
        for core in ordered:
            self.addresses[core.spec.id] = at
            at += self.core_bytes(core)
            core.weights_ready = env.event()
            env.process(self._program(dram, core))

    def core_bytes(self, core: Core) -> int:
        """Bytes of weights one core holds (every used device one weight of `bits` bits)."""
        return -(-core.spec.rows_used * core.spec.cols_used * self.bits // 8)

    def program_cycles(self, core: Core) -> int:
        """Cycles to write the core's weights once they are on the chip."""
        nbytes = self.core_bytes(core)
        return max(core.spec.rows_used * self.row_cycles, -(-nbytes * 8 // self.bits_per_cycle))

    def _program(self, dram: DramBase, core: Core) -> Generator[simpy.Event, object, None]:
        nbytes = self.core_bytes(core)
        ready = core.weights_ready
        assert ready is not None
        if nbytes:
            self.bytes_read += nbytes
            yield dram.read(nbytes, address=self.addresses[core.spec.id], kind=DramKind.WEIGHTS)
            yield self.env.timeout(self.program_cycles(core))
            if self.probe is not None:
                self.probe.action(-1, core.spec.layer, Component.CROSSBAR, Action.PROGRAM, 0,
                                  core.spec.rows_used * core.spec.cols_used, False)
        self.done_cycle = max(self.done_cycle, int(self.env.now))
        ready.succeed()
