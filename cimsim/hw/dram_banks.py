"""`dram.model = "banks"`: a DRAM of channels, banks and row buffers, event-driven.

Address mapping (row:bank:channel:column, from the most to the least significant): the
byte address a splits into column = a mod row_bytes, then channel, then bank, then row, so
consecutive addresses fill one row of one bank of channel 0, the next row_bytes go to the
same bank and row of channel 1, ..., then to the next bank, and only after every bank of
every channel to the next row. A sequential stream therefore stays in an open row for
row_bytes (row hits), and spreads over channels and banks before it conflicts with itself.

A request is cut into bursts (2 x t_burst x bus_bits / 8 bytes, aligned: a request of 3
bytes moves one whole burst), grouped into one access per row it touches; each access
joins the queue of its bank. A bank serves one access at a time, in its scheduler's order
("frfcfs": the oldest access to the open row first, else the oldest; "fcfs": the oldest).
Serving an access of n bursts at time t0 (the later of its arrival and the bank being free):

- row hit (the row is open): column command at t0;
- row miss (the bank has no open row): activate at t0, column command at t0 + tRCD;
- row conflict (another row is open): precharge at t0, activate at t0 + tRP, column
  command at t0 + tRP + tRCD;
- its data takes n x tBURST on the channel's data bus, in the first gap that starts at or
  after column command + tCL (the bus is shared by the channel's banks: two banks overlap
  their activations and column latencies but not their data);
- the bank is free again tBURST after its last column command (data end - tCL); with the
  closed-page policy it precharges then, free tRP later, with no row open.

So an isolated read takes tCL + tBURST (hit), tRCD + tCL + tBURST (miss) or tRP + tRCD +
tCL + tBURST (conflict). A request completes when its last burst's data is on the bus; its
event fires at the first whole chip cycle after that. Times are kept in exact (fractional)
chip cycles; a bank with a queue wakes (one SimPy event) at the first whole cycle after it
is free and serves the access its scheduler picks. An access that finds the queue empty and
that the scheduler would pick anyway (the bank is free; FCFS; FR-FCFS and a hit on the open
row) is scheduled when it arrives, with the same t0. Nothing runs per cycle. Not modelled:
refresh, tRAS / tRC / tRRD / tFAW, the command bus, write recovery and read-write turnaround
(writes use tCL as their latency).
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass, replace

import simpy

from cimsim.config.schema import DramConfig
from cimsim.hw.dram import DramBase, DramKind, DramLayout
from cimsim.sim.probe import Probe


@dataclass(frozen=True)
class BankParams:
    """The banks model's geometry and timing (timing in DRAM clock cycles, tCK)."""

    channels: int
    banks: int
    row_bytes: int
    data_rate_mtps: int
    bus_bits: int
    t_rcd: int
    t_cl: int
    t_rp: int
    t_burst: int
    page_policy: str = "open"
    scheduler: str = "frfcfs"

    @property
    def tck_ns(self) -> float:
        """One DRAM clock in ns (double data rate: two transfers per clock)."""
        return 2000.0 / self.data_rate_mtps

    @property
    def burst_bytes(self) -> int:
        """Bytes one burst moves: 2 transfers per tCK x t_burst x the bus width."""
        return 2 * self.t_burst * self.bus_bits // 8

    @property
    def channel_gbps(self) -> float:
        """Peak bandwidth of one channel in GB/s."""
        return self.data_rate_mtps * self.bus_bits / 8 / 1000


PRESETS: dict[str, BankParams] = {
    # JEDEC DDR3-1600K (JESD79-3 speed bin 11-11-11): tCK 1.25 ns, CL = 11, tRCD = tRP =
    # 13.75 ns = 11 tCK; BL8 = 4 tCK of data (tCCD = 4 nCK); 8 banks; a 64-bit channel of
    # eight x8 devices with 1 KB pages = an 8 KB row; 1600 MT/s x 8 B = 12.8 GB/s (PC3-12800).
    # Meng and Lu's TPU DRAM (Table 3: DDR3, 8 GB, 34 GB/s) is about 2.7 such channels:
    # `dram.channels = 3` (38.4 GB/s) bounds it from above, 2 (25.6) from below.
    "ddr3_1600": BankParams(channels=1, banks=8, row_bytes=8192, data_rate_mtps=1600, bus_bits=64,
                            t_rcd=11, t_cl=11, t_rp=11, t_burst=4),
    # LPDDR4-3200, one x16 channel (JESD209-4; Micron MT53B128M32 datasheet, speed grade -062:
    # tCK 0.625 ns, RL = 28 with DBI off, BL16 = 8 tCK, 8 banks per channel, 10 column bits x
    # 16 bits = 2 KB pages, 6.4 GB/s per channel); tRCD = tRPpb = 18 ns (JESD209-4 minimums,
    # as NXP's DDR tool lists them for 3200 MT/s) = 28.8 -> 29 tCK.
    "lpddr4_3200": BankParams(channels=1, banks=8, row_bytes=2048, data_rate_mtps=3200, bus_bits=16,
                              t_rcd=29, t_cl=28, t_rp=29, t_burst=8),
}
"""Device presets (`dram.preset`); `dram.channels` is the scenario's, never the preset's."""

_PRESET_KEYS = ("banks", "row_bytes", "data_rate_mtps", "bus_bits", "t_rcd", "t_cl", "t_rp", "t_burst")


def bank_problem(cfg: DramConfig) -> tuple[str, object, str] | None:
    """The first inconsistency of a banks-model configuration as (key, value, why), or None."""
    preset = PRESETS.get(cfg.preset)
    if cfg.preset != "none" and preset is None:
        return "dram.preset", cfg.preset, f"unknown preset (known: {', '.join(PRESETS)}, or \"none\")"
    for key in _PRESET_KEYS:
        if getattr(cfg, key) == 0 and preset is None:
            return f"dram.{key}", 0, "must be positive with dram.preset = \"none\" (0 takes the preset's value)"
    p = _resolve(cfg)
    if p.bus_bits % 8:
        return "dram.bus_bits", p.bus_bits, "must be a multiple of 8 (whole bytes per transfer)"
    if p.row_bytes % p.burst_bytes:
        return "dram.row_bytes", p.row_bytes, (f"must be a multiple of the burst, 2 x t_burst {p.t_burst} tCK x "
                                               f"bus_bits {p.bus_bits} / 8 = {p.burst_bytes} bytes")
    stripe = p.row_bytes * p.banks * p.channels
    if (cfg.capacity_mib << 20) < stripe:
        return "dram.capacity_mib", cfg.capacity_mib, (f"smaller than one row in every bank of every channel "
                                                       f"({stripe:,} bytes)")
    return None


def _resolve(cfg: DramConfig) -> BankParams:
    base = PRESETS.get(cfg.preset, PRESETS["ddr3_1600"])
    values = {k: (getattr(cfg, k) or getattr(base, k)) for k in _PRESET_KEYS}
    return replace(base, channels=cfg.channels, page_policy=cfg.page_policy, scheduler=cfg.scheduler, **values)


def bank_params(cfg: DramConfig) -> BankParams:
    """The banks model's parameters: the scenario's keys, 0s filled from `dram.preset`
    (the loader has checked them with `bank_problem`)."""
    problem = bank_problem(cfg)
    assert problem is None, problem
    return _resolve(cfg)


class _Request:
    """One read or write: its accesses still to be served and when its data is done."""

    __slots__ = ("arrival", "done", "event", "pending", "read")

    def __init__(self, arrival: int, read: bool) -> None:
        self.arrival = arrival
        self.read = read
        self.pending = 0
        self.done = 0.0
        self.event: simpy.Event | None = None


class _Access:
    """The bursts of one request in one row of one bank."""

    __slots__ = ("bursts", "request", "row")

    def __init__(self, request: _Request, row: int, bursts: int) -> None:
        self.request = request
        self.row = row
        self.bursts = bursts


class _Bank:
    """One bank: its open row (-1: none), when it can take its next command, its queue."""

    __slots__ = ("free", "open_row", "queue")

    def __init__(self) -> None:
        self.open_row = -1
        self.free = 0.0
        self.queue: list[_Access] = []


class _Bus:
    """A channel's data bus: its reserved intervals [start, end), sorted, adjacent ones merged."""

    __slots__ = ("busy", "slots")

    def __init__(self) -> None:
        self.slots: list[list[float]] = []
        self.busy = 0.0

    def reserve(self, earliest: float, duration: float, now: float) -> float:
        """Reserve `duration` in the first gap starting at or after `earliest`; its start."""
        slots = self.slots
        while slots and slots[0][1] < now - 1:  # nothing can be placed before now - 1 any more
            slots.pop(0)
        t = earliest
        for s, e in slots:
            if e <= t:
                continue
            if s >= t + duration:
                break
            t = e
        self.busy += duration
        end = t + duration
        for slot in slots:  # extend an adjacent interval rather than add one
            if slot[1] == t:
                slot[1] = end
                return t
            if slot[0] == end:
                slot[0] = t
                return t
        insort(slots, [t, end])
        return t


def _succeeder(event: simpy.Event) -> Callable[[simpy.Event], None]:
    """A callback that triggers `event`."""
    def succeed(_timer: simpy.Event) -> None:
        event.succeed()
    return succeed


class BankedDram(DramBase):
    """Channels of banks with row buffers (module docstring: mapping, timing, scheduling)."""

    def __init__(self, env: simpy.Environment, params: BankParams, clock_mhz: float,
                 probe: Probe | None = None, layout: DramLayout | None = None) -> None:
        super().__init__(env, layout or DramLayout(1 << 62, params.row_bytes * params.channels), probe)
        self.params = params
        self.clock_mhz = clock_mhz
        cyc = params.tck_ns * clock_mhz / 1000  # chip cycles per tCK
        self.t_rcd, self.t_cl, self.t_rp, self.t_burst = (v * cyc for v in
                                                           (params.t_rcd, params.t_cl, params.t_rp, params.t_burst))
        self.open_page = params.page_policy == "open"
        self.frfcfs = params.scheduler == "frfcfs"
        self.banks = [[_Bank() for _ in range(params.banks)] for _ in range(params.channels)]
        self.buses = [_Bus() for _ in range(params.channels)]
        self.row_hits = 0
        """Bursts served from an open row."""
        self.row_misses = 0
        """Accesses that activated a row in a bank with none open."""
        self.row_conflicts = 0
        """Accesses that closed another open row first."""
        self.bursts = 0
        self.reads = 0
        self.read_latency_sum = 0.0
        self.read_latency_max = 0.0

    # -- requests

    def read(self, nbytes: int, image: int = -1, *, address: int | None = None,
             kind: DramKind = DramKind.IMAGE) -> simpy.Event:
        """An event that fires when `nbytes` at `address` (None: the kind's stream) are read."""
        self._count(nbytes, image, kind, False)
        event = self._submit(nbytes, address, kind, read=True, wait=True)
        assert event is not None
        return event

    def write(self, nbytes: int, image: int = -1, *, address: int | None = None,
              kind: DramKind = DramKind.RESULT) -> simpy.Event:
        """An event that fires when `nbytes` written at `address` are in the DRAM."""
        self._count(nbytes, image, kind, True)
        event = self._submit(nbytes, address, kind, read=False, wait=True)
        assert event is not None
        return event

    def post_write(self, nbytes: int, image: int = -1, *, address: int | None = None,
                   kind: DramKind = DramKind.RESULT) -> None:
        """A write nothing waits for (no SimPy event, unless a bank must queue it: its wake-up)."""
        self._count(nbytes, image, kind, True)
        self._submit(nbytes, address, kind, read=False, wait=False)

    def _submit(self, nbytes: int, address: int | None, kind: DramKind, read: bool,
                wait: bool) -> simpy.Event | None:
        env = self.env
        nbytes = max(1, nbytes)
        addr = self.stream_address(kind, nbytes) if address is None else address
        req = _Request(int(env.now), read)
        p = self.params
        burst, row_bytes, channels, nbanks = p.burst_bytes, p.row_bytes, p.channels, p.banks
        first, last = addr // burst, (addr + nbytes - 1) // burst
        per_row = row_bytes // burst
        accesses: list[tuple[_Bank, int, _Access]] = []
        b = first
        while b <= last:
            block = b // per_row  # row-sized block of the address space
            n = min(last, (block + 1) * per_row - 1) - b + 1
            rest, ch = divmod(block, channels)
            row, bank_index = divmod(rest, nbanks)
            accesses.append((self.banks[ch][bank_index], ch, _Access(req, row, n)))
            b += n
        req.pending = len(accesses)
        now = env.now
        for bank, channel, acc in accesses:
            if not bank.queue and (bank.free <= now or not self.frfcfs or acc.row == bank.open_row):
                # nothing queued, and the bank is free or its scheduler will pick this one
                # anyway (FCFS; FR-FCFS: a hit, the oldest hit): schedule it now, at its time
                self._serve(bank, channel, acc, max(float(now), bank.free))
            else:
                if not bank.queue:
                    self._wake_at(bank, channel)
                bank.queue.append(acc)
        if not wait:
            return None
        if req.pending == 0:
            return env.timeout(self._fire_delay(req.done))
        req.event = env.event()
        return req.event

    def _fire_delay(self, done: float) -> int:
        return max(0, math.ceil(done - 1e-9) - int(self.env.now))

    def _wake_at(self, bank: _Bank, channel: int) -> None:
        delay = max(0, math.ceil(bank.free - 1e-9) - int(self.env.now))
        self.env.timeout(delay).callbacks.append(self._waker(bank, channel))

    def _waker(self, bank: _Bank, channel: int) -> Callable[[simpy.Event], None]:
        def wake(_event: simpy.Event) -> None:
            queue = bank.queue
            pick = 0
            if self.frfcfs and self.open_page:
                pick = next((i for i, a in enumerate(queue) if a.row == bank.open_row), 0)
            acc = queue.pop(pick)
            self._serve(bank, channel, acc, max(float(acc.request.arrival), bank.free))
            if queue:
                self._wake_at(bank, channel)
        return wake

    # -- timing

    def _serve(self, bank: _Bank, channel: int, acc: _Access, t0: float) -> None:
        """Schedule one access at `t0` (module docstring: the hit, miss and conflict cases)."""
        if bank.open_row == acc.row:
            cas = t0
            self.row_hits += acc.bursts
        elif bank.open_row < 0:
            cas = t0 + self.t_rcd
            self.row_misses += 1
            self.row_hits += acc.bursts - 1
        else:
            cas = t0 + self.t_rp + self.t_rcd
            self.row_conflicts += 1
            self.row_hits += acc.bursts - 1
        self.bursts += acc.bursts
        length = acc.bursts * self.t_burst
        start = self.buses[channel].reserve(cas + self.t_cl, length, float(self.env.now))
        end = start + length
        if self.open_page:
            bank.open_row = acc.row
            bank.free = end - self.t_cl
        else:
            bank.open_row = -1
            bank.free = end - self.t_cl + self.t_rp
        req = acc.request
        req.done = max(req.done, end)
        req.pending -= 1
        if req.pending == 0:
            if req.read:
                latency = req.done - req.arrival
                self.reads += 1
                self.read_latency_sum += latency
                self.read_latency_max = max(self.read_latency_max, latency)
            if req.event is not None:
                self.env.timeout(self._fire_delay(req.done)).callbacks.append(_succeeder(req.event))

    # -- reporting

    def line(self) -> str:
        """One-line state."""
        queued = sum(len(b.queue) for ch in self.banks for b in ch)
        return (f"dram: {self.params.channels} x {self.params.banks} banks, {queued} accesses queued, "
                f"read {self.bytes_read:,} B, written {self.bytes_written:,} B")

    def summary(self, elapsed_cycles: int, stall_timesteps: int) -> dict[str, object]:
        """The `dram` section of the summary for the banks model (README: every field)."""
        p = self.params
        ns = 1000 / self.clock_mhz
        span = max(1, elapsed_cycles)
        accesses = self.row_hits + self.row_misses + self.row_conflicts
        util = [round(bus.busy / span, 4) for bus in self.buses]
        return {
            "enabled": True, "model": "banks", "channels": p.channels, "banks": p.banks, "row_bytes": p.row_bytes,
            "burst_bytes": p.burst_bytes, "page_policy": p.page_policy, "scheduler": p.scheduler,
            "peak_gbps": round(p.channel_gbps * p.channels, 4),
            "bytes_read": self.bytes_read, "bytes_written": self.bytes_written,
            "bytes_by_kind": self.by_kind(), "bytes_transferred": self.bursts * p.burst_bytes,
            "utilisation": round(sum(bus.busy for bus in self.buses) / span / p.channels, 4),
            "channel_utilisation": util,
            "row_hits": self.row_hits, "row_misses": self.row_misses, "row_conflicts": self.row_conflicts,
            "row_hit_rate": round(self.row_hits / accesses, 4) if accesses else None,
            "reads": self.reads,
            "read_latency_ns_avg": round(self.read_latency_sum / self.reads * ns, 3) if self.reads else None,
            "read_latency_ns_max": round(self.read_latency_max * ns, 3) if self.reads else None,
            "regions": self.layout.rows(),
            "stall_timesteps": stall_timesteps,
        }
