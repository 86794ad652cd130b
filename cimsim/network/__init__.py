"""The CNN being simulated: layers, their dataflow graph, and the model-file loader."""

from cimsim.network.layers import Layer, Network
from cimsim.network.model import load_model

__all__ = ["Layer", "Network", "load_model"]
