"""`cimsim validate [--json | --markdown] [--only M1,M2 | --table NAME]`: every published number the
simulator reproduces, re-measured, and the README's reproduction tables.

Each `Check` (`checks.py`) names its source (paper, section or table), the paper's value, the
measurement that gives cimsim's (`measure.py`: a run of a shipped scenario, at the smallest batch
that determines the number, or a `cimsim.mapping.sizing.dry_run` where the mapping alone decides
it), a tolerance and the modelling reason for any difference. The command runs every measurement
once and prints, per number, paper, cimsim, the deviation ((cimsim - paper) / paper, or cimsim -
paper for a check with an absolute tolerance) and whether it is within its tolerance. Exit status 0:
all within; `EXIT_OUT_OF_TOLERANCE` (5) when any number leaves its tolerance (1 is an internal
error, 2 bad input, 3 a failed simulation, 4 an unwritable output: 5 is distinct from all of them).
Entries with `tolerance = None` are listed (a published number the simulator does not model) and
never fail. `--table NAME` prints one of the README's reproduction tables instead (`tables.py`).

Not yet covered: RAELLA's accuracy against noise level E (the digits section's table), and the
Dazzi energy figures, which the simulator does not reproduce (see the README's energy section):
they are listed as not compared.
"""

from __future__ import annotations

from cimsim.validate.checks import CHECKS, Check
from cimsim.validate.command import (
    EXIT_OUT_OF_TOLERANCE,
    add_parser,
    format_markdown,
    format_table,
    validate,
    validate_command,
)
from cimsim.validate.measure import MEASUREMENTS, ROOT, SCENARIOS
from cimsim.validate.tables import TABLES, table_markdown

__all__ = ["CHECKS", "EXIT_OUT_OF_TOLERANCE", "MEASUREMENTS", "ROOT", "SCENARIOS", "TABLES", "Check", "add_parser",
           "format_markdown", "format_table", "table_markdown", "validate", "validate_command"]
