"""int8 layer parameters and images: synthetic (seeded, realistic) or loaded from ``.npz``.

Synthetic parameters (`make_params`) model a trained, per-channel-quantised CNN:

- Raw weights of output channel ``j`` are Laplacian (trained CNN weights are
  peaked at zero with heavy tails) with scale ``sigma_j ~ LogNormal(0, 0.5)``
  and a small per-channel mean ``0.2 * sigma_j * N(0, 1)`` (filters are not
  zero-mean individually; RAELLA thesis 4.1.1, Fig. 4-2).
- A batch norm is folded in, as in every deployed int8 CNN: each channel's
  pre-activation is normalised on the calibration batch, then scaled by
  ``gamma_j ~ LogNormal(0, 0.3)`` (times 0.5 for the last conv of a residual
  branch, the main input of an add, so the residual stream grows gently as in
  trained ResNets) and shifted by ``beta_j ~ N(0, 0.3)``; weights and bias
  absorb it. The folded weights are quantised symmetrically per output
  channel to [-127, 127] (scale = max |w| / 127), so most int8 weights are
  small and a few reach the extremes.
- Requantisation: every activation tensor gets one real scale; tensors joined
  by an add (its output and both inputs), an avgpool (integer mean, same
  scale; global or local), a maxpool, a flatten or a concat (its output and all
  its inputs) share it. A float forward pass over a seeded calibration batch sets
  each scale so that the 99.9th percentile of |activation| maps to 127.
  Per-channel ``multiplier / 2**shift = s_in * s_w[j] / s_out`` with one
  ``shift`` per layer chosen so the largest multiplier lies in [2**30, 2**31).

Everything is drawn from one ``np.random.Generator(seed)``, so a seed fixes the
parameters exactly. Synthetic images (`make_images`) are natural-image-like
smooth random fields: Gaussian noise with a 1/f**1.5 amplitude spectrum
(natural images have a ~1/f**2 power spectrum; the slightly steeper one gives
32x32 images the adjacent-pixel correlation of about 0.9 that natural images
have, 1/f gives only 0.68 at this size), a luminance field shared by the channels
plus weaker per-channel fields, standardised and scaled to int8 with std ~40
(so zero-mean, signed, rarely clipped).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import InputError
from cimsim.functional.npz import Npz
from cimsim.functional.reference import float_conv, local_avgpool_float, maxpool_float
from cimsim.network.layers import Layer, LayerKind, Network

IMAGE_STD = 40.0
"""Standard deviation of synthetic int8 images (real value 1.0 maps to 40)."""
CALIBRATION_PERCENTILE = 99.9
"""Percentile of |activation| that `make_params` maps to 127."""
PARAM_ARRAYS = ("weights", "bias", "multiplier", "shift")
"""Array suffixes of one layer in a parameter ``.npz``."""


@dataclass(frozen=True, eq=False)
class LayerParams:
    """int8 weights and requantisation of one conv or fc layer.

    ``weights`` int8 (kh, kw, c_in / groups, c_out) ((1, 1, c_in, c_out) for an fc);
    ``bias`` int32 (c_out,) added to the accumulator; ``multiplier`` int32 (c_out,)
    and ``shift``: out = clip(round((acc + bias) * multiplier / 2**shift)) to int8,
    then ReLU where the layer has relu (see `cimsim.functional.reference.requantise`).
    """

    weights: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: int


SCALE_SHARING_KINDS: frozenset[LayerKind] = frozenset(
    {LayerKind.ADD, LayerKind.AVGPOOL, LayerKind.LOCAL_AVGPOOL, LayerKind.MAXPOOL, LayerKind.FLATTEN,
     LayerKind.CONCAT})
"""Kinds whose output and inputs share one activation scale (no requantisation)."""


def weight_shape(layer: Layer) -> tuple[int, int, int, int]:
    """Expected weight shape of a conv (kh, kw, c_in / groups, c_out) or fc (1, 1, c_in, c_out)."""
    if layer.kind == "conv":
        kh, kw = layer.kernel_hw
        return (kh, kw, layer.in_channels // layer.groups, layer.out_channels)
    return (1, 1, layer.in_channels, layer.out_channels)


def _weighted_layers(network: Network) -> list:
    return [layer for layer in network.layers if layer.kind in ("conv", "fc")]


# ---------------------------------------------------------------- images


def _random_images(network: Network, batch: int, rng: np.random.Generator) -> np.ndarray:
    """int8 (batch, H, W, C) smooth random fields (see module docstring)."""
    inp = network.input_layer
    h, w, c = inp.out_h, inp.out_w, inp.out_channels
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = 1.0 / max(h, w)
    noise = rng.standard_normal((batch, c + 1, h, w))
    fields = np.fft.irfft2(np.fft.rfft2(noise) / f**1.5, s=(h, w))
    fields -= fields.mean(axis=(2, 3), keepdims=True)
    fields /= fields.std(axis=(2, 3), keepdims=True) + 1e-12
    img = fields[:, :1] + 0.5 * fields[:, 1:]  # shared luminance + per-channel colour
    img /= img.std(axis=(2, 3), keepdims=True) + 1e-12
    img += rng.normal(0.0, 0.3, size=(batch, c, 1, 1))  # per-image, per-channel brightness
    out = np.clip(np.rint(img * IMAGE_STD), -128, 127).astype(np.int8)
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


def make_images(network: Network, batch: int, seed: int) -> np.ndarray:
    """``batch`` natural-image-like int8 images (batch, H, W, C) for ``network``'s input."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return _random_images(network, batch, np.random.default_rng(seed))


def load_images(path: str | Path, network: Network) -> np.ndarray:
    """int8 images (batch, H, W, C) from the array ``images`` of an ``.npz`` file, validated
    (shape from the header before any data is read; at most `npz.MAX_ARRAY_BYTES`)."""
    npz = Npz(path)
    try:
        check_images_shape(npz, network)
        arr = npz.read("images")
    finally:
        npz.close()
    return _int_array(path, "images", arr, np.int8)


def check_images_shape(npz: Npz, network: Network) -> tuple[int, ...]:
    """The shape of ``images`` in ``npz``, checked against ``network``'s input (InputError otherwise)."""
    if "images" not in npz:
        raise InputError(f"{npz.path}: missing array 'images'")
    inp = network.input_layer
    expected = (inp.out_h, inp.out_w, inp.out_channels)
    shape = npz.shape("images")
    if len(shape) != 4 or shape[1:] != expected or shape[0] < 1:
        raise InputError(
            f"{npz.path}: array 'images' has shape {shape}, expected (batch >= 1, {expected[0]}, "
            f"{expected[1]}, {expected[2]}) for the input of model {network.name!r}"
        )
    return shape


# ---------------------------------------------------------------- parameters


def float_layer(layer: Layer, inputs: list[np.ndarray], w: np.ndarray | None = None,
                b: np.ndarray | None = None) -> np.ndarray:
    """The real-valued output of one layer (NHWC float inputs; ``w``, ``b`` for a conv or fc),
    mirroring the int8 semantics of `cimsim.functional.reference` without rounding."""
    x = inputs[0]
    if layer.kind in ("conv", "fc"):
        assert w is not None
        if layer.kind == "conv":
            y = float_conv(x, w, layer.stride_hw, layer.padding_hw, layer.groups)
        else:
            y = float_conv(x, w)
        y = y if b is None else y + b
    elif layer.kind == "add":
        y = x + inputs[1]
    elif layer.kind == "avgpool":
        y = x.mean(axis=(1, 2), keepdims=True)
    elif layer.kind == "maxpool":
        y = maxpool_float(x, layer.kernel_hw, layer.stride_hw, layer.padding_hw)
    elif layer.kind == "local_avgpool":
        y = local_avgpool_float(x, layer.kernel_hw, layer.stride_hw, layer.padding_hw, layer.count_include_pad)
    elif layer.kind == "flatten":
        y = x.reshape(x.shape[0], 1, 1, -1)
    elif layer.kind == "concat":
        y = np.concatenate(inputs, axis=3)
    else:
        raise ValueError(f"layer {layer.name!r}: kind {layer.kind!r} not supported")
    return np.maximum(y, 0.0) if layer.relu else y


class _Groups:
    """Union-find over tensor (layer) names: tensors that must share a scale."""

    def __init__(self, names):
        self.parent = {n: n for n in names}

    def find(self, n: str) -> str:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def make_params(network: Network, seed: int, *, calibration_images: int = 8) -> dict[str, LayerParams]:
    """Realistic int8 parameters for every conv and fc layer (see module docstring)."""
    rng = np.random.default_rng(seed)
    images = _random_images(network, calibration_images, rng)
    s_img = 1.0 / IMAGE_STD
    inp = network.input_layer
    real: dict[str, np.ndarray] = {inp.name: images.astype(np.float64) * s_img}
    w_real: dict[str, np.ndarray] = {}
    b_real: dict[str, np.ndarray] = {}
    branch_ends = {
        layer.inputs[0] for layer in network.layers if layer.kind == "add"
    }
    for layer in network.layers[1:]:
        x = [real[n] for n in layer.inputs]
        if layer.kind in ("conv", "fc"):
            shape = weight_shape(layer)
            cout = shape[3]
            sigma = rng.lognormal(0.0, 0.5, size=cout)
            mean = 0.2 * sigma * rng.standard_normal(cout)
            w = mean + rng.laplace(0.0, 1.0, size=shape) * (sigma / np.sqrt(2.0))
            pre = float_layer(replace(layer, relu=False), x, w)
            # fold a batch norm: normalise each channel on the calibration batch, then gamma, beta
            m, s = pre.mean(axis=(0, 1, 2)), pre.std(axis=(0, 1, 2)) + 1e-9
            gamma = (0.5 if layer.name in branch_ends else 1.0) * rng.lognormal(0.0, 0.3, size=cout)
            beta = rng.normal(0.0, 0.3, size=cout)
            w = w * (gamma / s)
            b = beta - m * gamma / s
            y = (pre - m) * (gamma / s) + beta
            w_real[layer.name], b_real[layer.name] = w, b
            real[layer.name] = np.maximum(y, 0.0) if layer.relu else y
        else:
            real[layer.name] = float_layer(layer, x)
    scale = calibrate_scales(network, real, {inp.name: s_img})
    return quantise_params(network, w_real, b_real, scale)


def scale_groups(network: Network) -> dict[str, str]:
    """Tensor (layer) name -> the representative of the tensors that share its scale."""
    groups = _Groups([layer.name for layer in network.layers])
    for layer in network.layers:
        if layer.kind in SCALE_SHARING_KINDS:
            for producer in layer.inputs:
                groups.union(producer, layer.name)
    return {layer.name: groups.find(layer.name) for layer in network.layers}


def calibrate_scales(network: Network, real: dict[str, np.ndarray], fixed: dict[str, float],
                     percentile: float = CALIBRATION_PERCENTILE) -> dict[str, float]:
    """The real value of one int8 step of every tensor (layer output): the ``percentile`` of
    |activation| over ``real`` (float activations per layer) maps to 127, the largest over each
    group of tensors that share a scale (`scale_groups`); ``fixed`` sets a tensor's group's scale."""
    group = scale_groups(network)
    by_group: dict[str, float] = {}
    for name, t in real.items():
        g = group[name]
        s = float(np.percentile(np.abs(t), percentile)) / 127.0
        by_group[g] = max(by_group.get(g, 0.0), s if s > 0 else 1e-6)
    for name, value in fixed.items():
        by_group[group[name]] = value
    return {name: by_group[group[name]] for name in group}


def quantise_layer(name: str, w: np.ndarray, b: np.ndarray, s_in: float, s_out: float) -> LayerParams:
    """int8 parameters of one conv/fc from real weights ``w`` (kh, kw, c_in_g, c_out) and bias ``b``
    (c_out,), its input scale ``s_in`` and output scale ``s_out``: symmetric per-output-channel
    weights in [-127, 127], int32 bias, one shift with the largest multiplier in [2**30, 2**31)."""
    amax = np.abs(w).max(axis=(0, 1, 2))
    s_w = np.where(amax > 0, amax / 127.0, 1.0)
    w_int = np.clip(np.rint(w / s_w), -127, 127).astype(np.int8)
    acc_scale = s_in * s_w
    bias = np.clip(np.rint(b / acc_scale), -(2**31), 2**31 - 1).astype(np.int32)
    ratio = acc_scale / s_out
    shift = int(np.clip(30 - np.floor(np.log2(ratio.max())), 0, 62))
    mult = np.rint(ratio * 2.0**shift)
    if mult.max() >= 2**31:
        raise ValueError(f"layer {name!r}: requantisation ratio {ratio.max():g} too large")
    return LayerParams(w_int, bias, mult.astype(np.int32), shift)


def quantise_params(network: Network, w_real: dict[str, np.ndarray], b_real: dict[str, np.ndarray],
                    scale: dict[str, float]) -> dict[str, LayerParams]:
    """`quantise_layer` for every conv and fc, with the tensor scales ``scale`` (`calibrate_scales`)."""
    params: dict[str, LayerParams] = {}
    for layer in _weighted_layers(network):
        params[layer.name] = quantise_layer(
            layer.name, w_real[layer.name], b_real[layer.name], scale[layer.inputs[0]], scale[layer.name])
    return params


def save_params(path: str | Path | Any, params: dict[str, LayerParams]) -> None:
    """Write ``params`` to ``path`` (.npz, or a binary file object) as arrays
    ``<layer>.weights/.bias/.multiplier/.shift``."""
    arrays: dict[str, np.ndarray] = {}
    for name, p in params.items():
        arrays[f"{name}.weights"] = p.weights
        arrays[f"{name}.bias"] = p.bias
        arrays[f"{name}.multiplier"] = p.multiplier
        arrays[f"{name}.shift"] = np.array(p.shift, dtype=np.int32)
    if hasattr(path, "write"):
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        return
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle


def load_params(path: str | Path, network: Network) -> dict[str, LayerParams]:
    """Parameters of every conv/fc layer of ``network`` from an ``.npz`` (see `save_params`), validated.

    Any integer dtype is accepted when every value fits the target type (int8
    weights, int32 bias and multiplier); multipliers must be >= 0 and ``shift``
    a scalar in [0, 62]. Problems raise `InputError` naming the file and array.
    """
    npz = Npz(path)
    try:
        return _load_params(npz, path, network)
    finally:
        npz.close()


def _load_params(npz: Npz, path: str | Path, network: Network) -> dict[str, LayerParams]:
    layers = _weighted_layers(network)
    wanted = {f"{layer.name}.{suffix}" for layer in layers for suffix in PARAM_ARRAYS}
    for key in npz.files:
        if key not in wanted:
            raise InputError(
                f"{path}: unexpected array {key!r} (model {network.name!r} has no conv/fc layer of that name)"
            )
    params: dict[str, LayerParams] = {}
    for layer in layers:
        cout = layer.out_channels
        shapes = {"weights": weight_shape(layer), "bias": (cout,), "multiplier": (cout,), "shift": ()}
        arrays = {}
        for suffix in PARAM_ARRAYS:
            key = f"{layer.name}.{suffix}"
            if key not in npz:
                raise InputError(f"{path}: missing array {key!r}")
            shape = npz.shape(key)
            if shape != shapes[suffix]:
                raise InputError(f"{path}: array '{key}' has shape {shape}, expected {shapes[suffix]}")
            arrays[suffix] = npz.read(key)
        weights = _int_array(path, f"{layer.name}.weights", arrays["weights"], np.int8)
        bias = _int_array(path, f"{layer.name}.bias", arrays["bias"], np.int32)
        mult = _int_array(path, f"{layer.name}.multiplier", arrays["multiplier"], np.int32)
        if (mult < 0).any():
            raise InputError(f"{path}: array '{layer.name}.multiplier' has negative values, expected >= 0")
        shift = _int_array(path, f"{layer.name}.shift", arrays["shift"], np.int32)
        if not 0 <= int(shift) <= 62:
            raise InputError(f"{path}: array '{layer.name}.shift' is {int(shift)}, expected 0..62")
        params[layer.name] = LayerParams(weights, bias, mult, int(shift))
    return params


def _int_array(path, name: str, arr: np.ndarray, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{path}: array {name!r} has dtype {arr.dtype}, expected an integer type ({np.dtype(dtype)})")
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise InputError(
            f"{path}: array {name!r} has values in [{arr.min()}, {arr.max()}], outside {np.dtype(dtype)} "
            f"[{info.min}, {info.max}]"
        )
    return arr.astype(dtype)


__all__ = [
    "LayerParams",
    "load_images",
    "load_params",
    "make_images",
    "make_params",
    "save_params",
]
