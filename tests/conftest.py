"""Session-wide counters of the generated tests, printed in pytest's terminal summary."""

from __future__ import annotations

from collections import Counter

import pytest

COUNTS: Counter[str] = Counter()
"""Cases run by the generated tests (tests/test_properties.py, tests/test_hostile.py)."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNTS["networks"] or COUNTS["mapping_errors"]:
        terminalreporter.write_line(
            f"{COUNTS['networks']} generated networks ran with all invariants holding "
            f"({COUNTS['mapping_errors']} more were correctly refused by the mapper)")
    if COUNTS["hostile"]:
        terminalreporter.write_line(
            f"{COUNTS['hostile']} malformed inputs gave exit code 2 and one 'cimsim: error:' line")
