"""Session-wide counters of the generated tests, printed in pytest's terminal summary, and the
guard that keeps the suite from writing into the repository: every test runs in its own
temporary directory, and the session fails if a file under the repository (outside caches
and the virtual environment) appeared, changed or vanished."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

COUNTS: Counter[str] = Counter()
"""Cases run by the generated tests (tests/test_properties.py, tests/test_hostile.py, tests/test_outputs.py)."""

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache",
             "build", "dist"}
_before: dict[str, tuple[int, int]] = {}


def repo_files() -> dict[str, tuple[int, int]]:
    """Path -> (size, mtime in ns) of every file of the repository outside caches and the venv."""
    out = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[os.path.relpath(path, REPO)] = (st.st_size, st.st_mtime_ns)
    return out


def pytest_sessionstart(session: pytest.Session) -> None:
    _before.update(repo_files())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    after = repo_files()
    changed = sorted(p for p in set(_before) | set(after) if _before.get(p) != after.get(p))
    if changed:
        COUNTS["repo_writes"] = len(changed)
        session.config.cimsim_repo_writes = changed  # type: ignore[attr-defined]
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own temporary directory, so a default output path (traces/...) lands there."""
    monkeypatch.chdir(tmp_path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNTS["networks"] or COUNTS["mapping_errors"]:
        terminalreporter.write_line(
            f"{COUNTS['networks']} generated networks ran with all invariants holding "
            f"({COUNTS['mapping_errors']} more were correctly refused by the mapper)")
    if COUNTS["functional_networks"] or COUNTS["refused_exit2"]:
        terminalreporter.write_line(
            f"{COUNTS['functional_networks']} generated networks of every layer kind ran in functional and "
            f"timing-only mode with all invariants holding ({COUNTS['refused_exit2']} more were refused with exit 2)")
    if COUNTS["hostile"]:
        terminalreporter.write_line(
            f"{COUNTS['hostile']} malformed inputs gave exit code 2 and one 'cimsim: error:' line")
    if COUNTS["outputs"]:
        terminalreporter.write_line(
            f"{COUNTS['outputs']} output-safety cases left the earlier file byte-identical")
    changed = getattr(terminalreporter.config, "cimsim_repo_writes", None)
    if changed:
        terminalreporter.write_line(f"FAILED: the suite wrote into the repository: {', '.join(changed[:10])}",
                                    red=True)
