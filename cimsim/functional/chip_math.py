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

A grouped or depthwise conv is the dense, block-diagonal ``kh*kw*C_in x C_out``
matrix (`dense_kernel_matrix`: zeros where an input channel is not in an output
channel's group), programmed as it is on the array, zero devices included, so the
ADC statistics count them. A depthwise conv split into ``jobs`` (Ottavi et al. 2021,
`mapping.depthwise_job_channels`) sits on a ``kh*kw*C_in x C_job`` array (``C_job =
C_out / jobs``), the mapper's rows x columns: the rows of an input channel hold its
kernel in the column of its output channel modulo ``C_job`` and zeros elsewhere (the
block-diagonal matrix with its job blocks folded onto the same columns). Job ``j``
is one MVM that drives only the rows of its channels (the others get zero inputs) and
reads the ``C_job`` columns as output channels ``j*C_job ..``; the jobs run one after
another, so a window's cycles are the sum over its jobs (``job_cycles`` keeps them apart).
(With a depth multiplier whose channels' outputs straddle two jobs the blocks cannot share
columns: each job then has its own ``kh*kw*C_in x C_job`` block of the matrix.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cimsim.functional.crossbar import COUNTERS, Crossbar, CrossbarConfig
from cimsim.functional.encoding import combine_counters, split
from cimsim.functional.reference import Pair, _pair, kernel_matrix, requantise, saturating_add
from cimsim.functional.weights import LayerParams, weight_shape
from cimsim.network.layers import Layer


@dataclass(frozen=True, eq=False)
class GroupResult:
    """Result of `LayerMath.compute` for ``n`` windows.

    ``acc`` int32 (n, c_out): accumulators summed over row parts (bias not added).
    ``crossbar_cycles``: max over windows of ``cycles``. ``cycles`` int64 (n,): per
    window, max over parts (summed over the jobs of a depthwise conv split into jobs). ``clipped_mask`` bool (n, c_out): outputs that an
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
    job_cycles: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), dtype=np.int64))
    """int64 (jobs, n): per job and window, max over the job's parts (``cycles`` is their sum)."""
    clipped_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    def counters(self) -> dict[str, int]:
        """The integer counters as a dict."""
        return {name: int(getattr(self, name)) for name in COUNTERS}


class LayerMath:
    """Crossbars and digital post-processing of one conv or fc layer (module docstring)."""

    def __init__(
        self, layer: Layer, params: LayerParams, crossbar_config: CrossbarConfig, row_parts: int, xbar_rows: int,
        jobs: int = 1, crossbar_factory: Callable[[np.ndarray, CrossbarConfig], Any] | None = None,
        sign_passes: int = 1,
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
        cout, ccols = layer.out_channels, crossbar_config.cols
        groups = layer.groups if layer.kind == "conv" else 1
        if jobs < 1 or cout % jobs:
            raise ValueError(f"layer {layer.name!r}: {cout} output channels cannot be split into {jobs} jobs")
        if sign_passes not in (1, 2):
            raise ValueError(f"sign_passes = {sign_passes}: expected 1 or 2")
        self.sign_passes = sign_passes
        """2: split-sign inputs (`cimsim.functional.encoding`), every MVM a positive and a negative pass."""
        if sign_passes == 2:
            crossbar_config = replace(crossbar_config, input_signed=False)
            self.config = crossbar_config
        self.jobs = jobs
        self.job_cols = cout // jobs
        """Crossbar columns of one job (C_out without jobs)."""
        self.matrix = dense_kernel_matrix(params.weights, groups)
        """The dense (block-diagonal) kernel matrix (rows, C_out)."""
        self.row_mask = _job_rows(layer, groups, jobs)
        """(jobs, rows) bool: the rows each job's MVM drives (all rows without jobs)."""
        folded = jobs == 1 or bool((self.row_mask.sum(axis=0) <= 1).all())
        if jobs == 1:
            arrays = [self.matrix]
        elif folded:  # fold the jobs' column blocks onto the C_job columns of one array
            arrays = [sum((self.matrix[:, j * self.job_cols:(j + 1) * self.job_cols] for j in range(jobs)),
                          np.zeros((rows, self.job_cols), dtype=self.matrix.dtype))]
        else:  # a channel's outputs straddle two jobs (a depth multiplier): a block per job
            arrays = [self.matrix[:, j * self.job_cols:(j + 1) * self.job_cols] for j in range(jobs)]
        make = crossbar_factory or Crossbar  # `cimsim.functional.noise.crossbar_factory`: noisy or PCM/PWM
        self.job_parts: list[list[tuple[slice, slice, Crossbar]]] = []
        """Each job's crossbars: (rows, columns of the job's outputs, crossbar)."""
        for array in arrays:
            parts = []
            for r in range(row_parts):
                rs = slice(r * xbar_rows, min(rows, (r + 1) * xbar_rows))
                for c0 in range(0, self.job_cols, ccols):
                    cs = slice(c0, min(self.job_cols, c0 + ccols))
                    parts.append((rs, cs, make(array[rs, cs], crossbar_config)))
            self.job_parts.append(parts)
        self.parts: list[tuple[slice, slice, Crossbar]] = [p for parts in self.job_parts for p in parts]
        """Every crossbar of the layer (rows, columns, crossbar)."""
        if len(self.job_parts) < jobs:
            self.job_parts *= jobs  # every job on the one folded array

    def job_windows(self, windows: np.ndarray, job: int) -> np.ndarray:
        """The inputs job `job` drives: ``windows`` with the rows of the other jobs zero."""
        if self.jobs == 1:
            return windows
        return np.where(self.row_mask[job][None, :], windows, 0).astype(windows.dtype)

    @property
    def kernel(self) -> int:
        """Kernel height (1 for an fc)."""
        return self.layer.kernel if self.layer.kind == "conv" else 1

    @property
    def kernel_hw(self) -> tuple[int, int]:
        """Kernel (height, width) ((1, 1) for an fc)."""
        return self.layer.kernel_hw if self.layer.kind == "conv" else (1, 1)

    def compute(self, windows: np.ndarray) -> GroupResult:
        """Accumulators of int8 ``windows`` (n, kernel*kernel*c_in) through the crossbars
        (with split-sign inputs: the positive pass minus the negative one, cycles and counters summed)."""
        return combine_passes(self.compute_passes(windows))

    def compute_passes(self, windows: np.ndarray) -> list[tuple[np.ndarray, GroupResult]]:
        """Each crossbar pass's inputs and result: one pass of ``windows``, or with split-sign
        inputs the positive and the negative pass (unsigned magnitudes)."""
        if self.sign_passes == 1:
            return [(windows, self._compute(windows))]
        return [(x, self._compute(x)) for x in split(windows)]

    def _compute(self, windows: np.ndarray) -> GroupResult:
        windows = np.asarray(windows)
        rows = self.layer.kernel_rows
        if windows.ndim != 2 or windows.shape[1] != rows:
            raise ValueError(f"layer {self.layer.name!r}: windows must be (n, {rows}), got {windows.shape}")
        n = windows.shape[0]
        acc = np.zeros((n, self.layer.out_channels), dtype=np.int64)
        clipped = np.zeros((n, self.layer.out_channels), dtype=bool)
        job_cycles = np.zeros((self.jobs, n), dtype=np.int64)
        totals = dict.fromkeys(COUNTERS, 0)
        for job in range(self.jobs):
            x = self.job_windows(windows, job)
            c0 = job * self.job_cols
            for rs, cs, xbar in self.job_parts[job]:
                res = xbar.mvm(x[:, rs])
                out = slice(c0 + cs.start, c0 + cs.stop)
                acc[:, out] += res.values
                clipped[:, out] |= res.clipped_mask
                np.maximum(job_cycles[job], res.cycles, out=job_cycles[job])
                for name in COUNTERS:
                    totals[name] += getattr(res, name)
        cycles = job_cycles.sum(axis=0)
        return GroupResult(
            acc=acc.astype(np.int32),
            crossbar_cycles=int(cycles.max()) if n else 0,
            cycles=cycles,
            job_cycles=job_cycles,
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


def combine_passes(passes: list[tuple[np.ndarray, GroupResult]]) -> GroupResult:
    """One `GroupResult` of `LayerMath.compute_passes`'s passes: the positive pass's accumulators
    minus the negative pass's, cycles and counters summed (one pass: its result)."""
    if len(passes) == 1:
        return passes[0][1]
    (_, pos), (_, neg) = passes
    cycles = pos.cycles + neg.cycles
    return GroupResult(
        acc=(pos.acc.astype(np.int64) - neg.acc).astype(np.int32),
        crossbar_cycles=int(cycles.max()) if len(cycles) else 0,
        cycles=cycles,
        job_cycles=pos.job_cycles + neg.job_cycles,
        clipped_mask=pos.clipped_mask | neg.clipped_mask,
        **combine_counters((pos, neg)),
    )


def dense_kernel_matrix(weights: np.ndarray, groups: int = 1) -> np.ndarray:
    """(kh, kw, C_in / groups, C_out) weights as the dense (kh*kw*C_in, C_out) crossbar matrix,
    rows ordered (ky, kx, c_in): output channel ``j`` of group ``g = j // (C_out / groups)`` holds
    its weights in the rows of input channels ``g*C_in/groups ..`` and zeros elsewhere."""
    if groups == 1:
        return kernel_matrix(weights)
    kh, kw, cin_g, cout = weights.shape
    dense = np.zeros((kh, kw, cin_g * groups, cout), dtype=weights.dtype)
    cout_g = cout // groups
    for g in range(groups):
        dense[:, :, g * cin_g:(g + 1) * cin_g, g * cout_g:(g + 1) * cout_g] = weights[..., g * cout_g:(g + 1) * cout_g]
    return kernel_matrix(dense)


def _job_rows(layer: Layer, groups: int, jobs: int) -> np.ndarray:
    """(jobs, rows) bool: the kernel-matrix rows (ordered (ky, kx, c_in)) whose group has outputs in
    each job's columns."""
    rows = layer.kernel_rows
    if jobs == 1:
        return np.ones((1, rows), dtype=bool)
    cin, cout = layer.in_channels, layer.out_channels
    cin_g, cout_g, job_cols = cin // groups, cout // groups, cout // jobs
    group = (np.arange(rows) % cin) // cin_g
    first, last = group * cout_g // job_cols, ((group + 1) * cout_g - 1) // job_cols
    j = np.arange(jobs)[:, None]
    return (first[None, :] <= j) & (j <= last[None, :])


def windows(activations: np.ndarray, rows_cols, kernel: Pair, stride: Pair = 1, padding: Pair = 0,
            fill: int = 0) -> np.ndarray:
    """Input windows (n, kh*kw*C) of output positions ``rows_cols`` [(row, col), ...].

    ``activations`` is one image's int8 feature map (H, W, C); out-of-image
    positions read ``fill`` (zero: padding). Rows are ordered (ky, kx, c) like the kernel
    matrix; ``kernel``, ``stride`` and ``padding`` are ints (square) or (H, W) pairs.
    """
    act = np.asarray(activations)
    if act.ndim != 3:
        raise ValueError(f"activations must be (H, W, C), got shape {act.shape}")
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    h, w, c = act.shape
    rc = np.asarray(rows_cols, dtype=np.int64).reshape(-1, 2)
    if ph or pw:
        act = np.pad(act, ((ph, ph), (pw, pw), (0, 0)), constant_values=fill)
    top, left = rc[:, 0] * sh, rc[:, 1] * sw
    if len(rc) and (
        rc.min() < 0 or (top + kh).max() > h + 2 * ph or (left + kw).max() > w + 2 * pw
    ):
        raise ValueError(f"an output position in {rc.tolist()[:4]}... lies outside the {h} x {w} input")
    ys = (top[:, None] + np.arange(kh)[None, :])[:, :, None]  # (n, ky, 1)
    xs = (left[:, None] + np.arange(kw)[None, :])[:, None, :]  # (n, 1, kx)
    return act[ys, xs].reshape(len(rc), kh * kw * c)


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
            stride, padding = (layer.stride_hw, layer.padding_hw) if layer.kind == "conv" else (1, 0)
            win = windows(out[layer.inputs[0]][0], all_positions(layer), lm.kernel_hw, stride, padding)
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
