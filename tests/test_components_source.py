"""The image source, the DRAM channel and the functional datapath alone (issue 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simpy
from harness import TestSink, random_delay, run_until

from cimsim.config import load_scenario
from cimsim.errors import SimulationError
from cimsim.functional.crossbar import CrossbarConfig
from cimsim.hw.chip import layer_geometry
from cimsim.hw.datapath import Datapath
from cimsim.hw.dram import Dram
from cimsim.hw.fabric import IdealFabric
from cimsim.hw.ports import OutputPort
from cimsim.hw.source import ImageSource
from cimsim.mapping import map_network
from cimsim.network import load_model
from cimsim.sim.probe import Probe

CPT = 10

# --- image source -------------------------------------------------------------------------------


def _source(sinks: list[TestSink], *, batch: int, pixels: int, rate: int, dram: Dram | None = None,
            pixel_bytes: int = 0, prefetch: int = 4) -> ImageSource:
    env = sinks[0].env
    ports = [OutputPort(env, "src", s.port, IdealFabric(env, CPT, 0, 0)) for s in sinks]
    return ImageSource(env, ports, batch, pixels, rate, CPT, Probe(), dram, pixel_bytes, prefetch)


def _emits(sink: TestSink) -> list[tuple[int, int]]:
    """(cycle, pixels) of each delivery the sink saw."""
    out: dict[int, int] = {}
    for c in sink.arrivals:
        out[c] = out.get(c, 0) + 1
    return sorted(out.items())


def test_source_emits_rate_pixels_per_timestep_never_splitting_an_image() -> None:
    env = simpy.Environment()
    sink = TestSink(env)
    src = _source([sink], batch=2, pixels=7, rate=3)
    run_until(env, lambda: src.finished, 100 * CPT)
    # 7 pixels at 3 per timestep: groups of 3, 3, 1 per image, one group per timestep
    assert _emits(sink) == [(0, 3), (10, 3), (20, 1), (30, 3), (40, 3), (50, 1)]
    assert src.image_start_ts == [0, 3] and src.stall_timesteps == 0 and src.last_emit_cycle == 50
    assert src.line() == "source: sent 14/14 pixels"
    assert all(p.drained_problems() == [] for p in src.outputs)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_source_under_random_back_pressure_counts_its_stall_timesteps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    sink = TestSink(env, capacity=int(rng.integers(3, 6)), delay=random_delay(rng, 0, 2 * CPT))
    src = _source([sink], batch=3, pixels=7, rate=3)
    run_until(env, lambda: src.finished and sink.port.consumed == 21, 1000 * CPT)
    assert len(sink.arrivals) == src.sent == 21 and sink.held_max <= sink.port.capacity
    groups = 3 * 3
    assert src.stall_timesteps > 0
    # one group per timestep, plus one timestep per stall
    assert src.last_emit_cycle == (groups - 1 + src.stall_timesteps) * CPT
    assert all(c % CPT == 0 for c in sink.arrivals)  # emissions only at timestep boundaries
    assert len(src.image_start_ts) == 3 and src.image_start_ts == sorted(src.image_start_ts)


def test_source_feeding_two_consumers_waits_for_the_slower_one() -> None:
    rng = np.random.default_rng(9)
    env = simpy.Environment()
    fast = TestSink(env, capacity=2, name="fast")
    slow = TestSink(env, capacity=2, delay=random_delay(rng, CPT, 4 * CPT), name="slow")
    src = _source([fast, slow], batch=2, pixels=5, rate=2)
    run_until(env, lambda: src.finished, 1000 * CPT)
    assert fast.arrivals == slow.arrivals and len(fast.arrivals) == 10  # every group to both, together
    assert src.stall_timesteps > 0 and slow.held_max <= 2


def test_source_from_a_slow_dram_waits_for_each_read() -> None:
    env = simpy.Environment()
    sink = TestSink(env)
    dram = Dram(env, bytes_per_cycle=0.5, latency_cycles=5)
    src = _source([sink], batch=1, pixels=8, rate=2, dram=dram, pixel_bytes=4)
    run_until(env, lambda: src.finished, 100 * CPT)
    # 4 reads of 8 bytes take 16 cycles each on the channel, issued at 0: done at 16, 32,
    # 48, 64 + 5 latency = 21, 37, 53, 69. The source emits at the first timestep boundary
    # after each: 30, 40; at 50 the third is not there (53): 60; then 70.
    assert _emits(sink) == [(30, 2), (40, 2), (60, 2), (70, 2)]
    assert src.dram_stall_timesteps == 3 + 1 and src.stall_timesteps == 3 + 1  # timesteps 0-2, and 5
    assert sink.saw_dram_waiting and not sink.port.dram_waiting
    assert dram.bytes_read == 32 and dram.busy_cycles == 64


@pytest.mark.parametrize(("prefetch", "emits"), [(1, [30, 60, 90, 120]), (4, [30, 40, 50, 60])])
def test_source_prefetch_hides_dram_latency(prefetch: int, emits: list[int]) -> None:
    env = simpy.Environment()
    sink = TestSink(env)
    dram = Dram(env, bytes_per_cycle=8, latency_cycles=25)  # 1 cycle per read, 25 cycles of latency
    src = _source([sink], batch=1, pixels=8, rate=2, dram=dram, pixel_bytes=4, prefetch=prefetch)
    run_until(env, lambda: src.finished, 100 * CPT)
    # prefetch 1: each read is issued when the previous group leaves (30, 60, 90), done 26
    # cycles later; prefetch 4: all four issued at 0, done at 26, 27, 28, 29
    assert [c for c, _ in _emits(sink)] == emits
    assert src.dram_stall_timesteps == (3 + 2 + 2 + 2 if prefetch == 1 else 3)


# --- DRAM ---------------------------------------------------------------------------------------


def test_dram_reads_complete_after_their_bytes_and_latency_and_writes_occupy_the_channel() -> None:
    env = simpy.Environment()
    dram = Dram(env, bytes_per_cycle=2.0, latency_cycles=7)
    done: dict[str, int] = {}

    def at(name: str):  # type: ignore[no-untyped-def]
        return lambda _e: done.setdefault(name, int(env.now))

    dram.read(10).callbacks.append(at("a"))  # channel 0-5, + 7: 12
    dram.write(4)  # channel 5-7, nothing waits
    dram.read(3).callbacks.append(at("b"))  # channel 7-8.5, + 7 = 15.5: complete at 16
    env.run(until=100)
    dram.read(1).callbacks.append(at("c"))  # idle channel: 100-100.5, + 7: 108
    env.run()
    assert done == {"a": 12, "b": 16, "c": 108}
    assert (dram.bytes_read, dram.bytes_written, dram.busy_cycles) == (14, 4, 9.0)


# --- datapath -----------------------------------------------------------------------------------

TWO_CONVS = """
name = "two_convs"
[input]
height = 4
width = 4
channels = 4
[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 4
kernel = 3
padding = 1
relu = true
[[layers]]
name = "conv2"
type = "conv"
input = "conv1"
out_channels = 4
kernel = 3
padding = 1
"""


def _datapath(tmp_path: Path, policy: str = "off", mode: str = "batched") -> Datapath:
    (tmp_path / "m.toml").write_text(TWO_CONVS)
    (tmp_path / "s.toml").write_text(f"""
model = "m.toml"
[chip]
crossbar_rows = 64
crossbar_cols = 64
[functional]
enabled = true
policy = "{policy}"
mode = "{mode}"
crossbar_cycle_cycles = 2
""")
    scenario = load_scenario(tmp_path / "s.toml")
    net = load_model(scenario.model)
    plan = map_network(net, scenario)
    return Datapath(net, plan, scenario, {n: layer_geometry(net, plan, n) for n in plan.layers})


@pytest.mark.parametrize("policy", ["off", "always", "on_failure"])
def test_datapath_mvm_returns_the_crossbar_cycles_of_the_policy(tmp_path: Path, policy: str) -> None:
    dp = _datapath(tmp_path, policy)
    cfg = CrossbarConfig(rows=64, cols=64, policy=policy)
    base = {"off": cfg.recovery_cycles, "always": cfg.max_cycles, "on_failure": cfg.speculative_cycles}[policy]
    assert dp.base_mvm_cycles == base * 2
    cycles = dp.mvm("conv1", 0, 0, 1)
    assert cycles in ({base * 2} if policy != "on_failure" else {base * 2, cfg.max_cycles * 2})
    assert dp.group_cycles["conv1"] == [cycles // 2]


@pytest.mark.parametrize("mode", ["batched", "per_group"])
def test_datapath_refuses_a_window_its_producer_has_not_written(tmp_path: Path, mode: str) -> None:
    dp = _datapath(tmp_path, mode=mode)
    with pytest.raises(SimulationError, match="conv2 read image 0 of 'conv1' before it was produced"):
        dp.mvm("conv2", 0, 0, 1)
    geom = dp.geoms["conv1"]
    dp.mvm("conv1", 0, 0, 1)
    dp.finish("conv1", 0, 0)  # only output (0, 0) of conv1 exists
    with pytest.raises(SimulationError, match="read input pixels of 'conv1' that were not produced yet"):
        dp.mvm("conv2", 0, 0, 1)  # its window needs conv1 rows 0-1, columns 0-1
    for g in range(1, 8):  # conv1's columns 0 and 1
        dp.mvm("conv1", 0, g, 1)
        dp.finish("conv1", 0, g)
    assert dp.mvm("conv2", 0, 0, 1) == 16
    dp.finish("conv2", 0, 0)
    for g in range(8, geom.n_groups):
        dp.mvm("conv1", 0, g, 1)
        dp.finish("conv1", 0, g)
    for g in range(1, dp.geoms["conv2"].n_groups):
        dp.mvm("conv2", 0, g, 1)
        dp.finish("conv2", 0, g)
    s = dp.summary()
    assert s["reference_match"] and s["images_checked"] == 1 and s["mismatching_values"] == 0
    assert s["output_values"] == 4 * 4 * 4
    assert not dp.pending and ("conv1", 0) not in dp.act  # consumed and freed


def test_datapath_group_shared_by_cores_is_computed_once(tmp_path: Path) -> None:
    dp = _datapath(tmp_path)
    assert dp.mvm("conv1", 0, 0, 2) == dp.mvm("conv1", 0, 0, 2) == 16
    assert len(dp.group_cycles["conv1"]) == 1
    dp.finish("conv1", 0, 0)
    assert not dp.pending
