"""What a digital stage's processor computes: the layers that run on a core of their own without
its crossbar (`cimsim.mapping.stages.Unit.DIGITAL`), output pixel by output pixel.

`DigitalMath.compute` gives the int8 outputs of any set of output positions of one image from
its input map, with the reference's integer arithmetic (`cimsim.functional.reference`), so a
group computed alone equals the same pixels of the whole layer:

- ``maxpool``: window maximum (padding never wins), then ReLU if the layer has it;
- ``local_avgpool``: the window's int64 sum over its count (the kernel area with
  ``count_include_pad``, else the in-bounds elements), rounded half to even;
- ``avgpool`` (a global pool not fused into its producer): the mean of the whole map;
- ``conv`` (a depthwise or grouped conv with ``mapping.depthwise = "digital"``): per-group
  int64 multiply-accumulate, then requantisation with the layer's ReLU;
- ``fc`` (on a processor of its own): the whole map flattened in (h, w, c) order, as the
  reference's ``flatten``, times the weights, then requantisation;
- ``add`` (not fused): the main input's pixel itself; the saturating add of the residual
  and the layer's ReLU are applied by the caller, as for an add fused into a stage.
"""

from __future__ import annotations

import numpy as np

from cimsim.functional.chip_math import windows
from cimsim.functional.reference import INT8_MIN, Pair, _pair, divide_round_half_even, requantise
from cimsim.functional.weights import LayerParams
from cimsim.network.layers import Layer, LayerKind

DIGITAL_KINDS: frozenset[LayerKind] = frozenset({
    LayerKind.MAXPOOL, LayerKind.LOCAL_AVGPOOL, LayerKind.AVGPOOL, LayerKind.CONV, LayerKind.FC, LayerKind.ADD})
"""Layer kinds `DigitalMath` computes."""


class DigitalMath:
    """The digital processor's arithmetic for one stage's own layer (module docstring).

    ``kernel``, ``stride`` and ``padding`` are the stage's window over its input map
    (``in_h`` x ``in_w``), as its dataflow controller slides it.
    """

    def __init__(self, layer: Layer, params: LayerParams | None, in_hw: tuple[int, int], kernel: Pair,
                 stride: Pair, padding: Pair) -> None:
        if layer.kind not in DIGITAL_KINDS:
            raise ValueError(f"layer {layer.name!r}: kind {layer.kind!r} does not run on a digital processor")
        if layer.kind in (LayerKind.CONV, LayerKind.FC) and params is None:
            raise ValueError(f"layer {layer.name!r}: a {layer.kind} needs its weights")
        self.layer, self.params = layer, params
        self.in_hw = in_hw
        self.kernel, self.stride, self.padding = _pair(kernel), _pair(stride), _pair(padding)

    def _windows(self, x: np.ndarray, positions: list[tuple[int, int]], fill: int = 0) -> np.ndarray:
        """(n, kh * kw, C) windows of the positions, rows (ky, kx)."""
        w = windows(x, positions, self.kernel, self.stride, self.padding, fill=fill)
        return w.reshape(len(positions), self.kernel[0] * self.kernel[1], x.shape[2])

    def counts(self, positions: list[tuple[int, int]]) -> np.ndarray:
        """In-bounds elements of each position's window (n, 1)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        h, w = self.in_hw
        rc = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
        top, left = rc[:, 0] * sh - ph, rc[:, 1] * sw - pw
        rows = np.minimum(h, top + kh) - np.maximum(0, top)
        cols = np.minimum(w, left + kw) - np.maximum(0, left)
        return (rows * cols)[:, None]

    def compute(self, x: np.ndarray, positions: list[tuple[int, int]]) -> np.ndarray:
        """int8 outputs (n, C_out) at output ``positions`` [(row, col), ...] of int8 map ``x`` (H, W, C)."""
        layer, kind = self.layer, self.layer.kind
        if kind is LayerKind.MAXPOOL:
            out = self._windows(x, positions, fill=INT8_MIN).max(axis=1)
            return np.maximum(out, 0) if layer.relu else out
        if kind in (LayerKind.LOCAL_AVGPOOL, LayerKind.AVGPOOL):
            total = self._windows(x, positions).astype(np.int64).sum(axis=1)
            kh, kw = self.kernel
            count: np.ndarray | int = kh * kw if kind is LayerKind.AVGPOOL or layer.count_include_pad \
                else self.counts(positions)
            return divide_round_half_even(total, count).astype(np.int8)
        if kind is LayerKind.ADD:
            return self._windows(x, positions)[:, 0, :].copy()
        assert self.params is not None
        if kind is LayerKind.FC:
            flat = self._windows(x, positions).reshape(len(positions), -1).astype(np.int64)
            acc = flat @ self.params.weights.reshape(flat.shape[1], -1).astype(np.int64)
        else:
            acc = self._grouped(self._windows(x, positions).astype(np.int64))
        return requantise(acc, self.params, layer.relu)

    def _grouped(self, win: np.ndarray) -> np.ndarray:
        """int64 accumulators (n, C_out) of a grouped conv's windows (n, kh * kw, C_in)."""
        assert self.params is not None
        w = self.params.weights.astype(np.int64)  # (kh, kw, C_in / groups, C_out)
        kh, kw, cin_g, cout = w.shape
        groups = self.layer.groups
        n = win.shape[0]
        x = win.reshape(n, kh * kw, groups, cin_g)
        wg = w.reshape(kh * kw, cin_g, groups, cout // groups)
        return np.einsum("nkgc,kcgo->ngo", x, wg).reshape(n, cout)


__all__ = ["DIGITAL_KINDS", "DigitalMath"]
