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


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output height/width of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Windows of ``x`` (B, H, W, C) as (B, Ho, Wo, kernel*kernel*C), rows ordered (ky, kx, c).

    Zero padding; keeps the dtype of ``x``.
    """
    b, h, w, c = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = out_size(h, kernel, stride, padding), out_size(w, kernel, stride, padding)
    view = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))
    # view: (B, H', W', C, ky, kx) -> stride, crop, reorder to (B, Ho, Wo, ky, kx, C)
    view = view[:, : (ho - 1) * stride + 1 : stride, : (wo - 1) * stride + 1 : stride]
    return np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3)).reshape(b, ho, wo, kernel * kernel * c)


def kernel_matrix(weights: np.ndarray) -> np.ndarray:
    """(kernel, kernel, c_in, c_out) weights as the (kernel*kernel*c_in, c_out) crossbar matrix."""
    k1, k2, cin, cout = weights.shape
    return weights.reshape(k1 * k2 * cin, cout)


def conv_accumulate(x: np.ndarray, weights: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Exact int32 accumulators (B, Ho, Wo, C_out) of int8 ``x`` (B, H, W, C_in) with int8 ``weights``.

    Computed as an im2col matrix product in float64, which is exact here: every
    product and partial sum is an integer far below 2**53.
    """
    kernel = weights.shape[0]
    cols = im2col(x.astype(np.float64), kernel, stride, padding)
    acc = cols @ kernel_matrix(weights).astype(np.float64)
    return np.rint(acc).astype(np.int32)


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


def global_avgpool(x: np.ndarray) -> np.ndarray:
    """Integer global mean of int8 ``x`` (B, H, W, C) -> (B, 1, 1, C), rounded half to even."""
    b, h, w, c = x.shape
    count = h * w
    total = x.astype(np.int64).sum(axis=(1, 2))
    q, r = np.divmod(total, count)  # floor division: 0 <= r < count
    up = (2 * r > count) | ((2 * r == count) & (q % 2 == 1))
    return (q + up).astype(np.int8).reshape(b, 1, 1, c)


def layer_forward(layer: Layer, params: dict[str, LayerParams], inputs: list[np.ndarray]) -> np.ndarray:
    """One layer's int8 output from its int8 input tensors (in ``layer.inputs`` order)."""
    if layer.kind in ("conv", "fc"):
        p = params[layer.name]
        stride, padding = (layer.stride, layer.padding) if layer.kind == "conv" else (1, 0)
        acc = conv_accumulate(inputs[0], p.weights, stride, padding)
        return requantise(acc, p, layer.relu)
    if layer.kind == "add":
        return saturating_add(inputs[0], inputs[1], layer.relu)
    if layer.kind == "avgpool":
        return global_avgpool(inputs[0])
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
