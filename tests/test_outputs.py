"""Nothing lost, nothing crashes: every output file (trace, plot, Perfetto export, standard
output) is complete or absent, and an earlier file at the destination survives every failure
and interruption byte for byte.

Each data-loss case starts from an earlier file at the destination (or an input used as the
destination) and checks it is byte-identical afterwards, with no partial file left. Disk-full
and file-size-limit cases run the command line in a subprocess under `RLIMIT_FSIZE` (SIGXFSZ
ignored, so write() fails with EFBIG as on a full disk) and with stdout on /dev/full: one
`cimsim: error:` line naming the path, exit code 4, no traceback, no crash. Signals: a
SIGINT arriving right after the trace's rename, and Ctrl-C while the command imports its
modules. The count is printed at the end of the session (tests/conftest.py).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import conftest
import pytest

import cimsim.trace as tracelib
from cimsim.cli import main

MODEL = """\
name = "out"
[input]
height = 8
width = 8
channels = 3
[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 4
kernel = 3
padding = 1
[[layers]]
name = "pool"
type = "avgpool"
input = "conv1"
[[layers]]
name = "fc"
type = "fc"
input = "pool"
out_features = 5
"""
REPO = Path(__file__).resolve().parents[1]
REGULAR = REPO / "scenarios" / "dazzi2021_resnet32.toml"


@pytest.fixture
def work(tmp_path: Path) -> dict[str, Path]:
    """A scenario, its model, an earlier complete trace `old.h5` and an unrelated file `keep.bin`."""
    (tmp_path / "m.toml").write_text(MODEL)
    (tmp_path / "s.toml").write_text('model = "m.toml"\nname = "s"\n[run]\nbatch = 2\n')
    assert main(["run", str(tmp_path / "s.toml"), "--trace", str(tmp_path / "old.h5"), "--json"]) == 0
    (tmp_path / "keep.bin").write_bytes(os.urandom(5000))
    return {"dir": tmp_path, "s": tmp_path / "s.toml", "m": tmp_path / "m.toml", "old": tmp_path / "old.h5",
            "keep": tmp_path / "keep.bin"}


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def _expect(capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str) -> None:
    got = main(argv)
    _out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert got == code, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("cimsim: error: ") and fragment in lines[0], err


def _unchanged(before: dict[str, bytes], d: Path) -> None:
    after = _snapshot(d)
    assert after == before, sorted(set(after) ^ set(before)) or [k for k in after if after[k] != before.get(k)]
    assert not [p for p in d.iterdir() if p.name.endswith(".partial")]
    conftest.COUNTS["outputs"] += 1


def test_failed_run_keeps_the_earlier_trace(capsys: pytest.CaptureFixture[str], work: dict[str, Path]) -> None:
    before = _snapshot(work["dir"])
    # the pipeline needs more than 70 timesteps for 64 pixels: the run fails with exit 3
    _expect(capsys, ["run", str(work["s"]), "--trace", str(work["old"]), "--set", "run.max_timesteps=70",
                     "--set", "run.batch=1"], 3, "run.max_timesteps")
    _unchanged(before, work["dir"])


@pytest.mark.parametrize("target", ["s", "m"])
def test_trace_onto_an_input_is_refused(capsys: pytest.CaptureFixture[str], work: dict[str, Path],
                                        target: str) -> None:
    before = _snapshot(work["dir"])
    _expect(capsys, ["run", str(work["s"]), "--trace", str(work[target])], 2, "is an input of this command")
    _unchanged(before, work["dir"])


def test_trace_onto_a_symlinked_input_is_refused(capsys: pytest.CaptureFixture[str], work: dict[str, Path]) -> None:
    (work["dir"] / "link.toml").symlink_to(work["s"])
    before = _snapshot(work["dir"])
    _expect(capsys, ["run", str(work["s"]), "--trace", str(work["dir"] / "link.toml")], 2, "is an input")
    _unchanged(before, work["dir"])


@pytest.mark.parametrize("argv", [
    ["export", "{old}", "--perfetto", "{old}"],
    ["plot", "{old}", "--kind", "progress", "-o", "{old}"],
])
def test_export_and_plot_onto_their_trace_are_refused(capsys: pytest.CaptureFixture[str], work: dict[str, Path],
                                                      argv: list[str]) -> None:
    before = _snapshot(work["dir"])
    _expect(capsys, [a.format(old=work["old"]) for a in argv], 2, "is an input of this command")
    _unchanged(before, work["dir"])


@pytest.mark.parametrize("dest", ["/dev/null", "/dev/full", "{dir}", "/"])
def test_devices_and_directories_are_refused(capsys: pytest.CaptureFixture[str], work: dict[str, Path],
                                             dest: str) -> None:
    dest = dest.format(dir=work["dir"])
    before = _snapshot(work["dir"])
    mode = os.stat(dest).st_mode
    for argv in (["run", str(work["s"]), "--trace", dest], ["export", str(work["old"]), "--perfetto", dest],
                 ["plot", str(work["old"]), "--kind", "stalls", "-o", dest]):
        if argv[0] == "plot":
            pytest.importorskip("matplotlib")
        _expect(capsys, argv, 2, dest)
    assert os.stat(dest).st_mode == mode
    _unchanged(before, work["dir"])


def test_unknown_picture_format_is_refused(capsys: pytest.CaptureFixture[str], work: dict[str, Path]) -> None:
    pytest.importorskip("matplotlib")
    before = _snapshot(work["dir"])
    _expect(capsys, ["plot", str(work["old"]), "--kind", "stalls", "-o", str(work["dir"] / "p.xyz")], 2,
            "unknown picture format")
    _unchanged(before, work["dir"])


def test_successful_outputs_replace_the_earlier_file(capsys: pytest.CaptureFixture[str],
                                                     work: dict[str, Path]) -> None:
    target = work["dir"] / "out.json"
    target.write_text("earlier")
    assert main(["export", str(work["old"]), "--perfetto", str(target)]) == 0
    assert target.read_text().startswith('{"displayTimeUnit"')
    assert main(["run", str(work["s"]), "--trace", str(work["old"]), "--json", "--set", "run.batch=1"]) == 0
    with tracelib.open(work["old"]) as tr:
        assert tr.run["batch"] == 1
    assert not [p for p in work["dir"].iterdir() if p.name.endswith(".partial")]
    capsys.readouterr()


# --- disk full, file-size limit, /dev/full: subprocesses ----------------------------------------


def _cimsim(argv: list[str], cwd: Path, fsize: int | None = None, stdout: int | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "cimsim", *argv], cwd=cwd, preexec_fn=limit, check=False,
                          stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})


def _one_error_line(r: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(lines) == 1 and lines[0].startswith("cimsim: error: "), r.stderr
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("fsize", [2_000, 30_000, 120_000])
def test_file_size_limit_while_tracing(work: dict[str, Path], fsize: int) -> None:
    """The limit hits the trace at its start, in the middle of the event blocks, or at its end."""
    shutil.copy(REGULAR.parent.parent / "models" / "resnet32_cifar10.toml", work["dir"] / "r.toml")
    (work["dir"] / "big.toml").write_text('model = "r.toml"\nname = "big"\n')
    before = _snapshot(work["dir"])
    r = _cimsim(["run", "big.toml", "--trace", "old.h5", "--batch", "2"], work["dir"], fsize=fsize)
    _one_error_line(r, 4, "cannot write old.h5: File too large")
    _unchanged(before, work["dir"])
    with tracelib.open(work["old"]) as tr:  # the earlier trace is still a complete trace
        assert tr.run["batch"] == 2


def test_file_size_limit_while_exporting_and_plotting(work: dict[str, Path]) -> None:
    (work["dir"] / "p.json").write_text("earlier export")
    (work["dir"] / "p.png").write_bytes(b"earlier picture")
    before = _snapshot(work["dir"])
    r = _cimsim(["export", "old.h5", "--perfetto", "p.json"], work["dir"], fsize=200)
    _one_error_line(r, 4, "cannot write p.json: File too large")
    pytest.importorskip("matplotlib")
    r = _cimsim(["plot", "old.h5", "--kind", "stalls", "-o", "p.png"], work["dir"], fsize=200,
                env={"MPLCONFIGDIR": str(work["dir"] / "mpl")})
    _one_error_line(r, 4, "cannot write p.png: File too large")
    shutil.rmtree(work["dir"] / "mpl", ignore_errors=True)
    _unchanged(before, work["dir"])


def test_standard_output_on_a_full_device(work: dict[str, Path]) -> None:
    with open("/dev/full", "w") as full:
        for argv in (["run", "s.toml", "--no-trace", "--json"], ["report", "old.h5", "--csv"],
                     ["sram", "--channels", "3", "--height", "32", "--word-bits", "128"]):
            r = _cimsim(argv, work["dir"], stdout=full.fileno())
            _one_error_line(r, 4, "cannot write standard output")
            conftest.COUNTS["outputs"] += 1


# --- signals --------------------------------------------------------------------------------------


def test_signal_right_after_the_rename_is_not_an_interruption(work: dict[str, Path]) -> None:
    """A SIGINT delivered the instant the trace has replaced the earlier one: the run completed, so
    it exits 0 with the new trace, without a traceback."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        import cimsim.io_safety as io_safety
        real = os.replace
        def replace(a, b):
            real(a, b)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
        io_safety.os.replace = replace
        from cimsim.cli import main
        sys.exit(main(["run", {str(work["s"])!r}, "--trace", {str(work["old"])!r}, "--set", "run.batch=1"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr and r.stderr == "", r.stderr
    with tracelib.open(work["old"]) as tr:
        assert tr.run["batch"] == 1
    conftest.COUNTS["outputs"] += 1


def test_interrupt_while_the_command_imports(work: dict[str, Path]) -> None:
    """Ctrl-C while `cimsim run` imports the simulator (most of its first 0.1 s) is one line, exit 130."""
    script = textwrap.dedent(f"""
        import builtins, sys
        real = builtins.__import__
        def imp(name, *a, **k):
            if name == "cimsim.runner":
                raise KeyboardInterrupt
            return real(name, *a, **k)
        builtins.__import__ = imp
        from cimsim.cli import main
        sys.exit(main(["run", {str(work["s"])!r}, "--no-trace"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 130 and r.stderr.strip() == "cimsim: interrupted", r.stderr
    conftest.COUNTS["outputs"] += 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_keeps_the_earlier_trace(work: dict[str, Path], sig: signal.Signals) -> None:
    before = _snapshot(work["dir"])
    proc = subprocess.Popen([sys.executable, "-m", "cimsim", "run", str(REGULAR), "--batch", "50", "--trace",
                             str(work["old"])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = work["dir"] / f"old.h5.{proc.pid}.partial"
    deadline = time.monotonic() + 60
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert partial.exists(), "the run did not start writing its trace"
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert "Traceback" not in err
    _unchanged(before, work["dir"])
