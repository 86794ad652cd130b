"""What the simulated cores compute: one conv/fc layer split over crossbars, group by group.

`LayerMath` holds the kernel matrix of a layer (rows ordered (ky, kx, c_in),
columns = output channels) split by rows over ``row_parts`` crossbars of
``xbar_rows`` rows (part ``r`` holds rows ``[r*xbar_rows, (r+1)*xbar_rows)``,
the last part the rest, as `cimsim.mapping.mapper` splits them). Each part
computes its partial sum on its own crossbar and the parts are added
digitally (Dazzi et al. 2021, Eq. 5). Output channels beyond
``crossbar_config.cols`` are split over further crossbars by columns and
concatenated (Eq. 6).

A call to `LayerMath.compute` is one *group*: the windows in it go through the
crossbars together (e.g. the ``nr_parallel`` kernel replicas of one step), so
its ``crossbar_cycles`` is the max over windows and parts; the per-window
``cycles`` array lets a caller compute a whole image's layer in one call and
split it into groups afterwards (group cycles = max of its windows' cycles).
Replicas hold the same weights, so each window's values do not depend on which
replica computes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cimsim.functional.crossbar import COUNTERS, Crossbar, CrossbarConfig
from cimsim.functional.reference import kernel_matrix, requantise, saturating_add
from cimsim.functional.weights import LayerParams, weight_shape
from cimsim.network.layers import Layer


@dataclass(frozen=True, eq=False)
class GroupResult:
    """Result of `LayerMath.compute` for ``n`` windows.

    ``acc`` int32 (n, c_out): accumulators summed over row parts (bias not added).
    ``crossbar_cycles``: max over windows and parts. ``cycles`` int64 (n,): per
    window, max over parts. ``clipped_mask`` bool (n, c_out): outputs that an
    accepted clipped ADC conversion touched (``acc`` is exact elsewhere).
    Counters (names in `cimsim.functional.crossbar.COUNTERS`) are summed over parts.
    """

    acc: np.ndarray
    crossbar_cycles: int
    speculative_slices: int = 0
    recovery_slices: int = 0
    failed_columns: int = 0
    failed_slices: int = 0
    adc_converts: int = 0
    speculative_converts: int = 0
    recovery_converts: int = 0
    saturations_accepted: int = 0
    clipped_converts: int = 0
    column_mvms: int = 0
    mvms: int = 0
    recovery_mvms: int = 0
    cycles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    clipped_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    def counters(self) -> dict[str, int]:
        """The integer counters as a dict."""
        return {name: int(getattr(self, name)) for name in COUNTERS}


class LayerMath:
    """Crossbars and digital post-processing of one conv or fc layer (module docstring)."""

    def __init__(
        self, layer: Layer, params: LayerParams, crossbar_config: CrossbarConfig, row_parts: int, xbar_rows: int
    ):
        if layer.kind not in ("conv", "fc"):
            raise ValueError(f"layer {layer.name!r}: LayerMath needs a conv or fc, got {layer.kind!r}")
        if params.weights.shape != weight_shape(layer):
            raise ValueError(
                f"layer {layer.name!r}: weights have shape {params.weights.shape}, expected {weight_shape(layer)}"
            )
        rows = layer.kernel_rows
        if not 1 <= xbar_rows <= crossbar_config.rows:
            raise ValueError(f"xbar_rows = {xbar_rows} must be in 1..crossbar rows ({crossbar_config.rows})")
        if row_parts < 1 or row_parts * xbar_rows < rows or (row_parts - 1) * xbar_rows >= rows:
            raise ValueError(
                f"layer {layer.name!r}: {rows} kernel rows cannot be split into {row_parts} parts of "
                f"<= {xbar_rows} rows (expected {-(-rows // xbar_rows)} parts)"
            )
        self.layer = layer
        self.params = params
        self.config = crossbar_config
        self.row_parts = row_parts
        self.xbar_rows = xbar_rows
        self.matrix = kernel_matrix(params.weights)
        cout, ccols = layer.out_channels, crossbar_config.cols
        self.parts: list[tuple[slice, slice, Crossbar]] = []
        for r in range(row_parts):
            rs = slice(r * xbar_rows, min(rows, (r + 1) * xbar_rows))
            for c0 in range(0, cout, ccols):
                cs = slice(c0, min(cout, c0 + ccols))
                self.parts.append((rs, cs, Crossbar(self.matrix[rs, cs], crossbar_config)))

    @property
    def kernel(self) -> int:
        """Kernel size (1 for an fc)."""
        return self.layer.kernel if self.layer.kind == "conv" else 1

    def compute(self, windows: np.ndarray) -> GroupResult:
        """Accumulators of int8 ``windows`` (n, kernel*kernel*c_in) through the crossbars."""
        windows = np.asarray(windows)
        rows = self.layer.kernel_rows
        if windows.ndim != 2 or windows.shape[1] != rows:
            raise ValueError(f"layer {self.layer.name!r}: windows must be (n, {rows}), got {windows.shape}")
        n = windows.shape[0]
        acc = np.zeros((n, self.layer.out_channels), dtype=np.int64)
        clipped = np.zeros((n, self.layer.out_channels), dtype=bool)
        cycles = np.zeros(n, dtype=np.int64)
        totals = dict.fromkeys(COUNTERS, 0)
        for rs, cs, xbar in self.parts:
            res = xbar.mvm(windows[:, rs])
            acc[:, cs] += res.values
            clipped[:, cs] |= res.clipped_mask
            np.maximum(cycles, res.cycles, out=cycles)
            for name in COUNTERS:
                totals[name] += getattr(res, name)
        return GroupResult(
            acc=acc.astype(np.int32),
            crossbar_cycles=int(cycles.max()) if n else 0,
            cycles=cycles,
            clipped_mask=clipped,
            **totals,
        )

    def finish(self, acc: np.ndarray, relu: bool | None = None, residual: np.ndarray | None = None) -> np.ndarray:
        """int8 outputs (n, c_out) from accumulators, exactly as the reference computes them.

        Without ``residual``: requantise with ReLU if ``relu`` (default: the
        layer's own ``relu``). With ``residual`` (int8 (n, c_out), the shortcut of
        the add this layer feeds): requantise with the layer's own ReLU, int8
        saturating add of ``residual``, then ReLU if ``relu`` (the add's relu).
        """
        if residual is None:
            return requantise(acc, self.params, self.layer.relu if relu is None else relu)
        residual = np.asarray(residual)
        if residual.shape != acc.shape:
            raise ValueError(f"residual has shape {residual.shape}, expected {acc.shape}")
        main = requantise(acc, self.params, self.layer.relu)
        return saturating_add(main, residual.astype(np.int8), bool(relu))


def windows(
    activations: np.ndarray, rows_cols, kernel: int, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Input windows (n, kernel*kernel*C) of output positions ``rows_cols`` [(row, col), ...].

    ``activations`` is one image's int8 feature map (H, W, C); out-of-image
    positions read zero (padding). Rows are ordered (ky, kx, c) like the kernel matrix.
    """
    act = np.asarray(activations)
    if act.ndim != 3:
        raise ValueError(f"activations must be (H, W, C), got shape {act.shape}")
    h, w, c = act.shape
    rc = np.asarray(rows_cols, dtype=np.int64).reshape(-1, 2)
    if padding:
        act = np.pad(act, ((padding, padding), (padding, padding), (0, 0)))
    top, left = rc[:, 0] * stride, rc[:, 1] * stride
    if len(rc) and (
        rc.min() < 0 or (top + kernel).max() > h + 2 * padding or (left + kernel).max() > w + 2 * padding
    ):
        raise ValueError(f"an output position in {rc.tolist()[:4]}... lies outside the {h} x {w} input")
    k = np.arange(kernel)
    ys = (top[:, None] + k[None, :])[:, :, None]  # (n, ky, 1)
    xs = (left[:, None] + k[None, :])[:, None, :]  # (n, 1, kx)
    return act[ys, xs].reshape(len(rc), kernel * kernel * c)


def all_positions(layer: Layer) -> list[tuple[int, int]]:
    """Every output (row, col) of ``layer`` in raster order."""
    return [(r, c) for r in range(layer.out_h) for c in range(layer.out_w)]


def build_layer_maths(
    network, params: dict[str, LayerParams], crossbar_config: CrossbarConfig, xbar_rows: int
) -> dict[str, LayerMath]:
    """A `LayerMath` for every conv/fc, split into ceil(kernel_rows / xbar_rows) row parts."""
    return {
        layer.name: LayerMath(
            layer, params[layer.name], crossbar_config, -(-layer.kernel_rows // xbar_rows), xbar_rows
        )
        for layer in network.layers
        if layer.kind in ("conv", "fc")
    }


def chip_forward(
    network,
    params: dict[str, LayerParams],
    image: np.ndarray,
    crossbar_config: CrossbarConfig,
    xbar_rows: int,
    maths: dict[str, LayerMath] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, GroupResult]]:
    """One image (H, W, C) through the chip's arithmetic, every layer on the chip's own outputs.

    conv/fc layers run through `LayerMath` (all outputs of a layer in one
    call); an add whose main input is a conv is computed by that conv's
    ``finish`` with the residual (as the core's digital processor does), other
    adds and the average pool by the reference functions. Returns each layer's
    int8 output (1, H, W, C) and each conv/fc's `GroupResult`. Pass ``maths``
    (from `build_layer_maths`) to reuse the programmed crossbars across images.
    """
    from cimsim.functional.reference import global_avgpool

    inp = network.input_layer
    out: dict[str, np.ndarray] = {inp.name: np.asarray(image)[None]}
    results: dict[str, GroupResult] = {}
    if maths is None:
        maths = build_layer_maths(network, params, crossbar_config, xbar_rows)
    for layer in network.layers[1:]:
        if layer.kind in ("conv", "fc"):
            lm = maths[layer.name]
            stride, padding = (layer.stride, layer.padding) if layer.kind == "conv" else (1, 0)
            win = windows(out[layer.inputs[0]][0], all_positions(layer), lm.kernel, stride, padding)
            res = results[layer.name] = lm.compute(win)
            y = lm.finish(res.acc)
        elif layer.kind == "add":
            main, residual = layer.inputs
            if main in maths:
                res_in = out[residual][0].reshape(-1, layer.out_channels)
                y = maths[main].finish(results[main].acc, layer.relu, res_in)
            else:
                y = saturating_add(out[main][0], out[residual][0], layer.relu)
        elif layer.kind == "avgpool":
            y = global_avgpool(out[layer.inputs[0]])
        else:
            raise ValueError(f"layer {layer.name!r}: kind {layer.kind!r} not supported")
        out[layer.name] = np.asarray(y).reshape(1, layer.out_h, layer.out_w, layer.out_channels)
    return out, results
