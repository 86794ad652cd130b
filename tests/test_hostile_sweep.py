"""Sweeps and pictures under hostile use (issue 26): who can reach a sweep's cluster, a
cluster without workers, plot destinations that are directories, devices, suffix-less names
or the command's own input, a full disk, a sweep directory that holds the sweep's inputs,
FIFOs and devices given as input files, and `[sweep] workers` out of range.

Cases that hung before their fix run the command line in a subprocess with a timeout."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cimsim.cli import main

distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

ROOT = Path(__file__).resolve().parent.parent
REGULAR = ROOT / "scenarios" / "dazzi2021_resnet32.toml"
MODEL = ROOT / "models" / "resnet32_cifar10.toml"


def _cimsim(argv: list[str], cwd: Path, fsize: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "cimsim", *argv], cwd=cwd, preexec_fn=limit, check=False,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _one_line(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cimsim: error: ") and fragment in lines[0], err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# --- who can reach it -------------------------------------------------------------------------

PROBE = textwrap.dedent("""
    import json, psutil
    from cimsim.sweep.engine import connect
    client, cluster = connect("", 2, 2, 30.0)
    dask_ports = {int(cluster.scheduler_address.rsplit(":", 1)[1])}
    addresses = [cluster.scheduler_address]
    for nanny in cluster.workers.values():
        addresses += [nanny.address, nanny.worker_address]
    dask_ports |= {int(a.rsplit(":", 1)[1]) for a in addresses}
    me = psutil.Process()
    listening = [[c.laddr.ip, c.laddr.port] for p in [me, *me.children(recursive=True)]
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    print(json.dumps({"addresses": addresses, "dask_ports": sorted(dask_ports), "listening": listening,
                      "workers": len(client.scheduler_info()["workers"])}))
    client.close()
    cluster.close()
""")


def test_local_cluster_listens_on_loopback_only_without_http_servers(tmp_path: Path) -> None:
    """Every socket the sweep's LocalCluster (scheduler, nannies, workers) listens on is on
    127.0.0.1 and is a Dask comm address: no dashboard, no Prometheus/health HTTP server (Dask
    starts one on port 8787 even with `dashboard_address=None`)."""
    psutil = pytest.importorskip("psutil")
    del psutil
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                       check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["workers"] == 2
    assert all(a.startswith("tcp://127.0.0.1:") for a in got["addresses"]), got
    assert got["listening"], got
    assert all(ip == "127.0.0.1" for ip, _ in got["listening"]), got
    assert {port for _, port in got["listening"]} <= set(got["dask_ports"]), got  # no HTTP server open
    assert 8787 not in {port for _, port in got["listening"]}


def test_scheduler_without_workers_gives_up_with_the_resume_line(tmp_path: Path) -> None:
    """A scheduler with no worker: one line saying so on stderr, then after
    `sweep.no_worker_timeout_s` one error line with the command that resumes the sweep (exit 3)."""
    cluster = distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None,
                                          scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        sweep = tmp_path / "s.toml"
        sweep.write_text(f'base = "{REGULAR}"\n[axes]\n"chip.mvm_cycles" = [10, 40]\n[sweep]\n'
                         f'scheduler = "{cluster.scheduler_address}"\nno_worker_timeout_s = 1.5\n')
        r = _cimsim(["sweep", str(sweep), "-o", str(tmp_path / "out")], tmp_path, timeout=120)
    finally:
        cluster.close()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3, r.stderr
    assert len(lines) == 2, r.stderr
    assert "has no worker; waiting up to 1.5 s" in lines[0]
    assert lines[1].startswith("cimsim: error: sweep s: no worker at") and "0/2 points done" in lines[1]
    assert f"rerun `cimsim sweep {sweep} -o {tmp_path / 'out'}` to resume" in lines[1]


def test_no_worker_timeout_is_checked() -> None:
    from cimsim.errors import InputError
    from cimsim.sweep.spec import SweepOptions, _options, _Reader

    assert _options(_Reader(Path("s.toml")), {"no_worker_timeout_s": 5}) == SweepOptions(no_worker_timeout_s=5.0)
    for bad in (0, -1, float("inf"), "1"):
        with pytest.raises(InputError, match="no_worker_timeout_s"):
            _options(_Reader(Path("s.toml")), {"no_worker_timeout_s": bad})


# --- sweep-plot, plot and roofline destinations -----------------------------------------------


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A small results table, as `cimsim sweep` writes it."""
    path = tmp_path / "results.parquet"
    pd.DataFrame({"point": ["a", "b", "c"], "status": ["ok"] * 3, "cores": [10, 20, 30],
                  "throughput_images_per_s": [1.0, 3.0, 2.0]}).to_parquet(path)
    return path


def _sweep_plot(table: Path, out: str) -> list[str]:
    return ["sweep-plot", str(table), "--x", "cores", "--y", "throughput_images_per_s", "-o", out]


def test_sweep_plot_destinations(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    folder = tmp_path / "pics"
    folder.mkdir()
    before = table.read_bytes()
    for out, fragment in ((str(folder), "is a directory"), ("/dev/full", "not a regular file"),
                          (str(table), "is an input of this command"), (str(tmp_path / "s.toml"), "'.toml'")):
        assert main(_sweep_plot(table, out)) == 2, out
        _one_line(capsys.readouterr().err, fragment)
    assert table.read_bytes() == before and not list(folder.iterdir())
    assert not (tmp_path / "pics.png").exists() and not (tmp_path / "s.toml").exists()
    # no suffix: exactly the file named, in PNG
    assert main(_sweep_plot(table, str(tmp_path / "plot"))) == 0
    assert capsys.readouterr().err == f"wrote {tmp_path / 'plot'}\n"
    assert (tmp_path / "plot").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "plot.png").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_sweep_plot_on_a_full_disk_keeps_the_earlier_png(table: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    old = tmp_path / "p.png"
    old.write_bytes(b"earlier picture")
    r = _cimsim(_sweep_plot(table, "p.png"), tmp_path, fsize=2000)
    assert r.returncode == 4, r.stderr
    _one_line(r.stderr, "p.png")
    assert old.read_bytes() == b"earlier picture"
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name or ".tmp" in p.name]


def test_plot_without_suffix_writes_the_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    trace = tmp_path / "t.h5"
    assert main(["run", str(ROOT / "scenarios" / "noc_mesh_regular.toml"), "--trace", str(trace),
                 "--trace-level", "summary"]) == 0
    capsys.readouterr()
    assert main(["plot", str(trace), "--kind", "stalls", "-o", str(tmp_path / "plot")]) == 0
    assert capsys.readouterr().err == f"wrote {tmp_path / 'plot'}\n"
    assert (tmp_path / "plot").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "plot.png").exists()


@pytest.mark.parametrize(("out", "fragment"), [("s.toml", "unknown picture format '.toml' (supported: "),
                                                ("{tmp}", "is a directory"), ("/dev/full", "not a regular file")])
def test_roofline_output_is_checked_before_simulating(out: str, fragment: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    dest = out.format(tmp=tmp_path)
    argv = ["roofline", str(ROOT / "scenarios" / "noc_mesh_regular.toml"), "--batch", "1", "-o",
            str(tmp_path / dest) if dest == "s.toml" else dest]
    assert main(argv) == 2
    _one_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "s.toml").exists()


# --- a sweep's own inputs and input files that are not files ----------------------------------


def _base_copy(path: Path) -> Path:
    path.write_text(REGULAR.read_text().replace('"../models/resnet32_cifar10.toml"', f'"{MODEL}"'))
    return path


@pytest.mark.parametrize("name", ["sweep.json", "results.csv", "results.parquet"])
def test_sweep_does_not_overwrite_its_inputs_in_its_directory(name: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep file or base scenario under a name the sweep writes in DIR: refused in one line."""
    out = tmp_path / "out"
    out.mkdir()
    if name == "sweep.json":  # the sweep file itself (TOML under a JSON name)
        base = _base_copy(tmp_path / "base.toml")
        (out / name).write_text(f'base = "{base}"\n[axes]\n"chip.mvm_cycles" = [10, 40]\n')
        sweep_file = out / name
    else:  # the base scenario
        _base_copy(out / name)
        sweep_file = tmp_path / "s.toml"
        sweep_file.write_text(f'base = "out/{name}"\n[axes]\n"chip.mvm_cycles" = [10, 40]\n')
    before = _snapshot(out)
    assert main(["sweep", str(sweep_file), "-o", str(out)]) == 2
    _one_line(capsys.readouterr().err, "is an input of this command")
    assert _snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [name]


def test_fifo_and_device_inputs_are_refused_before_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    sweep = tmp_path / "s.toml"
    sweep.write_text('base = "fifo.toml"\n')
    cases = [(["sweep", str(fifo)], "sweep file", "FIFO"), (["sweep", str(zero)], "sweep file", "a device"),
             (["run", str(fifo), "--no-trace"], "scenario file", "FIFO"),
             (["run", str(zero), "--no-trace"], "scenario file", "a device"),
             (["sweep", str(sweep)], "base", "not a regular file")]
    for argv, what, kind in cases:
        r = _cimsim(argv, tmp_path, timeout=60)
        assert r.returncode == 2, (argv, r.stderr)
        _one_line(r.stderr, what)
        assert kind in r.stderr


def test_sweep_files_on_a_full_disk_leave_no_temporary_file(tmp_path: Path) -> None:
    """The sweep's own writer (rows, summaries, sweep.json, the table) is io_safety's: a failed
    write is exit 4's OutputError, the earlier file stays, and no temporary file is left."""
    (tmp_path / "row.json").write_text("earlier")
    code = ("import sys; from pathlib import Path; from cimsim.errors import OutputError\n"
            "from cimsim.sweep.results import write_atomic\n"
            "try:\n    write_atomic(Path('row.json'), b'x' * 100_000)\n"
            "except OutputError as e:\n    print(e); sys.exit(4)\n")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, preexec_fn=limit, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 4 and "cannot write row.json" in r.stdout, (r.stdout, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["row.json"]
    assert (tmp_path / "row.json").read_text() == "earlier"


@pytest.mark.parametrize(("value", "ok"), [(1024, True), (0, True), (1025, False), (100000, False)])
def test_sweep_workers_has_the_cli_bound(value: int, ok: bool, tmp_path: Path) -> None:
    from cimsim.errors import InputError
    from cimsim.sweep import load_sweep

    path = tmp_path / "s.toml"
    path.write_text(f'base = "{REGULAR}"\n[sweep]\nworkers = {value}\n')
    if ok:
        assert load_sweep(path).options.workers == value
    else:
        with pytest.raises(InputError, match=r"sweep.workers: .*from 0 .* to 1,024"):
            load_sweep(path)

