"""Errors the user can cause, with the exit codes the CLI maps them to.

Every error carries a one-line message naming the file, key path or option and
the bad value; the CLI prints it without a traceback.
"""

from __future__ import annotations


class CimsimError(Exception):
    """Base class of every error cimsim reports to the user."""

    exit_code = 2


class InputError(CimsimError):
    """A model, scenario or command-line value is malformed or impossible (exit 2)."""


class MappingError(CimsimError):
    """The network cannot be mapped onto the chip described by the scenario (exit 2)."""


class SimulationError(CimsimError):
    """The simulation could not complete (deadlock, cycle limit, broken invariant) (exit 3)."""

    exit_code = 3


class OutputError(CimsimError):
    """An output file could not be written: disk full, a file-size limit, permission denied
    (exit 4). The destination is left as it was; no partial file remains."""

    exit_code = 4
