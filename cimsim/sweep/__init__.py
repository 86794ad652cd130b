"""Design-space sweeps: a sweep file's points as independent Dask tasks, results as Parquet."""

from cimsim.sweep.spec import Point, Sweep, SweepOptions, load_sweep, scenario_key

__all__ = ["Point", "Sweep", "SweepOptions", "load_sweep", "scenario_key"]
