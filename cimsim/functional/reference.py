"""Numpy reference forward pass of an int8 network (the ground truth for the chip).

Every layer's output is an int8 array ``(batch, H, W, C)``:

- ``input``: the images themselves.
- ``conv`` / ``fc``: ``requantise(conv_accumulate(x, w, stride, padding), params, relu)``;
  an fc is a 1x1 convolution of its ``(batch, 1, 1, C_in)`` input.
- ``add``: int8 *saturating* add of the (already requantised) main and residual
  inputs, then ReLU if the layer has ``relu``. Both inputs share one scale, so no
  rescaling happens in the add (`make_params` calibrates them that way).
- ``avgpool``: global integer mean per channel, the sum over H x W divided by
  H * W and rounded half to even (exact integer arithmetic, no float rounding).
- grouped / depthwise ``conv``: each of the ``groups`` groups convolves its
  ``C_in / groups`` input channels with its ``C_out / groups`` filters (output
  channel ``j`` is in group ``j // (C_out / groups)``, as in ONNX and PyTorch);
  weights are (kh, kw, C_in / groups, C_out). Non-square kernels, strides and
  paddings work along H and W separately.
- ``maxpool``: int8 maximum over each window; padding never wins (it is -inf;
  every window holds at least one real element since padding < kernel); then
  ReLU if ``relu``. Same scale in and out.
- ``local_avgpool``: per window, the int64 sum of the int8 inputs divided by the
  count, rounded half to even (as the global one): the count is the kernel area
  with ``count_include_pad`` (zeros padded in), else the in-bounds elements only
  (ONNX's default). Same scale in and out.
- ``flatten``: ``(B, H, W, C) -> (B, 1, 1, H*W*C)`` in (h, w, c) order, the order
  in which the pixels of a feature map stream out; an fc on it is a plain fc.
- ``concat``: the inputs side by side along channels, in ``inputs`` order. All
  share one scale, so no rescaling (`make_params` calibrates them that way).

Requantisation is ``clip(floor(((acc + bias) * multiplier + 2**(shift-1)) / 2**shift))``,
i.e. round half up (towards +inf), in int64, clipped to [-128, 127]; ReLU then
clamps at 0. With ``shift == 0`` there is no rounding term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cimsim.functional.weights import LayerParams
    from cimsim.network.layers import Layer, Network

INT8_MIN, INT8_MAX = -128, 127


Pair = int | tuple[int, int]
"""A size along H and W: one int for both, or (H, W)."""


def _pair(value: Pair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output height/width of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def _windows(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, fill: float = 0) -> np.ndarray:
    """Strided sliding windows of ``x`` (B, H, W, C) padded with ``fill``: a view (B, Ho, Wo, C, kh, kw)."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    h, w = x.shape[1:3]
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=fill)
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return view[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]


def im2col(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """Windows of ``x`` (B, H, W, C) as (B, Ho, Wo, kh*kw*C), rows ordered (ky, kx, c).

    Zero padding; keeps the dtype of ``x``. ``kernel``, ``stride`` and ``padding``
    are ints (square) or (H, W) pairs.
    """
    view = _windows(x, kernel, stride, padding)
    b, ho, wo, c, kh, kw = view.shape
    # view: (B, Ho, Wo, C, ky, kx) -> reorder to (B, Ho, Wo, ky, kx, C)
    return np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3)).reshape(b, ho, wo, kh * kw * c)


def kernel_matrix(weights: np.ndarray) -> np.ndarray:
    """(kernel, kernel, c_in, c_out) weights as the (kernel*kernel*c_in, c_out) crossbar matrix."""
    k1, k2, cin, cout = weights.shape
    return weights.reshape(k1 * k2 * cin, cout)


def conv_accumulate(
    x: np.ndarray, weights: np.ndarray, stride: Pair = 1, padding: Pair = 0, groups: int = 1
) -> np.ndarray:
    """Exact int32 accumulators (B, Ho, Wo, C_out) of int8 ``x`` (B, H, W, C_in) with int8 ``weights``
    (kh, kw, C_in / groups, C_out).

    Computed as an im2col matrix product in float64, which is exact here: every
    product and partial sum is an integer far below 2**53.
    """
    return np.rint(float_conv(x.astype(np.float64), weights.astype(np.float64), stride, padding, groups)
                   ).astype(np.int32)


def float_conv(x: np.ndarray, weights: np.ndarray, stride: Pair = 1, padding: Pair = 0,
               groups: int = 1) -> np.ndarray:
    """Float convolution of ``x`` (B, H, W, C_in) with ``weights`` (kh, kw, C_in / groups, C_out), no bias."""
    kh, kw, cin_g, cout = weights.shape
    if groups == 1:
        return im2col(x, (kh, kw), stride, padding) @ kernel_matrix(weights)
    view = _windows(x, (kh, kw), stride, padding)  # (B, Ho, Wo, C_in, kh, kw)
    b, ho, wo = view.shape[:3]
    cout_g = cout // groups
    grouped = view.reshape(b, ho, wo, groups, cin_g, kh, kw)
    w = weights.reshape(kh, kw, cin_g, groups, cout_g)
    out = np.einsum("bhwgcyx,yxcgo->bhwgo", grouped, w, optimize=True)
    return out.reshape(b, ho, wo, cout)


def requantise(acc: np.ndarray, params: LayerParams, relu: bool) -> np.ndarray:
    """int32 accumulators (..., C_out) -> int8 outputs, per the module docstring."""
    v = (acc.astype(np.int64) + params.bias.astype(np.int64)) * params.multiplier.astype(np.int64)
    if params.shift > 0:
        v = (v + (1 << (params.shift - 1))) >> params.shift
    v = np.clip(v, 0 if relu else INT8_MIN, INT8_MAX)
    return v.astype(np.int8)


def saturating_add(main: np.ndarray, residual: np.ndarray, relu: bool) -> np.ndarray:
    """int8 + int8 saturated to [-128, 127], then ReLU if ``relu``."""
    v = main.astype(np.int16) + residual.astype(np.int16)
    return np.clip(v, 0 if relu else INT8_MIN, INT8_MAX).astype(np.int8)


def divide_round_half_even(total: np.ndarray, count: np.ndarray | int) -> np.ndarray:
    """``total / count`` for integer arrays (count > 0), rounded half to even, exactly."""
    q, r = np.divmod(total, count)  # floor division: 0 <= r < count
    up = (2 * r > count) | ((2 * r == count) & (q % 2 == 1))
    return q + up


def global_avgpool(x: np.ndarray) -> np.ndarray:
    """Integer global mean of int8 ``x`` (B, H, W, C) -> (B, 1, 1, C), rounded half to even."""
    b, h, w, c = x.shape
    total = x.astype(np.int64).sum(axis=(1, 2))
    return divide_round_half_even(total, h * w).astype(np.int8).reshape(b, 1, 1, c)


def maxpool(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, relu: bool = False) -> np.ndarray:
    """Window maximum of int8 ``x`` (B, H, W, C) (padding never wins), then ReLU if ``relu``."""
    view = _windows(x, kernel, stride, padding, fill=INT8_MIN)
    out = view.max(axis=(4, 5))
    return np.maximum(out, 0) if relu else out


def window_counts(h: int, w: int, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """In-bounds elements of each output window (Ho, Wo, 1) of an H x W map."""
    ones = np.ones((1, h, w, 1), dtype=np.int64)
    return _windows(ones, kernel, stride, padding).sum(axis=(4, 5))[0]


def local_avgpool(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair,
                  count_include_pad: bool = False) -> np.ndarray:
    """Integer window mean of int8 ``x`` (B, H, W, C), rounded half to even (see the module docstring)."""
    total = _windows(x.astype(np.int64), kernel, stride, padding).sum(axis=(4, 5))
    if count_include_pad:
        kh, kw = _pair(kernel)
        count: np.ndarray | int = kh * kw
    else:
        count = window_counts(x.shape[1], x.shape[2], kernel, stride, padding)
    return divide_round_half_even(total, count).astype(np.int8)


def maxpool_float(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """Window maximum of float ``x`` (B, H, W, C), padding as -inf."""
    return _windows(x, kernel, stride, padding, fill=-np.inf).max(axis=(4, 5))


def local_avgpool_float(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair,
                        count_include_pad: bool = False) -> np.ndarray:
    """Window mean of float ``x`` (B, H, W, C), dividing as `local_avgpool` does."""
    total = _windows(x, kernel, stride, padding).sum(axis=(4, 5))
    if count_include_pad:
        kh, kw = _pair(kernel)
        return total / (kh * kw)
    return total / window_counts(x.shape[1], x.shape[2], kernel, stride, padding)


def layer_forward(layer: Layer, params: dict[str, LayerParams], inputs: list[np.ndarray]) -> np.ndarray:
    """One layer's int8 output from its int8 input tensors (in ``layer.inputs`` order)."""
    if layer.kind in ("conv", "fc"):
        p = params[layer.name]
        if layer.kind == "conv":
            acc = conv_accumulate(inputs[0], p.weights, layer.stride_hw, layer.padding_hw, layer.groups)
        else:
            acc = conv_accumulate(inputs[0], p.weights, 1, 0)
        return requantise(acc, p, layer.relu)
    if layer.kind == "add":
        return saturating_add(inputs[0], inputs[1], layer.relu)
    if layer.kind == "avgpool":
        return global_avgpool(inputs[0])
    if layer.kind == "maxpool":
        return maxpool(inputs[0], layer.kernel_hw, layer.stride_hw, layer.padding_hw, layer.relu)
    if layer.kind == "local_avgpool":
        return local_avgpool(inputs[0], layer.kernel_hw, layer.stride_hw, layer.padding_hw, layer.count_include_pad)
    if layer.kind == "flatten":
        return inputs[0].reshape(inputs[0].shape[0], 1, 1, -1)
    if layer.kind == "concat":
        return np.concatenate(inputs, axis=3)
    raise ValueError(f"layer {layer.name!r}: kind {layer.kind!r} has no reference implementation")


def reference_forward(
    network: Network, params: dict[str, LayerParams], images: np.ndarray
) -> dict[str, np.ndarray]:
    """Every layer's int8 output (batch, H, W, C) for int8 ``images`` (batch, H, W, C)."""
    inp = network.input_layer
    expected = (inp.out_h, inp.out_w, inp.out_channels)
    if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.int8:
        raise ValueError(
            f"images must be int8 (batch, {expected[0]}, {expected[1]}, {expected[2]}), "
            f"got {images.dtype} {images.shape}"
        )
    out: dict[str, np.ndarray] = {inp.name: images}
    for layer in network.layers[1:]:
        out[layer.name] = layer_forward(layer, params, [out[name] for name in layer.inputs])
    return out
