"""Weight reloading (`mapping.weights = "reload"`): segments, programming from DRAM, spills."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.mapping import map_network
from cimsim.mapping.segments import cut_points, plan_segments
from cimsim.network import load_model
from cimsim.runner import run_scenario

REPO = Path(__file__).resolve().parents[1]
RESNET = REPO / "scenarios" / "dazzi2021_resnet32.toml"
MLP = """name = "mlp"
bits = 8
[input]
height = 1
width = 1
channels = 64
[[layers]]
name = "fc1"
type = "fc"
input = "input"
out_features = 64
relu = true
[[layers]]
name = "fc2"
type = "fc"
input = "fc1"
out_features = 10
"""
ONE_CORE = """model = "model.toml"
[chip]
array_rows = 1
array_cols = 1
[mapping]
fc_on = "crossbar"
weights = "reload"
[dram]
enabled = true
bandwidth_gbps = 1.0
latency_ns = 50.0
"""


def one_core(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "model.toml").write_text(MLP)
    path = tmp_path / "s.toml"
    path.write_text(ONE_CORE + extra)
    return path


def test_hand_derived_reloading_run(tmp_path: Path) -> None:
    """An MLP 64-64-10 with each fc on a crossbar, on a one-core chip: two segments. DRAM 1 GB/s
    at 500 MHz = 2 bytes per cycle, 50 ns = 25 cycles latency; RRAM rows at 100 ns = 50 cycles.
    Segment 0: fc1's 64 x 64 = 4,096 weight bytes are read first (the programmer's request is
    queued before the image's): cycles 0-2,048, delivered at 2,073; programming takes
    max(64 rows x 50, 32,768 bits / 256) = 3,200 cycles, so the crossbar is ready at 5,273 (106
    timesteps, ceil). The image's 64 bytes follow on the channel (2,048-2,080, delivered at
    2,105, emitted at timestep 43). fc1 computes at 5,273 (within its timestep, 1 timestep) and
    its 64 output bytes are written at 5,273-5,305: the segment ends in timestep 107.
    Segment 1 (fc2, 640 bytes of weights): read 0-320, delivered at 345, programmed at
    345 + max(3,200, 20) = 3,545 (71 timesteps); its spilled input and the 10-byte result fit in
    between: done at 3,550, 71 timesteps. Run: 107 + 71 = 178 timesteps; image 0 from timestep 43
    to 107 + 70 = 177: latency 135."""
    report = run_scenario(one_core(tmp_path))
    s = report.summary
    assert s["weights"] == "reload" and s["total_timesteps"] == 178 and s["latency_timesteps"] == 135
    seg0, seg1 = s["segments"]
    assert (seg0["start_timestep"], seg0["timesteps"], seg0["programming_timesteps"]) == (0, 107, 106)
    assert (seg1["start_timestep"], seg1["timesteps"], seg1["programming_timesteps"]) == (107, 71, 71)
    assert seg0["dram_bytes"] == {"weights": 4096, "input": 64, "output": 64}
    assert seg1["dram_bytes"] == {"weights": 640, "input": 64, "output": 10}
    assert seg0["stall_timesteps"]["weights"] == 105 and seg1["stall_timesteps"]["weights"] == 70


def test_pcm_rows_program_faster(tmp_path: Path) -> None:
    """PCM rows at 50 ns = 25 cycles: programming 64 x 25 = 1,600 cycles instead of 3,200."""
    rram = run_scenario(one_core(tmp_path)).summary
    pcm = run_scenario(one_core(tmp_path), ["chip.weight_device=pcm"]).summary
    assert pcm["segments"][0]["programming_timesteps"] == -(-(2073 + 1600) // 50)
    assert pcm["total_timesteps"] < rram["total_timesteps"]


def test_resnet32_on_a_4x4_array_reloads_in_segments_that_conserve_pixels() -> None:
    """ResNet-32 (42 cores) on 16 cores: segments cut after blocks (single live tensor); each fits;
    every layer in exactly one segment; what a segment spills is exactly what the next reads."""
    overrides = ["mapping.weights=reload", "chip.array_rows=4", "chip.array_cols=4", "dram.enabled=true",
                 "run.batch=2"]
    scenario = load_scenario(RESNET, overrides)
    net = load_model(scenario.model)
    segments = plan_segments(net, scenario)
    assert len(segments) >= 3 and all(seg.cores <= 16 for seg in segments)
    layers = [name for seg in segments for name in seg.layers]
    assert layers == [layer.name for layer in net.layers[1:]]
    cuts = set(cut_points(net, scenario))
    assert all(seg.output in cuts for seg in segments[:-1])
    report = run_scenario(RESNET, overrides)  # each segment's drain checks run (run.check_invariants)
    rows = report.summary["segments"]
    for before, after in itertools.pairwise(rows):
        tensor = net.layer(before["output"])
        spill = tensor.out_h * tensor.out_w * tensor.out_channels * 2
        assert before["dram_bytes"]["output"] == after["dram_bytes"]["input"] == spill
        assert after["start_timestep"] == before["start_timestep"] + before["timesteps"]
    assert report.summary["total_timesteps"] == sum(r["timesteps"] for r in rows)
    assert sum(r["dram_bytes"]["weights"] for r in rows) == sum(
        c.rows_used * c.cols_used for seg in segments for c in map_network(seg.network, scenario).cores)


def test_reload_traces_one_file_per_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "run.h5"
    assert main(["run", str(one_core(tmp_path)), "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "run.segment0.h5").exists() and (tmp_path / "run.segment1.h5").exists()
    assert not trace.exists() and out.count("trace: ") == 2


@pytest.mark.parametrize(("extra", "fragment"), [
    ("", "mapping.weights"),  # stationary: the array is too small
])
def test_stationary_refuses_what_reload_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
                                             fragment: str) -> None:
    path = one_core(tmp_path)
    path.write_text(ONE_CORE.replace('weights = "reload"', 'weights = "stationary"'))
    assert main(["run", str(path), "--no-trace"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "the mapping needs 2 cores" in err and fragment in err


@pytest.mark.parametrize(("overrides", "fragment"), [
    (["dram.enabled=false"], "dram.enabled = true"),
    (["chip.crossbar_rows=32"], "alone needs 2 cores"),  # fc1's 64 rows on 32-row crossbars: 2 cores > 1
    (["chip.weight_device=flash"], "chip.weight_device"),
])
def test_bad_reloading_runs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str],
                                         fragment: str) -> None:
    argv = ["run", str(one_core(tmp_path)), "--no-trace"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("cimsim: error: ") and fragment in err, err


DIGITS = REPO / "scenarios" / "digits_cnn.toml"


def test_reloading_never_changes_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digits CNN (three crossbar stages) on a one-core chip runs in three segments, each
    reading the map the previous one spilled; with column noise, split-sign inputs and adaptive
    slicing on, every output value equals the stationary run's, and so do the accuracy, the noise
    statistics and every layer's crossbar counters."""
    from cimsim.hw import datapath

    seen: dict[bool, dict[tuple[int, str], np.ndarray]] = {True: {}, False: {}}
    check = datapath.Datapath._check

    def spy(self: datapath.Datapath, image: int, chip_out: np.ndarray, name: str) -> None:
        seen[self.values is None][(image, name)] = chip_out.copy()
        check(self, image, chip_out, name)

    monkeypatch.setattr(datapath.Datapath, "_check", spy)
    common = ["run.batch=40", "dram.enabled=true", "noise.column_sigma=0.06", "functional.adc_bits=7",
              "functional.policy=on_failure", "functional.input_encoding=split_sign",
              "functional.weight_slicing=adaptive"]
    stationary = run_scenario(DIGITS, common).summary["functional"]
    reload = run_scenario(DIGITS, [*common, "mapping.weights=reload", "chip.array_rows=1", "chip.array_cols=1"])
    f = reload.summary["functional"]
    assert len(reload.summary["segments"]) == 3 and len(f["segments"]) == 3
    assert stationary["noise"]["mismatch_fraction"] > 0  # the noise reaches the outputs
    outputs = [k for k in seen[False] if k[1] == "fc"]
    assert len(outputs) == 40 and all(np.array_equal(seen[False][k], seen[True][k]) for k in outputs)
    assert len(seen[False]) == 3 * 40  # every segment's map checked (two spills, the logits)
    for key in ("accuracy", "noise", "totals", "layers", "slicings", "split_sign_layers", "macs",
                "adc_converts_per_mac", "speculation_success", "mismatching_values", "max_abs_error"):
        assert f[key] == stationary[key], key


def test_reloading_energy_is_the_segments_plus_programming(tmp_path: Path) -> None:
    """Energy of the one-core MLP run: the two segments' sections summed, programming charged as
    one crossbar.program per device (64 x 64 + 64 x 10), the MVMs charged as on a chip that holds
    both layers."""
    energy = ["energy.enabled=true", "energy.table=dazzi2021_14nm"]
    report = run_scenario(one_core(tmp_path), energy)
    e = report.summary["energy"]
    parts = [r.summary["energy"] for r in report.segments]
    assert e["energy_J"] == pytest.approx(sum(p["energy_J"] for p in parts))
    assert [r["energy_J"] for r in report.summary["segments"]] == [p["energy_J"] for p in parts]
    program = e["by_action"]["crossbar.program"]
    assert program["count"] == 64 * 64 + 64 * 10
    assert program["energy_J"] == pytest.approx((64 * 64 + 64 * 10) * 1.0e-11)
    wide = run_scenario(one_core(tmp_path), [*energy, "chip.array_cols=2"]).summary["energy"]
    assert "crossbar.program" not in wide["by_action"]
    mvms = {k: v for k, v in e["by_action"].items() if k.startswith("crossbar.mvm")}
    assert mvms and mvms == {k: v for k, v in wide["by_action"].items() if k.startswith("crossbar.mvm")}
    assert e["cycles"] == sum(p["cycles"] for p in parts) and e["images"] == 1


def test_an_energy_table_without_programming_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cimsim.energy.table import BUILTIN_DIR

    text = (REPO / "cimsim" / "energy" / BUILTIN_DIR / "dazzi2021_14nm.toml").read_text()
    (tmp_path / "t.toml").write_text(text.replace("program.energy_J = 1.0e-11", ""))
    argv = ["run", str(one_core(tmp_path)), "--no-trace", "--set", "energy.enabled=true", "--set",
            f"energy.table={tmp_path / 't.toml'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "crossbar.program" in err, err


def test_reload_is_not_used_when_the_network_fits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = one_core(tmp_path)
    assert main(["run", str(path), "--no-trace", "--json", "--set", "chip.array_cols=2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "segments" not in summary and summary["cores"] == 2


def test_roofline_points_follow_the_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each point is its batch's run: 2 x MACs x batch over the run's seconds, against MACs per
    weight byte read x batch; reloading reads the weights once per batch, so the intensity
    grows with the batch, and the programming is amortised: TOPS grow with it."""
    path = one_core(tmp_path)
    plot = tmp_path / "roof.png"
    assert main(["roofline", str(path), "--batch", "1,4,16", "--json", "-o", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    macs = 64 * 64 + 64 * 10
    assert result["macs_per_image"] == macs and result["weight_bytes"] == macs
    points = result["points"]
    for p in points:
        summary = run_scenario(path, [f"run.batch={p['batch']}"]).summary
        seconds = summary["simulated_cycles"] / 500e6
        assert p["tops"] == pytest.approx(2 * macs * p["batch"] / seconds / 1e12)
        assert p["intensity_macs_per_byte"] == pytest.approx(macs * p["batch"] / macs)
        assert p["tops"] <= p["roofline_tops"]
    assert points[0]["tops"] < points[1]["tops"] < points[2]["tops"]
    assert plot.stat().st_size > 0


@pytest.mark.parametrize("batches", ["", "0,1", "a,b", ",".join(["1"] * 2 + [str(i) for i in range(2, 70)])])
def test_roofline_bad_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str], batches: str) -> None:
    assert main(["roofline", str(one_core(tmp_path)), "--batch", batches]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--batch" in err


def test_roofline_reference_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--reference-roof` draws another machine's roofline over the same DRAM: 1 GB/s is 0.002 TOPS per
    MAC per byte; this MLP has one MAC per weight byte, so at batch b its intensity is b and a 0.01 TOPS
    machine is DRAM-bound up to its ridge at 5 MACs per byte (batch 5), compute-bound from there; the
    simulated chip's own roofline is unchanged."""
    path = one_core(tmp_path)
    plot = tmp_path / "roof.png"
    assert main(["roofline", str(path), "--batch", "1,4,16", "--json", "--reference-roof", "0.01",
                 "-o", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    ref = result["reference"]
    assert ref["compute_roof_tops"] == 0.01
    assert ref["ridge_intensity_macs_per_byte"] == pytest.approx(5) and ref["ridge_batch"] == pytest.approx(5)
    assert [p["reference_tops"] for p in result["points"]] == pytest.approx([0.002, 0.008, 0.01])
    assert result["compute_roof_tops"] == pytest.approx(256 * 256 * 2 / 100e-9 / 1e12)
    assert plot.stat().st_size > 0
    assert main(["roofline", str(path), "--batch", "1", "--reference-roof", "-1"]) == 2
