"""The DRAM models: the banks model's latencies on crafted address streams, derived by hand
from its timing rules (cimsim/hw/dram_banks.py), the address layout, and runs end to end.

Unit cases use DDR3-1600 (tRCD = tCL = tRP = 11 tCK, tBURST = 4 tCK, 64-byte bursts, 8 KB
rows, 8 banks) on an 800 MHz chip clock, so one tCK (1.25 ns) is exactly one chip cycle:
an isolated row hit takes tCL + tBURST = 15 cycles, a miss tRCD + tCL + tBURST = 26, a
conflict tRP + tRCD + tCL + tBURST = 37. With 1 channel, address 8192 k is bank k mod 8,
row k // 8 (row:bank:channel:column).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import simpy

from cimsim.config.load import load_scenario
from cimsim.config.schema import DramConfig
from cimsim.errors import InputError
from cimsim.hw.dram import Dram, DramKind, DramLayout, make_dram
from cimsim.hw.dram_banks import PRESETS, BankedDram, bank_params, bank_problem
from cimsim.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
MESH = ROOT / "scenarios" / "noc_mesh_regular.toml"
DDR3 = PRESETS["ddr3_1600"]
ROW_STRIDE = 8192 * 8  # the next row of the same bank (1 channel)


def _dram(**changes: object) -> tuple[simpy.Environment, BankedDram]:
    env = simpy.Environment()
    return env, BankedDram(env, dataclasses.replace(DDR3, **changes), clock_mhz=800.0)


def _reads(env: simpy.Environment, dram: BankedDram, stream: list[tuple[int, int, int]]) -> list[int]:
    """Issue (time, address, bytes) reads; the latency of each in chip cycles, in stream order."""
    out = [0] * len(stream)

    def one(i: int, t: int, address: int, nbytes: int):  # SimPy generator
        yield env.timeout(t)
        yield dram.read(nbytes, address=address)
        out[i] = int(env.now) - t

    for i, (t, address, nbytes) in enumerate(stream):
        env.process(one(i, t, address, nbytes))
    env.run()
    return out


def test_row_miss_hit_and_conflict_latencies_open_page() -> None:
    env, dram = _dram()
    stream = [(0, 0, 64), (100, 64, 64), (200, ROW_STRIDE, 64), (300, ROW_STRIDE + 128, 8)]
    assert _reads(env, dram, stream) == [11 + 11 + 4, 11 + 4, 11 + 11 + 11 + 4, 11 + 4]
    assert (dram.row_misses, dram.row_hits, dram.row_conflicts) == (1, 2, 1)
    assert dram.read_latency_max == 37 and dram.reads == 4


def test_closed_page_makes_every_isolated_access_a_miss() -> None:
    env, dram = _dram(page_policy="closed")
    stream = [(0, 0, 64), (100, 64, 64), (200, ROW_STRIDE, 64)]
    assert _reads(env, dram, stream) == [26, 26, 26]
    assert (dram.row_misses, dram.row_hits, dram.row_conflicts) == (3, 0, 0)


def test_back_to_back_same_row_open_versus_closed() -> None:
    # open: the second is a hit issued tBURST after the first column command (at 15), its
    # data right after the first's: 26 + 4 = 30. closed: the bank precharges after the first
    # (free at 15 + tRP = 26), then activates again: 26 + 26 = 52.
    env, dram = _dram()
    assert _reads(env, dram, [(0, 0, 64), (0, 64, 64)]) == [26, 30]
    env, dram = _dram(page_policy="closed")
    assert _reads(env, dram, [(0, 0, 64), (0, 64, 64)]) == [26, 52]


def test_two_banks_overlap_one_bank_serialises() -> None:
    # bank 1 activates alongside bank 0; only its data waits for the bus: 26 + 4 = 30.
    env, dram = _dram()
    assert _reads(env, dram, [(0, 0, 64), (0, 8192, 64)]) == [26, 30]
    # same bank, other row: a conflict once the bank is free at 15: 15 + 37 = 52.
    env, dram = _dram()
    assert _reads(env, dram, [(0, 0, 64), (0, ROW_STRIDE, 64)]) == [26, 52]
    # two channels: address 8192 is channel 1, its own bus: both 26.
    env, dram = _dram(channels=2)
    assert _reads(env, dram, [(0, 0, 64), (0, 8192, 64)]) == [26, 26]
    assert dram.banks[1][0].open_row == 0 and dram.banks[0][0].open_row == 0


def test_frfcfs_serves_the_row_hit_first() -> None:
    # A (row 0), B (row 1), C (row 0) at t = 0, all bank 0. FR-FCFS: A at 0 (26), C as a hit
    # at 15 (data 26..30), B a conflict at 19 (19 + 37 = 56). FCFS: B conflicts at 15 (52),
    # C conflicts back at 41 (41 + 37 = 78).
    stream = [(0, 0, 64), (0, ROW_STRIDE, 64), (0, 128, 64)]
    env, dram = _dram()
    assert _reads(env, dram, stream) == [26, 56, 30]
    assert (dram.row_hits, dram.row_misses, dram.row_conflicts) == (1, 1, 1)
    env, dram = _dram(scheduler="fcfs")
    assert _reads(env, dram, stream) == [26, 52, 78]
    assert (dram.row_hits, dram.row_misses, dram.row_conflicts) == (0, 1, 2)


def test_a_long_read_streams_bursts_back_to_back_and_utilisation() -> None:
    # two rows (banks 0 and 1), 256 bursts: data from 22 to 22 + 256 x 4 = 1046, the bus
    # busy 1024 of the 2048 cycles summarised.
    env, dram = _dram()
    assert _reads(env, dram, [(0, 0, 16384)]) == [22 + 256 * 4]
    assert (dram.row_misses, dram.row_hits) == (2, 254)
    s = dram.summary(2048, 0)
    assert s["utilisation"] == 0.5 and s["channel_utilisation"] == [0.5]
    assert s["bytes_transferred"] == 16384 and s["row_hit_rate"] == round(254 / 256, 4)
    assert s["read_latency_ns_avg"] == s["read_latency_ns_max"] == 1046 * 1.25


def test_small_and_unaligned_requests_move_whole_bursts() -> None:
    env, dram = _dram()
    assert _reads(env, dram, [(0, 62, 3)]) == [26 + 4]  # bytes 62..64 straddle two bursts
    assert dram.bursts == 2 and dram.bytes_read == 3


def test_writes_return_events_post_write_creates_none() -> None:
    env, dram = _dram()
    done: list[int] = []

    def writer():  # SimPy generator
        yield dram.write(64, address=0, kind=DramKind.SPILL)
        done.append(int(env.now))

    env.process(writer())
    env.run()
    assert done == [26]
    queued = len(env._queue)
    assert dram.post_write(64, address=64, kind=DramKind.RESULT) is None
    assert len(env._queue) == queued  # served at once, nothing scheduled
    assert dram.written_by_kind[DramKind.SPILL] == 64 and dram.written_by_kind[DramKind.RESULT] == 64
    assert dram.by_kind()["spill"] == {"read": 0, "written": 64}


def test_bandwidth_model_write_event_and_kinds() -> None:
    env = simpy.Environment()
    dram = Dram(env, bytes_per_cycle=8.0, latency_cycles=5)
    ev = dram.write(80, kind=DramKind.WEIGHTS)
    env.run()
    assert ev.processed and env.now == 10
    assert dram.written_by_kind[DramKind.WEIGHTS] == 80


def test_layout_aligns_regions_streams_and_refuses_overflow() -> None:
    layout = DramLayout(capacity_bytes=1 << 20, align=16384)
    images = layout.allocate(DramKind.IMAGE, 100, "images")
    results = layout.allocate(DramKind.RESULT, 10, "results")
    assert (images.base, results.base) == (0, 16384)
    env = simpy.Environment()
    dram = BankedDram(env, DDR3, 800.0, layout=layout)
    assert [dram.stream_address(DramKind.IMAGE, 40) for _ in range(3)] == [0, 40, 0]  # wraps in its region
    assert dram.stream_address(DramKind.RESULT, 4) == 16384
    with pytest.raises(InputError, match=r"dram\.capacity_mib"):
        layout.allocate(DramKind.WEIGHTS, 1 << 20, "weights")


def test_presets_and_validation() -> None:
    lp = bank_params(DramConfig(model="banks", preset="lpddr4_3200"))
    assert (lp.burst_bytes, lp.channel_gbps, lp.tck_ns) == (32, 6.4, 0.625)
    ddr3 = bank_params(DramConfig(model="banks", channels=3))
    assert ddr3.burst_bytes == 64 and ddr3.channel_gbps * ddr3.channels == pytest.approx(38.4)
    assert bank_params(DramConfig(model="banks", t_cl=9)).t_cl == 9  # an explicit key beats the preset
    assert bank_problem(DramConfig(model="banks", preset="none"))[0] == "dram.banks"
    assert bank_problem(DramConfig(model="banks", row_bytes=1000))[0] == "dram.row_bytes"
    assert bank_problem(DramConfig(model="banks", bus_bits=12))[0] == "dram.bus_bits"
    assert bank_problem(DramConfig(model="banks", row_bytes=1 << 20, capacity_mib=4))[0] == "dram.capacity_mib"
    cases = {"dram.row_bytes": ["dram.t_burst=3"],  # 48-byte bursts do not divide 8192
             "dram.preset": ["dram.preset=ddr4"], "dram.t_rcd": ["dram.t_rcd=-1"],
             "dram.channels": ["dram.channels=0"], "dram.t_cl": ["dram.preset=none", *(
                 f"dram.{k}=1" for k in ("banks", "row_bytes", "data_rate_mtps", "bus_bits", "t_rcd"))]}
    for key, sets in cases.items():
        with pytest.raises(InputError, match=key.replace(".", r"\.") + " = "):
            load_scenario(MESH, ["dram.model=banks", *sets])


def test_make_dram_picks_the_model() -> None:
    env = simpy.Environment()
    assert isinstance(make_dram(env, DramConfig(), 500.0), Dram)
    banked = make_dram(env, DramConfig(model="banks", channels=2), 500.0)
    assert isinstance(banked, BankedDram) and banked.layout.align == 2 * 8192


def _banks(*extra: str) -> dict:
    return run_scenario(MESH, ["dram.model=banks", *extra]).summary


def test_banks_model_end_to_end() -> None:
    s = _banks("run.batch=2")
    d = s["dram"]
    assert d["model"] == "banks" and d["bytes_by_kind"]["image"]["read"] == 2 * 32 * 32 * 3
    assert d["bytes_by_kind"]["result"]["written"] == 2 * 10 and d["reads"] > 0
    bursts = d["bytes_transferred"] // d["burst_bytes"]
    assert d["row_hits"] + d["row_misses"] + d["row_conflicts"] == bursts
    assert 0 < d["utilisation"] < 1 and d["row_hit_rate"] > 0.9  # pixels stream through open rows
    assert [r["label"] for r in d["regions"]] == ["images", "results"]
    assert d["read_latency_ns_max"] >= d["read_latency_ns_avg"] > 0
    assert s == _banks("run.batch=2")  # deterministic


def test_a_slow_banks_dram_causes_dram_stalls() -> None:
    fast = _banks("run.batch=2")
    slow = _banks("run.batch=2", "dram.data_rate_mtps=8")  # one 3-byte read costs >= 8 tCK = 2 us
    assert fast["dram"]["stall_timesteps"] <= 1
    assert slow["dram"]["stall_timesteps"] > 100 and slow["total_timesteps"] > fast["total_timesteps"]
    assert sum(lay["stall_timesteps"]["dram"] for lay in slow["layers"]) > 0
    # at 8 MT/s a 64-byte burst holds the bus 8 transfers = 1 us = 10 timesteps: the run is
    # bus-bound, every burst of the batch back to back (within 5 % for the pipeline's fill)
    bursts = slow["dram"]["bytes_transferred"] // slow["dram"]["burst_bytes"]
    assert bursts * 10 <= slow["total_timesteps"] <= bursts * 10 * 1.05
    assert slow["dram"]["utilisation"] > 0.95


def test_the_bandwidth_summary_keeps_its_fields() -> None:
    d = run_scenario(MESH, []).summary["dram"]
    assert set(d) == {"enabled", "bytes_read", "bytes_written", "busy_cycles", "utilisation", "stall_timesteps"}
