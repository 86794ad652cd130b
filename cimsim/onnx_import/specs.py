"""What a translation produces: cimsim layer specs with float weights, and the graph's interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Spec:
    """One cimsim layer being built: model-file ``type`` and keys, float weights, fused ONNX nodes."""

    name: str
    type: str
    inputs: list[str]
    keys: dict[str, Any] = field(default_factory=dict)
    w: np.ndarray | None = None
    """Float weights (kh, kw, C_in / groups, C_out) (conv) or (1, 1, C_in, C_out) (fc)."""
    b: np.ndarray | None = None
    relu: bool = False
    clip: float | None = None
    """Upper clip of a Clip(0, m) (ReLU6: 6.0); the layer's output scale is then m / 127."""
    nodes: list[str] = field(default_factory=list)
    """The ONNX nodes fused into this layer."""


@dataclass
class Translation:
    """The graph as cimsim layer specs, with what is needed to feed and read it."""

    input_name: str
    """cimsim name of the input layer."""
    onnx_input: str
    input_shape: tuple[int, ...]
    """ONNX shape of the input without the batch dimension: (C, H, W) or (F,)."""
    specs: list[Spec]
    output_layer: str
    onnx_output: str
    output_shape: tuple[int, ...]
    """ONNX shape of the output without the batch dimension."""
    notes: tuple[str, ...] = ()
    """What the import changed that a user should know (a dropped final Softmax: then `onnx_output`
    is the Softmax's input, not the graph's output)."""
    sources: tuple[Path, ...] = ()
    """The files read: the ``.onnx`` and its external data files."""
