"""Layer -> crossbars -> cores: splitting, replication, SRAM layouts, placement."""

from cimsim.mapping.mapper import layer_rate, map_network
from cimsim.mapping.plan import CoreSpec, LayerMapping, MappingPlan

__all__ = ["CoreSpec", "LayerMapping", "MappingPlan", "layer_rate", "map_network"]
