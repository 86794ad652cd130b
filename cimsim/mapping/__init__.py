"""Layer -> crossbars -> cores: splitting, replication, SRAM layouts, placement."""

from cimsim.mapping.mapper import map_network, stage_rate
from cimsim.mapping.plan import CoreSpec, LayerMapping, MappingPlan

__all__ = ["CoreSpec", "LayerMapping", "MappingPlan", "map_network", "stage_rate"]
