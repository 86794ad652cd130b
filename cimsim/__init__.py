"""cimsim: a cycle-level discrete-event simulator of tiled compute-in-memory chips."""

__version__ = "0.1.0"
