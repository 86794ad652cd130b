"""Scenario configuration: the schema and its TOML loader."""

from cimsim.config.load import apply_overrides, load_scenario, scenario_to_dict
from cimsim.config.schema import Scenario

__all__ = ["Scenario", "apply_overrides", "load_scenario", "scenario_to_dict"]
