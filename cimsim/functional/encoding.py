"""Input encodings of the crossbars: two's complement, or RAELLA's split-sign passes.

``functional.input_encoding``:

- ``"twos_complement"`` (default): an int8 input is fed as two's-complement slices, the
  slice that holds the sign bit a signed number (a bipolar DAC; `cimsim.functional.crossbar`).
- ``"split_sign"``: RAELLA's scheme (Andrulis 2023, section 6.1: "Latency is doubled for
  signed inputs as positive/negative inputs are processed in separate cycles"). A layer whose
  input can be negative runs every MVM twice through the same crossbars: once with the
  positive parts ``max(x, 0)`` and once with the magnitudes of the negative parts
  ``max(-x, 0)`` (0..128, unsigned 8-bit slices, each pass with its own speculative and
  recovery input slices); the digital shift-and-add subtracts the second pass from the first.
  Both passes always run (the crossbar schedule is static), so such a layer's MVMs take twice
  the crossbar cycles and ADC converts. A layer whose input cannot be negative is unchanged.

Which inputs can be negative (`input_can_be_negative`), decided from the network alone:
the network input (int8 images) can; the output of a conv, fc, add or maxpool with ``relu``
cannot (requantisation with ReLU clips at 0); a max / average pool, flatten or concat is
non-negative when all its inputs are; anything else can be negative.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from cimsim.functional.crossbar import COUNTERS
from cimsim.network import Network
from cimsim.network.layers import LayerKind

RELU_KINDS: frozenset[LayerKind] = frozenset({LayerKind.CONV, LayerKind.FC, LayerKind.ADD, LayerKind.MAXPOOL})
"""Kinds whose ``relu`` flag makes their output non-negative."""
PASS_THROUGH_KINDS: frozenset[LayerKind] = frozenset(
    {LayerKind.MAXPOOL, LayerKind.AVGPOOL, LayerKind.LOCAL_AVGPOOL, LayerKind.FLATTEN, LayerKind.CONCAT}
)
"""Kinds whose output is non-negative when all their inputs are."""


class InputEncoding(StrEnum):
    """Values of ``functional.input_encoding`` (module docstring)."""

    TWOS_COMPLEMENT = "twos_complement"
    SPLIT_SIGN = "split_sign"


def output_non_negative(net: Network, name: str, _memo: dict[str, bool] | None = None) -> bool:
    """Whether layer ``name``'s int8 output is >= 0 for every input (module docstring's rule)."""
    memo = {} if _memo is None else _memo
    if name in memo:
        return memo[name]
    layer = net.layer(name)
    if layer.kind is LayerKind.INPUT:
        out = False
    elif layer.kind in RELU_KINDS and layer.relu:
        out = True
    elif layer.kind in PASS_THROUGH_KINDS:
        out = bool(layer.inputs) and all(output_non_negative(net, i, memo) for i in layer.inputs)
    else:
        out = False
    memo[name] = out
    return out


def input_can_be_negative(net: Network, name: str) -> bool:
    """Whether the main input of layer ``name`` (a conv or fc) can hold negative values."""
    layer = net.layer(name)
    return not all(output_non_negative(net, i) for i in layer.inputs[:1])


def sign_passes(encoding: str, net: Network, name: str) -> int:
    """Crossbar passes per MVM of layer ``name``: 2 for a split-sign layer with a signed input, else 1."""
    return 2 if encoding == InputEncoding.SPLIT_SIGN and input_can_be_negative(net, name) else 1


def split(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two passes' unsigned inputs of int8 ``windows``: ``max(x, 0)`` and ``max(-x, 0)`` (uint8)."""
    x = np.asarray(windows).astype(np.int16)
    return np.maximum(x, 0).astype(np.uint8), np.maximum(-x, 0).astype(np.uint8)


def combine_counters(results) -> dict[str, int]:
    """Counters (`COUNTERS`) summed over the passes' results."""
    return {name: sum(int(getattr(r, name)) for r in results) for name in COUNTERS}


__all__ = [
    "InputEncoding",
    "combine_counters",
    "input_can_be_negative",
    "output_non_negative",
    "sign_passes",
    "split",
]
