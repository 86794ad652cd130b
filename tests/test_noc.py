"""NoC routers, topologies, Eq. 7 and DRAM (issue 4)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import simpy

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.errors import MappingError
from cimsim.hw.noc import Noc, Packet
from cimsim.mapping import map_network, topology
from cimsim.network import load_model
from cimsim.runner import run_scenario
from cimsim.sim.probe import Probe

ROOT = Path(__file__).resolve().parent.parent
REGULAR = ROOT / "scenarios/dazzi2021_resnet32.toml"
SPEEDUP = ROOT / "scenarios/dazzi2021_resnet32_speedup.toml"


def _noc(rows: int, cols: int, *, width: int = 32, link: int = 1, router: int = 2, depth: int = 8,
         header: int = 0) -> tuple[simpy.Environment, Noc]:
    env = simpy.Environment()
    return env, Noc(env, topology.mesh(rows, cols), width, link, router, depth, header, Probe())


def _send(env: simpy.Environment, noc: Noc, src: tuple[int, int], dst: tuple[int, int], bits: int,
          log: list, tag: object) -> None:
    route = tuple(topology.xy_route(noc.graph, src, dst))
    noc.inject(Packet(noc.flits(bits), route, lambda _pkt: log.append((tag, env.now)), str(tag)))


def test_idle_mesh_arrival_is_hops_times_latency_plus_serialisation() -> None:
    env, noc = _noc(3, 4, width=32, link=1, router=2)
    log: list = []
    _send(env, noc, (0, 0), (2, 3), 32 * 5, log, "p")  # 5 flits
    env.run()
    # XY route (0,0) (0,1) (0,2) (0,3) (1,3) (2,3): 6 routers, each adds router + link
    # cycles before the head reaches the next one (the last: the core); the tail follows
    # 5 - 1 cycles behind the head.
    hops, per_hop, flits = 6, 2 + 1, 5
    assert log == [("p", hops * per_hop + flits - 1)]


def test_two_flows_sharing_a_link_take_turns_and_both_finish() -> None:
    env, noc = _noc(1, 3, width=16, router=1, depth=16)
    log: list = []
    # (0,0) -> (0,2) and (0,1) -> (0,2) share the link (0,1)->(0,2); inject 6 packets each
    for i in range(6):
        _send(env, noc, (0, 0), (0, 2), 16 * 4, log, ("a", i))
        _send(env, noc, (0, 1), (0, 2), 16 * 4, log, ("b", i))
    env.run()
    flows = [tag[0] for tag, _ in log]
    assert sorted(flows) == ["a"] * 6 + ["b"] * 6
    # round robin: once both compete, they alternate on the shared link
    shared = flows[1:-1]
    assert all(x != y for x, y in itertools.pairwise(shared)), flows
    assert [i for (f, i), _ in log if f == "a"] == list(range(6))  # in order within a flow


def test_buffers_never_exceed_depth_and_no_packet_is_lost_or_duplicated() -> None:
    env, noc = _noc(4, 4, width=8, router=1, depth=6)
    log: list = []
    tags = []
    for i in range(30):
        for src in ((0, 0), (3, 0), (0, 3)):
            dst = (3, 3) if src != (3, 3) else (0, 0)
            tag = (src, i)
            tags.append(tag)
            _send(env, noc, src, dst, 8 * 3, log, tag)
    env.run()
    assert sorted(t for t, _ in log) == sorted(tags)
    stats = noc.links()
    assert max(s.peak_buffer_flits for s in stats) <= 6
    assert max(s.peak_buffer_flits for s in stats) > 3  # the buffers did fill up
    for r in noc.routers.values():
        for buf in r.inputs.values():
            assert buf.reserved == 0 and not buf.queue


def _set(*pairs: str) -> list[str]:
    return list(pairs)


@pytest.mark.parametrize("scenario", [REGULAR, SPEEDUP])
def test_prism_with_wide_links_equals_the_ideal_fabric(scenario: Path) -> None:
    ideal = run_scenario(scenario).summary
    prism = run_scenario(scenario, _set("noc.topology=prism", "noc.link_width_bits=64")).summary
    assert prism["latency_timesteps"] == ideal["latency_timesteps"]
    assert all(sum(lay["stall_timesteps"].values()) == sum(ref["stall_timesteps"].values())
               for lay, ref in zip(prism["layers"], ideal["layers"], strict=False))


def test_eq7_peak_link_need_is_4_48_gbit_per_s_on_the_stage3_links() -> None:
    s = run_scenario(REGULAR, _set("noc.topology=prism")).summary
    assert s["noc"]["eq7_peak_gbps"] == pytest.approx(4.48)
    flows = s["noc"]["eq7_flows"]
    assert flows and all(f.split(" -> ")[0].startswith(("conv2", "conv3", "rs2")) for f in flows)
    assert any("conv23" in f for f in flows)
    # on the prism every such flow has a link of its own: the per-link peak is Eq. 7's
    assert s["noc"]["peak_link_need_gbps"] == pytest.approx(4.48)


def test_mesh_link_below_eq7_stalls_and_a_wider_one_does_not() -> None:
    ideal = run_scenario(REGULAR).summary
    # Eq. 7: 448 bits per 50-cycle timestep = 8.96 bits per cycle on the prism's links
    narrow = run_scenario(REGULAR, _set("noc.topology=prism", "noc.link_width_bits=8")).summary
    wide = run_scenario(REGULAR, _set("noc.topology=prism", "noc.link_width_bits=16")).summary
    # since split layers' row parts get only their channel share, the flows at Eq. 7's peak are the
    # 56-channel partial sums into the merging cores: the narrow links delay them (partial stalls
    # grow). With read_res the link from a block's first core to its adding core carries two packets
    # per timestep, its output and the residual pixel (stage 2: 2 x (224 + 16) bits): 16-bit links
    # deliver both within the timestep (10-bit ones did before read_res; now they are 48 cycles
    # of flits plus the hops, and the stage-2 adders wait: `noc` stalls, README)
    partial = [sum(lay["stall_timesteps"]["partial"] for lay in s["layers"]) for s in (narrow, wide)]
    noc_stalls = [sum(lay["stall_timesteps"]["noc"] for lay in s["layers"]) for s in (narrow, wide)]
    assert partial[0] > partial[1] and narrow["latency_timesteps"] > ideal["latency_timesteps"]
    assert noc_stalls[1] == 0 and wide["latency_timesteps"] == ideal["latency_timesteps"]


def test_prism_edge_that_is_not_a_link_is_a_mapping_error() -> None:
    scenario = load_scenario(REGULAR, _set("noc.topology=prism", "noc.prism_k=1"))
    # read_res: every residual runs from a block's first core to its neighbour, the adding core;
    # the first edge that skips a core is conv11's output around rs1 to conv12
    with pytest.raises(MappingError, match=r"main edge from 'conv11' .* to 'conv12' .* not a link"):
        map_network(load_model(scenario.model), scenario)
    copy = load_scenario(REGULAR, _set("noc.topology=prism", "noc.prism_k=1", "mapping.residual_source=adder_copy"))
    with pytest.raises(MappingError, match=r"residual edge from 'conv1' .* to 'conv3' .* not a link"):
        map_network(load_model(copy.model), copy)


def test_mesh_routes_every_edge() -> None:
    scenario = load_scenario(REGULAR, _set("noc.topology=mesh"))
    plan = map_network(load_model(scenario.model), scenario)
    assert plan.flows and all(len(f.route) >= 2 for f in plan.flows)


def test_elastic_mesh_with_routers_runs_resnet32(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(REGULAR), "--set", "chip.clocking=elastic", "--set", "noc.topology=mesh",
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    links = s["noc"]["links"]
    assert links and max(lk.get("peak_buffer_flits", 0) for lk in links) <= 16
    assert sum(lk.get("packets", 0) for lk in links) > 0


def test_buffer_smaller_than_a_packet_is_refused() -> None:
    scenario = load_scenario(REGULAR, _set("chip.clocking=elastic", "noc.topology=mesh", "noc.buffer_depth_flits=2"))
    with pytest.raises(MappingError, match="buffer_depth_flits = 2"):
        map_network(load_model(scenario.model), scenario)


def test_dram_too_slow_for_the_input_stream_lowers_throughput_to_its_rate() -> None:
    # regular dataflow: 3 bytes per pixel per 100 ns timestep = 0.03 GB/s needed
    fast = run_scenario(REGULAR, _set("dram.enabled=true", "dram.bandwidth_gbps=12.8", "run.batch=3")).summary
    slow = run_scenario(REGULAR, _set("dram.enabled=true", "dram.bandwidth_gbps=0.015", "run.batch=3")).summary
    assert fast["throughput_images_per_s"] == pytest.approx(3 / ((1630 + 2 * 1024) * 100e-9), rel=0.01)
    # 0.015 GB/s = 3 bytes per 200 ns: one pixel every two timesteps
    interval = slow["image_interval_timesteps"]
    assert interval == pytest.approx(2048, rel=0.01)  # image done times also carry the pipeline tail
    assert slow["dram"]["stall_timesteps"] > 0
    assert sum(lay["stall_timesteps"]["dram"] for lay in slow["layers"]) > 0
