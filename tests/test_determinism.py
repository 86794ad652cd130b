"""Determinism: the same scenario and seed give byte-identical `--json` output and identical
traces (every dataset's contents and every attribute but the wall time).

Each run is its own `python -m cimsim` process with a different PYTHONHASHSEED, so an
iteration over a set or a dict keyed by strings whose order leaks into the results
(string hashes are randomised per process) shows up as a difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"

CASES = {
    "regular_batch2": (SCENARIOS / "dazzi2021_resnet32.toml", ["--batch", "2"]),
    "mesh": (SCENARIOS / "noc_mesh_regular.toml", []),
    "elastic": (SCENARIOS / "dazzi2021_resnet32.toml", ["--set", "chip.clocking=elastic"]),
}

IGNORED_ATTRS = {"wall_seconds"}
"""Attributes that legitimately differ between two runs (wall-clock time)."""


def run_cli(scenario: Path, extra: list[str], trace: Path, hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    r = subprocess.run([sys.executable, "-m", "cimsim", "run", str(scenario), *extra, "--json", "--trace", str(trace)],
                       check=False,
                       capture_output=True, timeout=300, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def contents(trace: Path) -> dict[str, Any]:
    """Every dataset (as a list of rows) and attribute of an HDF5 file, by path."""
    out: dict[str, Any] = {}

    def attrs(name: str, obj: h5py.HLObject) -> None:
        for key, value in obj.attrs.items():
            if key not in IGNORED_ATTRS:
                out[f"{name}@{key}"] = value.tolist() if isinstance(value, np.ndarray) else value

    def visit(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            if isinstance(data, np.ndarray):
                out[name] = (str(data.dtype), data.shape, data.tolist())
            else:  # a scalar (e.g. the model's TOML text)
                out[name] = (type(data).__name__, (), data)
        attrs(name, obj)

    with h5py.File(trace, "r") as f:
        attrs("/", f)
        f.visititems(visit)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_same_seed_same_output(case: str, tmp_path: Path) -> None:
    scenario, extra = CASES[case]
    a = run_cli(scenario, extra, tmp_path / "a.h5", "1")
    b = run_cli(scenario, extra, tmp_path / "b.h5", "2")
    assert a == b, f"{case}: --json output differs between two runs"
    assert a.startswith(b"{") and b'"latency_timesteps"' in a
    ta, tb = contents(tmp_path / "a.h5"), contents(tmp_path / "b.h5")
    assert ta.keys() == tb.keys()
    differing = [k for k in ta if ta[k] != tb[k]]
    assert not differing, f"{case}: trace entries differ: {differing}"
    assert ta["/@complete"] and ta["events@timestep_cycles"] == 50
    assert ta["events"][1][0] > 1000, "the trace holds the events"
