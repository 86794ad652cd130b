"""Energy in the HDF5 trace (issue 13): action counts per core (schema 3), the energy per
time bin behind `cimsim plot --kind power`, and schema-2 traces, which store the counts
per layer, still read.

Expected values come from the run's own outputs (its `--json` summary, its compute events,
its mapping) and the hand table's numbers read with tomllib, never typed in.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from test_energy_run import TABLE, scenario

import cimsim.trace as tracelib
from cimsim.cli import main
from cimsim.energy import ActionCounts
from cimsim.trace import writer as writer_module
from cimsim.trace.reader import TraceError
from cimsim.trace.schema import ENERGY_COUNT_DTYPE, SCHEMA_VERSION

VARIANTS = {
    "ideal": {},
    "mesh_elastic_dram": {"noc": "mesh", "clocking": "elastic", "dram": True},
    "functional": {"functional": True},
}


def traced(tmp_path: Path, capsys: pytest.CaptureFixture[str], batch: int = 3, level: str = "events",
           **variant: Any) -> tuple[Path, dict[str, Any]]:
    """Run the tiny energy scenario with a trace: (trace path, the `--json` summary)."""
    h5 = tmp_path / "t.h5"
    assert main(["run", str(scenario(tmp_path, **variant)), "--json", "--batch", str(batch), "--trace", str(h5),
                 "--trace-level", level]) == 0
    return h5, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_counts_per_core_sum_to_the_per_layer_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      variant: str) -> None:
    h5, summary = traced(tmp_path, capsys, **VARIANTS[variant])
    run_counts = ActionCounts.from_dict(summary["energy"]["counts"])
    with tracelib.open(h5) as tr:
        assert tr.schema_version == SCHEMA_VERSION == 3
        by_core = tr.energy_core_counts
        assert by_core is not None
        cores = {int(c["id"]): str(tr.layer_names[c["layer"]]) for c in tr.mapping["cores"]}
        assert set(by_core) - {-1} == set(cores)
        summed = ActionCounts()
        for counts in by_core.values():
            summed.merge(counts)
        assert summed.counts == run_counts.counts  # per-layer totals = the sum over cores
        assert tr.energy_counts == run_counts  # and the reader gives back the summary's counts
        active = {int(r["id"]): int(r["active_timesteps"]) for r in tr.run["cores"]}
        input_name = str(tr.file["mapping"].attrs["input_name"])
        for core, layer in cores.items():
            mine = by_core[core]
            # every step of a core is one MVM on its own crossbar: the counts really are per core
            assert mine.total("crossbar", "mvm") == active[core] > 0
            assert {lay for lay, *_ in mine.counts} <= {layer, input_name}
        events = by_core.get(-1, ActionCounts())
        if variant == "functional":  # the datapath counts a layer's crossbars together: no core
            assert events.total("adc", "convert") == summary["functional"]["totals"]["adc_converts"] > 0
        if variant == "mesh_elastic_dram":
            assert events.total("dram", "byte_read") == summary["dram"]["bytes_read"] > 0
    with h5py.File(h5) as f:  # component and action are HDF5 enums, names also in attributes
        ds = f["energy/core_counts"]
        comp_enum = h5py.check_enum_dtype(ds.dtype["component"])
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["energy"].attrs["component_names"]]
        assert comp_enum is not None and {v: k for k, v in comp_enum.items()} == dict(enumerate(names))
        assert h5py.check_enum_dtype(ds.dtype["action"]) is not None


def crossbar_energy_per_bin(tr: tracelib.Trace, table: dict[str, Any], bin_cycles: int, n_bins: int) -> np.ndarray:
    """Crossbar joules per bin, recomputed from the compute events and the table's numbers: each
    step is one MVM (per cell) and one crossbar cycle on its core, in the bin it started in."""
    cores = tr.mapping["cores"]
    cells = {int(c["id"]): int(c["rows_used"]) * int(c["cols_used"]) for c in cores}
    xbar = table["crossbar"]
    per_step = {c: xbar["mvm"]["energy_J_per_argument"] * n + xbar["cycle"]["energy_J"] for c, n in cells.items()}
    out = np.zeros(n_bins)
    ev = tr.events
    comp = ev[ev["kind"] == tr.kind_names.index("compute")]
    for cycle, core in zip(comp["cycle"].tolist(), comp["core"].tolist(), strict=True):
        out[min(cycle // bin_cycles, n_bins - 1)] += per_step[core]
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_power_curve_integrates_to_the_run_energy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  variant: str) -> None:
    h5, summary = traced(tmp_path, capsys, **VARIANTS[variant])
    energy = summary["energy"]
    with tracelib.open(h5) as tr:
        series = tr.energy_power
        assert series is not None
        width = np.diff(series.edges_s)
        assert math.isclose(width.sum(), energy["seconds"], rel_tol=1e-12)
        integral = float((series.watts * width[:, None]).sum())
        assert math.isclose(integral, energy["energy_J"], rel_tol=1e-9)
        assert math.isclose(float(series.dynamic_J.sum()), energy["dynamic_J"], rel_tol=1e-9)
        for comp, rec in energy["by_component"].items():
            col = series.components.index(comp)
            assert math.isclose(float(series.dynamic_J[:, col].sum()), rec["dynamic_J"], rel_tol=1e-9, abs_tol=1e-30)
        if variant != "functional":  # the timing model's crossbar work sits where its steps ran
            table = tomllib.loads(TABLE)
            expected = crossbar_energy_per_bin(tr, table, series.bin_cycles, series.dynamic_J.shape[0])
            got = series.dynamic_J[:, series.components.index("crossbar")]
            assert np.allclose(got, expected, rtol=1e-9, atol=0.0)
            # pipeline fill: the first busy bin has fewer busy cores than the busiest one
            busy = np.nonzero(got)[0]
            assert len(busy) and got[busy[0]] < got.max()


def test_bins_widen_and_keep_the_energy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "POWER_BINS", 8)
    h5, summary = traced(tmp_path, capsys, noc="mesh")
    with tracelib.open(h5) as tr:
        series = tr.energy_power
        assert series is not None and series.dynamic_J.shape[0] <= 8
        cpt = int(tr.file["events"].attrs["timestep_cycles"])
        assert series.bin_cycles > cpt and series.bin_cycles % cpt == 0
        width = np.diff(series.edges_s)
        assert math.isclose(float((series.watts * width[:, None]).sum()), summary["energy"]["energy_J"],
                            rel_tol=1e-9)
        expected = crossbar_energy_per_bin(tr, tomllib.loads(TABLE), series.bin_cycles, series.dynamic_J.shape[0])
        assert np.allclose(series.dynamic_J[:, series.components.index("crossbar")], expected, rtol=1e-9)


def test_plot_power(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    h5, _ = traced(tmp_path, capsys, noc="mesh")
    out = tmp_path / "power.png"
    assert main(["plot", str(h5), "--kind", "power", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    # a summary-level trace has no events, hence no bins; a run without energy has no energy
    (tmp_path / "s").mkdir()
    summary_h5, _ = traced(tmp_path / "s", capsys, level="summary")
    assert main(["plot", str(summary_h5), "--kind", "power", "-o", str(tmp_path / "x.png")]) == 2
    assert "needs the events" in capsys.readouterr().err
    plain = tmp_path / "plain.h5"
    assert main(["run", str(scenario(tmp_path, name="off")), "--set", "energy.enabled=false",
                 "--trace", str(plain)]) == 0
    capsys.readouterr()
    assert main(["plot", str(plain), "--kind", "power", "-o", str(tmp_path / "y.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no energy in this trace" in err[0]
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def make_schema2(path: Path) -> None:
    """Rewrite a schema-3 trace in the schema-2 layout: the per-layer string table
    `/energy/counts` instead of the per-core counts, no energy over time."""
    with tracelib.open(path) as tr:
        counts = tr.energy_counts
        assert counts is not None
    rows = [(r["layer"], r["component"], r["action"], r["argument"], r["count"]) for r in counts.to_dict()["counts"]]
    string = h5py.string_dtype()
    dtype = np.dtype([(n, string if t == "str" else t) for n, t in ENERGY_COUNT_DTYPE])
    with h5py.File(path, "r+") as f:
        g = f["energy"]
        for name in ("core_counts", "power_dynamic_J", "static_power_W"):
            del g[name]
        for attr in ("component_names", "action_names", "layer_names"):
            del g.attrs[attr]
        g.create_dataset("counts", data=np.array(rows, dtype=dtype))
        f.attrs["schema_version"] = 2


def test_schema_2_traces_still_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h5, summary = traced(tmp_path, capsys, noc="mesh", batch=2)
    assert main(["report", str(h5), "--json"]) == 0
    new_report = capsys.readouterr().out
    make_schema2(h5)
    with tracelib.open(h5) as tr:
        assert tr.schema_version == 2
        assert tr.energy_counts == ActionCounts.from_dict(summary["energy"]["counts"])
        assert tr.energy_core_counts is None and tr.energy_power is None
    assert main(["report", str(h5), "--json"]) == 0
    old = capsys.readouterr()
    assert old.out == new_report and old.err == ""
    assert json.loads(old.out) == summary
    if pytest.importorskip("matplotlib"):
        assert main(["plot", str(h5), "--kind", "energy", "-o", str(tmp_path / "e.png")]) == 0
        capsys.readouterr()
        assert main(["plot", str(h5), "--kind", "power", "-o", str(tmp_path / "p.png")]) == 2
        err = capsys.readouterr().err
        assert "no energy over time" in err and "schema version 2" in err


def test_damaged_core_counts_are_a_trace_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h5, _ = traced(tmp_path, capsys)
    with h5py.File(h5, "r+") as f:
        f["energy"].attrs["component_names"] = ["sram"]  # fewer names than the enum values used
    with tracelib.open(h5) as tr, pytest.raises(TraceError, match="damaged trace"):
        _ = tr.energy_core_counts
