"""Energy, power and area from action counts x tables (Accelergy-style, SI units).

`actions` is the vocabulary and the count accumulator, `table` the TOML tables,
`model` the report, `accelergy` the ERT import and action-count export, `peak` one
array kept busy (the per-array figure a paper's TOPS/W is).
Nothing here imports the simulator: the hardware counts, this package charges.
"""

from cimsim.energy.actions import ALLOWED, ARGUMENTS, Action, ActionCounts, Component
from cimsim.energy.model import OPS_PER_MAC, Window, energy_report
from cimsim.energy.table import EnergyTable, Entry, builtin_tables, load_table, resolve_table

__all__ = ["ALLOWED", "ARGUMENTS", "OPS_PER_MAC", "Action", "ActionCounts", "Component", "EnergyTable", "Entry",
           "Window", "builtin_tables", "energy_report", "load_table", "resolve_table"]
