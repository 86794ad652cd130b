"""The pure helpers of `tools/bench.py --compare` (tools/bench_compare.py) on tiny cases; no timings asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import simpy

from cimsim.config import load_scenario
from cimsim.hw.chip import build_chip
from cimsim.mapping import map_network
from cimsim.network import load_model
from cimsim.report import make_report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import bench_compare  # tools/ is not a package: found through sys.path

# Input 8 x 8 x 3 -> conv1 8 x 8 x 8 -> conv2 4 x 4 x 8 with the avgpool and the FC fused into
# conv2's digital processor: the only flows are input -> conv1 and conv1 -> conv2.
from harness import TINY_MODEL

# A 1 x 2 mesh with the DRAM port at router (0, 0); 64-bit links, 16-bit headers.
TINY_MESH = """\
model = "tiny.toml"
name = "tiny_mesh"

[chip]
array_rows = 1
array_cols = 2
clocking = "elastic"

[noc]
topology = "mesh"
link_width_bits = 64
header_bits = 16
dram_row = 0
dram_col = 0

[dram]
enabled = true
"""


def _scenario(tmp_path: Path, text: str, batch: int):
    (tmp_path / "tiny.toml").write_text(TINY_MODEL)
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return load_scenario(path, [f"run.batch={batch}"])


def test_pipeline_hops_and_events() -> None:
    res = bench_compare.simpy_pipeline(items=50, stages=43)
    assert res.item_hops == 50 * 42  # 42 stores between 43 stages, every item crosses each once
    assert res.cpu_s > 0 and res.cpu_per_hop > 0
    # every item-hop is at least a put and a get event
    assert res.events >= 2 * res.item_hops


def test_processed_events_counts_what_ran() -> None:
    env = simpy.Environment()
    for delay in (1, 2, 3):
        env.timeout(delay)
    env.run(until=2.5)  # the 1 and 2 timeouts and the `until` event ran; the 3 timeout is still queued
    assert bench_compare.processed_events(env) == 3


def test_ideal_pixel_hops_hand_derived(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, 'model = "tiny.toml"\nname = "tiny"\n', batch=3)
    net = load_model(sc.model)
    plan = map_network(net, sc)
    assert [(f.src_layer, f.dst_layer) for f in plan.flows] == [("input", "conv1"), ("conv1", "conv2")]
    # input -> conv1: 8 x 8 image pixels; conv1 -> conv2: 8 x 8 conv1 pixels; per image, 3 images
    assert bench_compare.ideal_pixel_hops(net, plan, sc.run.batch) == (64 + 64) * 3


def test_link_pixel_hops_hand_derived(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, TINY_MESH, batch=2)
    net = load_model(sc.model)
    plan = map_network(net, sc)
    positions = {c.layer: c.position for c in plan.cores}
    assert positions == {"conv1": (0, 0), "conv2": (0, 1)}
    # one packet per pixel (24 or 64 payload bits + 16 header bits fit 2 flits). Input pixels:
    # dram->r0.0, r0.0->core; conv1 pixels: r0.0->r0.1, r0.1->core. 64 pixels each per image.
    summary = make_report(build_chip(simpy.Environment(), sc, net, plan).run()).summary
    assert bench_compare.link_pixel_hops(summary) == (4 * 64 * 2, 2 * 64 * 2)
    # every pixel delivered to a consumer is one ejection
    assert bench_compare.ideal_pixel_hops(net, plan, 2) == 2 * 64 * 2


def test_link_pixel_hops_none_on_ideal_fabric() -> None:
    summary = json.loads((REPO / "tests" / "golden" / "dazzi2021_resnet32.json").read_text())
    assert bench_compare.link_pixel_hops(summary) is None


def test_child_refuses_another_trees_cimsim(tmp_path: Path) -> None:
    spec = {"kind": "scenario", "tree": str(tmp_path), "scenario": "x.toml", "overrides": []}
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "--compare-child", json.dumps(spec)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("cimsim: error: child imported ")


def _fake_run(cpu: float) -> dict[str, object]:
    return {"cpu_s": cpu, "wall_s": cpu, "simpy_events": 120, "probe_events": 1, "simulated_cycles": 1,
            "ideal_pixel_hops": 10, "link_pixel_hops": 40, "link_pixel_hops_no_ejection": 30, "summary_sha": "s"}


def test_derived_figures_of_given_runs() -> None:
    """The parent's arithmetic on made-up child results (medians, ratios, per-hop figures)."""
    scenarios = []
    for key in ("regular", "speedup", "mesh_elastic"):
        old = bench_compare._stats([_fake_run(3.0), _fake_run(1.0), _fake_run(2.0)])
        new = bench_compare._stats([_fake_run(1.0), _fake_run(1.5), _fake_run(0.5)])
        scenarios.append({"key": key, "label": key, "overrides": ["run.batch=3"], "old": old, "new": new,
                          "cpu_ratio_old_new": old["median_cpu_s"] / new["median_cpu_s"],
                          "min_cpu_ratio_old_new": old["min_cpu_s"] / new["min_cpu_s"], "summaries_identical": True})
    pipe = bench_compare._stats([{"cpu_s": 0.5, "item_hops": 100, "simpy_events": 200}])
    result = {"old": {"rev": "X", "commit": "a"}, "new": {"commit": "b", "uncommitted_changes": False},
              "repeats": 3, "quick": True, "scenarios": scenarios, "pipeline": dict(pipe, stages=43, items=1)}
    bench_compare._derived(result)
    mesh = scenarios[2]["new"]
    assert scenarios[0]["old"]["median_cpu_s"] == 2.0 and scenarios[0]["cpu_ratio_old_new"] == 2.0
    assert (mesh["events_per_pixel_hop"], mesh["events_per_pixel_hop_no_ejection"],
            mesh["events_per_pixel_hop_ideal"]) == (3.0, 4.0, 12.0)
    assert result["pipeline"]["cpu_s_per_item_hop"] == 0.005
    assert result["overhead"]["old_cpu_s_per_pixel_hop"] == 0.2  # 2.0 s over 10 pixel-hops
    assert result["overhead"]["old_ratio_to_bare_simpy"] == 40.0
    assert "old/new" in bench_compare.compare_table(result)
