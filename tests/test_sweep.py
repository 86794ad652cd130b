"""Design-space sweeps: sweep files, points on a Dask LocalCluster, the results table,
resuming, a worker killed mid-point, bad sweep files, and sweep-plot."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from cimsim.cli import main
from cimsim.errors import InputError
from cimsim.sweep import load_sweep
from cimsim.sweep.engine import connect, run_sweep
from cimsim.sweep.plot import pareto_front

ROOT = Path(__file__).resolve().parent.parent
MESH = ROOT / "scenarios" / "noc_mesh_regular.toml"
REGULAR = ROOT / "scenarios" / "dazzi2021_resnet32.toml"

GRID = """\
base = "{base}"
name = "grid"
[axes]
"chip.crossbar_rows" = {rows}
"noc.link_width_bits" = [16, 64]
"dataflow.mode" = ["regular", "speedup"]
"""


@pytest.fixture(scope="module")
def client() -> Any:
    """The LocalCluster of 2 single-threaded worker processes `cimsim sweep --workers 2` starts,
    for the whole module."""
    c, cluster = connect("", 2, 2, 10.0)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _worker_state() -> tuple[bool, bool, bool]:
    """On a worker: (cimsim imported, objects frozen, Dask's profiler off)."""
    import gc
    import sys

    import dask

    return ("cimsim.runner" in sys.modules, gc.get_freeze_count() > 0,
            dask.config.get("distributed.worker.profile.enabled") is False)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_resnet32_mesh_grid_on_two_workers_and_resume(client: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # first only the 256-row half of the grid ("interrupted" after 4 of the 8 points)
    half = load_sweep(_write(tmp_path, "half.toml", GRID.format(base=MESH, rows="[256]")))
    first = run_sweep(half, out, client=client)
    assert (first.ok, first.failed, first.skipped) == (2, 2, 0)  # speed-up at 256 rows needs 51 > 48 cores
    full = load_sweep(_write(tmp_path, "full.toml", GRID.format(base=MESH, rows="[256, 512]")))
    assert len(full.points) == 8 and len(client.scheduler_info()["workers"]) == 2
    second = run_sweep(full, out, client=client)
    done_first = set(first.ran)
    assert second.skipped == 4 and set(second.ran) == {p.key for p in full.points} - done_first
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 8 and table["point"].is_unique and set(table["point"]) == {p.key for p in full.points}
    assert list(table["index"]) == list(range(8))
    assert {"chip.crossbar_rows", "noc.link_width_bits", "dataflow.mode", "latency_timesteps",
            "throughput_images_per_s", "cores", "stall_noc", "wall_s", "status", "error"} <= set(table.columns)
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["point"]) == list(table["point"])
    ok = table[table["status"] == "ok"]
    failed = table[table["status"] == "failed"]
    assert len(ok) == 6 and set(failed["chip.crossbar_rows"]) == {256} and set(failed["dataflow.mode"]) == {"speedup"}
    assert (failed["exit_code"] == 2).all() and failed["error"].str.contains("needs 51 cores").all()
    # each point's summary is the one `cimsim run --set ...` prints, overrides included
    row = ok[(ok["chip.crossbar_rows"] == 512) & (ok["noc.link_width_bits"] == 16) & (ok["dataflow.mode"] == "regular")]
    summary = json.loads((out / "points" / row["point"].iloc[0] / "summary.json").read_text())
    assert summary["overrides"] == ["chip.crossbar_rows=512", "noc.link_width_bits=16", 'dataflow.mode="regular"']
    assert summary["latency_timesteps"] == row["latency_timesteps"].iloc[0] and summary["cores"] == 33
    assert row["stall_noc"].iloc[0] == sum(lay["stall_timesteps"]["noc"] for lay in summary["layers"])
    narrow = ok[(ok["chip.crossbar_rows"] == 256) & (ok["dataflow.mode"] == "regular")].sort_values(
        "noc.link_width_bits")
    assert narrow["latency_timesteps"].iloc[0] > narrow["latency_timesteps"].iloc[1]  # 16-bit links stall
    # a crash that lost two rows and the table: the rerun runs exactly those two
    lost = [full.points[1].key, full.points[6].key]
    for key in lost:
        (out / "points" / key / "row.json").unlink()
    (out / "results.parquet").unlink()
    third = run_sweep(full, out, client=client)
    assert sorted(third.ran) == sorted(lost) and third.skipped == 6
    again = pd.read_parquet(out / "results.parquet")
    assert len(again) == 8 and again["point"].is_unique
    kept = again.set_index("point").drop(columns=["wall_s", "cpu_s"]).loc[table["point"]]
    pd.testing.assert_frame_equal(kept, table.set_index("point").drop(columns=["wall_s", "cpu_s"]))
    assert (table["cpu_s"] > 0).all() and (table["wall_s"] > 0).all()


def test_worker_killed_mid_point_is_rerun(client: Any, tmp_path: Path) -> None:
    sweep = load_sweep(_write(tmp_path, "kill.toml", (
        f'base = "{REGULAR}"\n[set]\n"run.batch" = 3\n[axes]\n"chip.mvm_cycles" = [10, 11, 12, 13, 14, 15]\n')))
    killed: list[str] = []

    def kill_a_busy_worker(point: Any, row: dict[str, Any]) -> None:
        if killed:
            return
        for addr, keys in client.processing().items():
            if keys:
                pid = client.run(os.getpid, workers=[addr])[addr]
                os.kill(pid, signal.SIGKILL)
                killed.append(str(keys[0]))
                return

    outcome = run_sweep(sweep, tmp_path / "out", client=client, on_finish=kill_a_busy_worker)
    assert killed, "no worker was busy when the first point finished"
    assert (outcome.ok, outcome.failed, outcome.lost) == (6, 0, 0)
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert len(table) == 6 and table["point"].is_unique and (table["status"] == "ok").all()
    assert killed[0].removeprefix("cimsim-point-") in set(table["point"])
    # the rerun point gives what any run of it gives (deterministic)
    lat = dict(zip(table["chip.mvm_cycles"], table["latency_timesteps"], strict=True))
    assert lat[10] == 1630 and all(lat[m] >= 1630 for m in lat)
    # the worker the nanny restarted was prepared like the first ones (WarmWorker, the cluster's config)
    client.wait_for_workers(2)
    assert set(client.run(_worker_state).values()) == {(True, True, True)}


def test_expansion_forms(tmp_path: Path) -> None:
    sweep = load_sweep(_write(tmp_path, "forms.toml", f"""\
base = "{REGULAR}"
[set]
run.batch = 2
[axes]
chip.crossbar_rows = [256, 512]
[[zip]]
"noc.link_width_bits" = [16, 32]
"noc.header_bits" = [8, 16]
[[points]]
dataflow.mode = "regular"
[[points]]
dataflow = {{ mode = "speedup", layer_rates = {{ conv1 = 2 }} }}
[random]
samples = 3
seed = 7
[random.axes]
"chip.mvm_cycles" = {{ integers = [5, 20] }}
"chip.clock_mhz" = {{ log_uniform = [250.0, 1000.0] }}
"""))
    assert sweep.keys == ("chip.crossbar_rows", "noc.link_width_bits", "noc.header_bits", "dataflow.mode",
                          "dataflow.layer_rates", "chip.mvm_cycles", "chip.clock_mhz")
    assert len(sweep.points) == 2 * 2 * 2 * 3 and len({p.key for p in sweep.points}) == 24
    p = sweep.points[0]
    assert p.overrides[0] == "run.batch=2" and p.scenario.run.batch == 2
    assert {(q.scenario.noc.link_width_bits, q.scenario.noc.header_bits) for q in sweep.points} == {(16, 8), (32, 16)}
    rated = [q for q in sweep.points if q.scenario.dataflow.mode == "speedup"]
    assert len(rated) == 12 and all(q.scenario.dataflow.layer_rates == {"conv1": 2} for q in rated)
    assert all(5 <= q.scenario.chip.mvm_cycles <= 20 and 250 <= q.scenario.chip.clock_mhz <= 1000
               for q in sweep.points)
    again = load_sweep(tmp_path / "forms.toml")  # seeded: the same samples, the same keys
    assert [q.key for q in again.points] == [q.key for q in sweep.points]
    # the key is the resolved scenario: the same point from another file has the same key
    other = load_sweep(_write(tmp_path, "other.toml", f'base = "{REGULAR}"\n[axes]\n"chip.crossbar_rows" = [512]\n'))
    direct = load_sweep(_write(tmp_path, "direct.toml", f'base = "{REGULAR}"\n[set]\nchip.crossbar_rows = 512\n'))
    assert other.points[0].key == direct.points[0].key


BAD = [
    ('[axes]\n"chip.crossbar_rowz" = [256]\n', "unknown key 'chip.crossbar_rowz'"),
    ('[axes]\n"chip.crossbar_rows" = []\n', "axes.chip.crossbar_rows: empty list"),
    ('[axes]\n"chip.crossbar_rows" = [256, "big"]\n', "chip.crossbar_rows = 'big'"),
    ('[axes]\n"chip.crossbar_rows" = 256\n', "must be a list of values"),
    ('[axes]\n"dataflow.mode" = ["regular", "fast"]\n', "dataflow.mode = 'fast'"),
    ('bogus = 1\n', "unknown key 'bogus'"),
    ('[sweep]\nworkerz = 2\n', "sweep.workerz: unknown key"),
    ('[axes]\n"chip.crossbar_rows" = [256]\n[set]\n"chip.crossbar_rows" = 512\n', "also given in set"),
    ('[[zip]]\na.b = [1, 2]\nc.d = [1]\n', "lists of different lengths"),
    ('[axes]\n"chip.crossbar_rows" = [256, 256]\n', "same scenario as point 0"),
    ('[random]\nsamples = 0\n[random.axes]\n"chip.mvm_cycles" = [1]\n', "random.samples"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_sweep_file_is_one_line_exit_2(body: str, message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "bad.toml", f'base = "{REGULAR}"\n' + body)
    assert main(["sweep", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cimsim: error: ") and message in err, err
    assert not (tmp_path / "out").exists()


def test_missing_base_and_unreachable_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(_write(tmp_path, "nobase.toml", "[axes]\na = [1]\n"))]) == 2
    assert "base: required" in capsys.readouterr().err
    path = _write(tmp_path, "s.toml", f'base = "{REGULAR}"\n[sweep]\nconnect_timeout_s = 0.5\n'
                                      'scheduler = "tcp://127.0.0.1:9"\n')
    assert main(["sweep", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Dask scheduler answered within 0.5 s" in err
    assert main(["sweep", str(path), "--scheduler", "localhost:1"]) == 2
    assert "expected an address like tcp://HOST:PORT" in capsys.readouterr().err
    with pytest.raises(InputError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.toml")


def test_pareto_front() -> None:
    xs = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0]
    ys = [1.0, 3.0, 2.0, 3.0, 5.0, 4.0]
    assert pareto_front(xs, ys) == [0, 1, 4]  # fewer x and more y are better
    assert pareto_front(xs, ys, "high", "high") == [4, 5]
    assert pareto_front(xs, ys, "low", "low") == [0]


def test_sweep_plot(client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    sweep = load_sweep(_write(tmp_path, "p.toml", f'base = "{REGULAR}"\n[axes]\n"chip.mvm_cycles" = [10, 40]\n'
                                                  '"dataflow.mode" = ["regular", "speedup"]\n'))
    run_sweep(sweep, tmp_path / "out", client=client)
    table = str(tmp_path / "out" / "results.parquet")
    png = tmp_path / "p.png"
    assert main(["sweep-plot", table, "--x", "cores", "--y", "throughput_images_per_s", "--color",
                 "dataflow.mode", "--pareto", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep-plot", table, "--x", "nope", "--y", "cores", "-o", str(png)]) == 2
    assert "--x nope: no such column" in capsys.readouterr().err
    assert main(["sweep-plot", table, "--x", "dataflow.mode", "--y", "cores", "-o", str(png)]) == 2
    assert "not a numeric column" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "points", "keys"), [
    ("resnet32_mesh.toml", 12, ("chip.crossbar_rows", "noc.link_width_bits", "dataflow.mode",
                                "input.pixels_per_timestep")),
    ("resnet32_balanced.toml", 8, ("mapping.max_cores",)),
])
def test_the_shipped_sweep_files_expand_as_the_readme_says(name: str, points: int, keys: tuple[str, ...]) -> None:
    """The README's example sweeps exist in the checkout and expand to their stated points."""
    sweep = load_sweep(ROOT / "scenarios" / "sweeps" / name)
    assert len(sweep.points) == points and sweep.keys == keys
