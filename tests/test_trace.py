"""Tests of HDF5 traces and what is made from them: schema round trip, `report` == `run --json`,
interrupted runs, trace levels, the Perfetto export, plots and the progress bar."""

from __future__ import annotations

import io
import itertools
import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest
import simpy

import cimsim.trace as tracelib
from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.config.load import scenario_to_dict
from cimsim.hw.chip import build_chip
from cimsim.mapping import map_network
from cimsim.network import load_model
from cimsim.report import make_report
from cimsim.report.progress import ProgressBar
from cimsim.runner import run_scenario
from cimsim.trace.schema import EVENT_DTYPE, KINDS, SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
REGULAR = REPO / "scenarios" / "dazzi2021_resnet32.toml"

# conv -> conv -> add (residual) -> strided conv -> pool -> fc: residual and stride stalls.
SMALL_MODEL = """\
name = "small_res"
bits = 8

[input]
height = 8
width = 8
channels = 3

[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 8
kernel = 3
padding = 1
relu = true

[[layers]]
name = "conv2"
type = "conv"
input = "conv1"
out_channels = 8
kernel = 3
padding = 1

[[layers]]
name = "add1"
type = "add"
inputs = ["conv2", "conv1"]

[[layers]]
name = "conv3"
type = "conv"
input = "add1"
out_channels = 16
kernel = 3
stride = 2
padding = 1
relu = true

[[layers]]
name = "pool"
type = "avgpool"
input = "conv3"

[[layers]]
name = "fc"
type = "fc"
input = "pool"
out_features = 10
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scenario of a small residual CNN (fast to simulate)."""
    d = tmp_path_factory.mktemp("small")
    (d / "small.toml").write_text(SMALL_MODEL)
    path = d / "small_scenario.toml"
    path.write_text('model = "small.toml"\nname = "small"\n\n[run]\nbatch = 3\n')
    return path


@pytest.fixture(scope="module")
def traced(small: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A traced run of the small scenario: (trace path, its summary)."""
    path = tmp_path_factory.mktemp("traced") / "small.h5"
    report = run_scenario(small, trace=path)
    return path, report.summary


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- the schema ------------------------------------------------------------------------------


def test_schema_round_trip(small: Path, traced: tuple[Path, dict]) -> None:
    path, summary = traced
    assert not list(path.parent.glob("*partial"))
    scenario = load_scenario(small)
    report = run_scenario(small)
    with tracelib.open(path) as tr:
        assert tr.schema_version == SCHEMA_VERSION and tr.level == "events"
        assert tr.kind_names[:len(KINDS)] == KINDS
        assert tr.cause_names[0] == ""
        assert tr.scenario == json.loads(json.dumps(scenario_to_dict(scenario)))
        assert tr.model_toml == SMALL_MODEL
        assert tr.plan == report.record.plan
        assert tr.summary == summary == report.summary
        ev = tr.events
        assert ev.dtype == EVENT_DTYPE and len(ev) == summary["events"] == tr.n_events
        kinds = np.array(tr.kind_names)[ev["kind"]]
        # every compute event of a core is one active timestep; stalls add up per cause
        for core in report.record.cores:
            mine = ev[ev["core"] == core.id]
            assert (kinds[ev["core"] == core.id] == "compute").sum() == core.active_timesteps
            stalls: dict[str, int] = defaultdict(int)
            for row in mine[kinds[ev["core"] == core.id] == "stall"]:
                stalls[tr.cause_names[row["cause"]]] += int(row["count"])
            assert stalls == {k: v for k, v in core.stall_timesteps.items() if v}
        done = ev[kinds == "image_done"]
        assert sorted(done["image"].tolist()) == [0, 1, 2]
        assert done["timestep"].tolist() == report.record.image_done_ts
        layers = tr.mapping["layers"]
        assert layers["name"].tolist() == list(report.record.plan.layers)
        assert layers["pixels"].tolist() == [lay["pixels"] for lay in summary["layers"]]
        cores = tr.mapping["cores"]
        assert [(int(r), int(c)) for r, c in zip(cores["pos_row"], cores["pos_col"], strict=True)] == [
            c.position for c in report.record.plan.cores]
        assert len(tr.mapping["edges"]) == len(report.record.plan.edges)
        assert tr.summary_layers["active_timesteps"].tolist() == [lay["active_timesteps"] for lay in summary["layers"]]
        assert tr.run["image_start_timestep"].tolist() == report.record.image_start_ts
        assert tr.n_links == 0 and len(tr.links) == 0
    # readable with plain h5py: chunked, compressed, complete
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"] and f.attrs["schema_version"] == SCHEMA_VERSION
        assert f["events"].compression == "gzip" and f["events"].chunks is not None
        assert f["events"].maxshape == (None,)
        assert json.loads(f["summary"].attrs["json"]) == summary


def test_blocks_do_not_change_the_records(small: Path, traced: tuple[Path, dict], tmp_path: Path) -> None:
    """The writer appends fixed-size blocks: a tiny block gives the same records."""
    scenario = load_scenario(small)
    net = load_model(scenario.model)
    plan = map_network(net, scenario)
    with tracelib.TraceWriter(tmp_path / "b.h5", scenario, net, plan, block_events=7) as writer:
        chip = build_chip(simpy.Environment(), scenario, net, plan, [writer])
        record = chip.run()
        assert writer._ev.size == 7  # the buffer never grows
        writer.finish(record, make_report(record))
    with tracelib.open(tmp_path / "b.h5") as a, tracelib.open(traced[0]) as b:
        assert np.array_equal(a.events, b.events)


# --- report == run --json ---------------------------------------------------------------------


def test_report_equals_run_json(capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    code, run_out, _ = _cli(capsys, ["run", str(small), "--json", "--trace", str(path), "--set", "run.batch=4"])
    assert code == 0
    code, rep_out, err = _cli(capsys, ["report", str(path), "--json"])
    assert code == 0 and rep_out == run_out and "warning" not in err
    code, csv_out, _ = _cli(capsys, ["report", str(path), "--csv"])
    lines = csv_out.splitlines()
    assert code == 0 and lines[0].startswith("name,cores,") and len(lines) == 1 + len(json.loads(run_out)["layers"])
    code, table, _ = _cli(capsys, ["report", str(path)])
    assert code == 0 and "latency" in table and "events replayed" in table


def test_report_replays_the_events(capsys: pytest.CaptureFixture[str], traced: tuple[Path, dict],
                                   tmp_path: Path) -> None:
    """The numbers come from the event records, not from the stored summary."""
    path = _copy(traced[0], tmp_path / "tampered.h5")
    with h5py.File(path, "a") as f:
        f["summary"].attrs["json"] = json.dumps({**traced[1], "latency_timesteps": -5}, indent=2)
    code, out, err = _cli(capsys, ["report", str(path), "--json"])
    assert code == 0 and json.loads(out) == traced[1] and "differs" in err


def test_report_equals_run_json_resnet32(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    code, run_out, _ = _cli(capsys, ["run", str(REGULAR), "--json", "--trace", str(path)])
    assert code == 0
    code, rep_out, _ = _cli(capsys, ["report", str(path), "--json"])
    assert code == 0 and rep_out == run_out
    assert json.loads(rep_out)["latency_timesteps"] == json.loads(run_out)["latency_timesteps"]


# --- where traces go, and levels --------------------------------------------------------------


def test_default_trace_path_and_no_trace(capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = _cli(capsys, ["run", str(small), "--json", "--no-trace"])
    assert code == 0 and not (tmp_path / "traces").exists() and list(tmp_path.iterdir()) == []
    code, out, err = _cli(capsys, ["run", str(small)])
    assert code == 0 and (tmp_path / "traces" / "small.h5").is_file()
    assert out.splitlines()[-1].startswith("trace: traces/small.h5 (") and err == ""
    code, out, _ = _cli(capsys, ["run", str(small), "--json"])
    assert code == 0 and "trace" not in json.loads(out)
    code, _, err = _cli(capsys, ["run", str(small), "--no-trace", "--trace", "x.h5"])
    assert code == 2 and "--no-trace" in err


def test_summary_level(capsys: pytest.CaptureFixture[str], small: Path, tmp_path: Path) -> None:
    path = tmp_path / "sum.h5"
    code, run_out, _ = _cli(capsys, ["run", str(small), "--json", "--trace", str(path), "--trace-level", "summary"])
    assert code == 0
    with tracelib.open(path) as tr:
        assert tr.level == "summary" and tr.n_events == 0 and len(tr.events) == 0
        assert len(tr.mapping["cores"]) == json.loads(run_out)["cores"]
        assert len(tr.summary_layers) == len(json.loads(run_out)["layers"])
    code, rep_out, _ = _cli(capsys, ["report", str(path), "--json"])
    assert code == 0 and rep_out == run_out
    pytest.importorskip("matplotlib")
    code, _, err = _cli(capsys, ["plot", str(path), "--kind", "progress", "-o", str(tmp_path / "p.png")])
    assert code == 2 and "--trace-level events" in err
    assert _cli(capsys, ["plot", str(path), "--kind", "stalls", "-o", str(tmp_path / "s.png")])[0] == 0


# --- refusing what is not a complete trace ----------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


@pytest.mark.parametrize(("attr", "value", "fragment"), [
    ("complete", False, "incomplete trace"),
    ("schema_version", 99, "schema version 99 is not supported"),
    ("format", "something", "not a cimsim trace"),
])
def test_reader_refuses(capsys: pytest.CaptureFixture[str], traced: tuple[Path, dict], tmp_path: Path,
                        attr: str, value: object, fragment: str) -> None:
    path = _copy(traced[0], tmp_path / "bad.h5")
    with h5py.File(path, "a") as f:
        f.attrs[attr] = value
    with pytest.raises(tracelib.TraceError, match=fragment):
        tracelib.open(path)
    for argv in (["report", str(path), "--json"], ["export", str(path), "--perfetto", str(tmp_path / "x.json")]):
        code, out, err = _cli(capsys, argv)
        assert code == 2 and out == "" and fragment in err and len(err.strip().splitlines()) == 1


def test_reader_refuses_missing_and_partial(capsys: pytest.CaptureFixture[str], traced: tuple[Path, dict],
                                            tmp_path: Path) -> None:
    _copy(traced[0], tmp_path / "run.h5.1234.partial")
    code, _, err = _cli(capsys, ["report", str(tmp_path / "run.h5")])
    assert code == 2 and "run.h5.1234.partial" in err and "not finished" in err
    (tmp_path / "junk.h5").write_text("not hdf5")
    code, _, err = _cli(capsys, ["report", str(tmp_path / "junk.h5")])
    assert code == 2 and "not an HDF5 file" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_killed_run_leaves_no_complete_trace(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-m", "cimsim", "run", str(REGULAR), "--batch", "50", "--trace",
                             str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / f"killed.h5.{proc.pid}.partial"
    deadline = time.monotonic() + 120  # generous: a loaded machine starts the interpreter slowly
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert partial.exists(), "the run did not start writing its trace"
    time.sleep(0.5)  # well inside the ~8 s run
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert not path.exists()
    assert not partial.exists()  # removed by the writer; at worst it would be left under this name
    with pytest.raises(tracelib.TraceError, match="not found"):
        tracelib.open(path)
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in err


# --- Perfetto ---------------------------------------------------------------------------------


def test_perfetto_export(capsys: pytest.CaptureFixture[str], traced: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    code, _, err = _cli(capsys, ["export", str(traced[0]), "--perfetto", str(out)])
    assert code == 0 and "ui.perfetto.dev" in err
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    assert {e["ph"] for e in events} <= {"M", "X", "i"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    with tracelib.open(traced[0]) as tr:
        cores = tr.mapping["cores"]
        n_compute = int((tr.events["kind"] == tr.kind_names.index("compute")).sum())
    core_tracks = [name for name in threads.values() if "(core " in name and not name.endswith(" stalls")]
    stall_tracks = [name for name in threads.values() if name.endswith(" stalls")]
    assert len(core_tracks) == len(cores) == len(set(core_tracks)) == len(stall_tracks)
    slices = [e for e in events if e["ph"] == "X"]
    assert sum(e["cat"] == "compute" for e in slices) == n_compute
    by_track: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in slices:
        assert (e["pid"], e["tid"]) in threads and e["dur"] >= 0 and e["ts"] >= 0
        by_track[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_track.values():  # slices on one track never overlap (they need not nest)
        spans.sort()
        assert all(b[0] >= a[1] - 1e-9 for a, b in itertools.pairwise(spans))


# --- plots ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["progress", "occupancy", "stalls"])
def test_plot_kinds(capsys: pytest.CaptureFixture[str], traced: tuple[Path, dict], tmp_path: Path,
                    kind: str) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / f"{kind}.png"
    code, _, err = _cli(capsys, ["plot", str(traced[0]), "--kind", kind, "-o", str(out)])
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_links(capsys: pytest.CaptureFixture[str], small: Path, traced: tuple[Path, dict],
                    tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    code, _, err = _cli(capsys, ["plot", str(traced[0]), "--kind", "links", "-o", str(tmp_path / "none.png")])
    assert code == 2 and "no NoC link events" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none.png").exists()
    # link records written through the probe interface are plotted on the core array
    scenario = load_scenario(small)
    net = load_model(scenario.model)
    plan = map_network(net, scenario)
    path = tmp_path / "links.h5"
    with tracelib.TraceWriter(path, scenario, net, plan) as writer:
        chip = build_chip(simpy.Environment(), scenario, net, plan, [writer])
        record = chip.run()
        chip.probe.link(10, "r0.0->r0.1", plan.cores[0].name, 3, 3)
        chip.probe.link(20, "r0.1->r0.0", "dram", 2, 2)
        chip.probe.link(30, "r0.1->core", plan.cores[1].name, 1, 1)
        writer.finish(record, make_report(record))
    with tracelib.open(path) as tr:
        assert tr.link_names == ("r0.0->r0.1", "r0.1->r0.0", "r0.1->core")
        assert tr.links["source"].tolist() == [plan.cores[0].id, -1, plan.cores[1].id]
    out = tmp_path / "links.png"
    assert _cli(capsys, ["plot", str(path), "--kind", "links", "-o", str(out)])[0] == 0 and out.is_file()
    code, _, _ = _cli(capsys, ["export", str(path), "--perfetto", str(tmp_path / "l.json")])
    doc = json.loads((tmp_path / "l.json").read_text())
    assert code == 0 and sum(e.get("cat") == "link" for e in doc["traceEvents"]) == 3


def test_plot_without_matplotlib(capsys: pytest.CaptureFixture[str], traced: tuple[Path, dict], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = _cli(capsys, ["plot", str(traced[0]), "--kind", "progress", "-o", str(tmp_path / "p.png")])
    assert code == 2 and "cimsim[plot]" in err and len(err.strip().splitlines()) == 1


# --- progress bar -----------------------------------------------------------------------------


def test_progress_bar() -> None:
    assert not ProgressBar.wanted(io.StringIO(), quiet=False)
    stream = io.StringIO()
    bar = ProgressBar(batch=2, stream=stream, delay_s=0.0, every_s=0.0)
    bar.image_done(0, 0, 40, 2000)
    assert "images 1/2" in stream.getvalue() and "timestep 40" in stream.getvalue()
    bar.close()
    assert stream.getvalue().endswith("\r")
    quiet = io.StringIO()
    late = ProgressBar(batch=2, stream=quiet, delay_s=60.0)
    late.image_done(0, 0, 40, 2000)
    late.close()
    assert quiet.getvalue() == ""
