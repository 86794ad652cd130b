"""Import an ONNX model: a cimsim model TOML, int8 weights and the scales to feed and read it.

``cimsim import MODEL.onnx -o models/NAME.toml [--calibration IMAGES.npz]`` writes

- ``NAME.toml``: the model file (`cimsim.network.load_model` reads it);
- ``NAME.npz``: int8 weights in the format of `cimsim.functional.weights.load_params`
  (per-output-channel symmetric weights, int32 bias, multiplier and shift);
- ``NAME.quant.json``: the activation scale of every layer, the input's and the
  output's, and the ONNX tensor names, to quantise float images for the network and
  dequantise its outputs.

Quantisation follows `cimsim.functional.weights` (`calibrate_scales`, `quantise_params`):
a float forward pass of the translated network (BatchNorm folded) over the calibration
images sets each tensor's scale so that the 99.99th percentile of |activation| maps to
127 (`IMPORT_PERCENTILE`), shared by tensors joined by an add, pool, flatten or concat; a Clip(0, m) (ReLU6)
fixes its layer's scale to m / 127. Calibration images are the array ``images`` of an
``.npz`` in the ONNX input's layout (float, (N, C, H, W) or (N, features)), preprocessed
as the model expects; without one, ``calibration_images`` smooth random fields of unit
standard deviation (`cimsim.functional.weights.make_images` / 40) are used.

The graph translation (supported ops, fusion rules) is `cimsim.onnx_import.graph`.
``onnx`` is an optional dependency: ``pip install 'cimsim[onnx]'``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import InputError
from cimsim.functional.npz import Npz
from cimsim.functional.weights import (
    IMAGE_STD,
    LayerParams,
    calibrate_scales,
    float_layer,
    make_images,
    quantise_params,
    save_params,
)
from cimsim.io_safety import AtomicOutput, check_destination, commit_together
from cimsim.network.layers import Network
from cimsim.network.model import load_model_text
from cimsim.onnx_import.graph import translate
from cimsim.onnx_import.scan import SUPPORTED_OPS
from cimsim.onnx_import.specs import Spec, Translation
from cimsim.onnx_import.tensors import shown

DEFAULT_CALIBRATION_IMAGES = 32
"""Generated calibration images when no ``--calibration`` file is given."""
IMPORT_PERCENTILE = 99.99
"""Percentile of |activation| mapped to 127 when calibrating an imported model (the common
percentile-calibration choice; `make_params`'s synthetic networks use 99.9). On the test CNNs
it gives a lower logit error than 99.9 (see README, "Importing ONNX models")."""


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """An imported ONNX model: its network, model TOML, int8 parameters and activation scales."""

    network: Network
    toml: str
    params: dict[str, LayerParams]
    scales: dict[str, float]
    """Layer name -> real value of one int8 step of its output (the input layer included)."""
    translation: Translation
    calibration: str
    """Where the calibration images came from (a file, or "generated: N images, seed S")."""

    @property
    def input_scale(self) -> float:
        """Real value of one int8 step of the network input."""
        return self.scales[self.network.input_layer.name]

    @property
    def output_scale(self) -> float:
        """Real value of one int8 step of the network output."""
        return self.scales[self.network.output_layer.name]

    def quantise_images(self, images: np.ndarray) -> np.ndarray:
        """float images in the ONNX input layout -> int8 (batch, H, W, C) for the network."""
        x = to_nhwc(np.asarray(images, dtype=np.float64), self.translation.input_shape)
        return np.clip(np.rint(x / self.input_scale), -128, 127).astype(np.int8)

    def dequantise_output(self, out: np.ndarray) -> np.ndarray:
        """int8 network output (batch, H, W, C) -> float in the ONNX output layout."""
        real = out.astype(np.float64) * self.output_scale
        if len(self.translation.output_shape) == 3:
            return real.transpose(0, 3, 1, 2)
        return real.reshape(real.shape[0], *self.translation.output_shape)


def to_nhwc(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Images in the ONNX input layout ((N, C, H, W) or (N, F)) as (N, H, W, C) ((N, 1, 1, F))."""
    if len(input_shape) == 3:
        return x.transpose(0, 2, 3, 1)
    return x.reshape(x.shape[0], 1, 1, -1)


def render_toml(tr: Translation, source: str) -> str:
    """The model TOML of a translation (layers in ONNX graph order, the fused ONNX nodes as comments).

    The document is written by a TOML writer (`tomli_w`): no name from the graph is written raw.
    The comments escape every character that is not printable ASCII, so a name cannot end one."""
    try:
        import tomli_w
    except ImportError:
        raise InputError("importing ONNX models needs the tomli-w package: pip install 'cimsim[onnx]'") from None

    stem = Path(source).stem
    shape = tr.input_shape
    h, w, c = (shape[1], shape[2], shape[0]) if len(shape) == 3 else (1, 1, shape[0])
    layers: list[dict[str, Any]] = []
    notes: list[str] = []
    for spec in tr.specs:
        layer: dict[str, Any] = {"name": spec.name, "type": spec.type}
        if len(spec.inputs) == 1 and spec.type != "concat":
            layer["input"] = spec.inputs[0]
        else:
            layer["inputs"] = list(spec.inputs)
        layer.update(spec.keys)
        if spec.relu:
            layer["relu"] = True
        layers.append(layer)
        nodes = ", ".join(shown(n, 80, quote=False) if n else "(unnamed)" for n in spec.nodes[:8])
        more = f" and {len(spec.nodes) - 8} more" if len(spec.nodes) > 8 else ""
        notes.append(f"# ONNX: {nodes}{more}"
                     + (f" (clip at {spec.clip:g}: output scale {spec.clip:g} / 127)" if spec.clip else ""))
    doc = {"name": stem, "description": f"imported from ONNX {Path(source).name}", "bits": 8,
           "input": {"name": tr.input_name, "height": h, "width": w, "channels": c}, "layers": layers}
    body = tomli_w.dumps(doc).splitlines()
    lines = [(f"# Imported from {shown(Path(source).name, 200, quote=False)} by `cimsim import` (ONNX input "
              f"{shown(tr.onnx_input)}, output {shown(tr.onnx_output)})."),
             "# Weights: the .npz of the same name; activation scales: the .quant.json.",
             *(f"# Note: {shown(note, 400, quote=False)}" for note in tr.notes), ""]
    it = iter(notes)
    for line in body:
        if line == "[[layers]]":  # a header: tomli_w escapes newlines inside strings
            lines.append(next(it))
        lines.append(line)
    return "\n".join(lines) + "\n"


def load_onnx_network(path: str | Path) -> Network:
    """The `Network` of an ONNX model (no calibration): what `load_model` returns for ``.onnx``."""
    tr = translate(path)
    return _network(tr, path)


def _network(tr: Translation, path: str | Path) -> Network:
    net = load_model_text(render_toml(tr, str(path)), str(path))
    out = net.output_layer
    got = (out.out_channels, out.out_h, out.out_w) if len(tr.output_shape) == 3 else (out.out_channels,)
    if got != tuple(tr.output_shape):
        raise InputError(f"{path}: the imported network's output {got} does not match ONNX's {tr.output_shape}")
    return net


def _calibration_images(net: Network, tr: Translation, calibration: str | Path | None, count: int,
                        seed: int) -> tuple[np.ndarray, str]:
    """Float calibration images as (N, H, W, C), and where they came from."""
    if calibration is None:
        images = make_images(net, count, seed).astype(np.float64) / IMAGE_STD
        return images, f"generated: {count} images, seed {seed}"
    data = Npz(calibration)
    try:
        if "images" not in data:
            raise InputError(f"{calibration}: missing array 'images'")
        arr = data.read("images")
    finally:
        data.close()
    want = tuple(tr.input_shape)
    if arr.ndim != len(want) + 1 or tuple(arr.shape[1:]) != want or arr.shape[0] < 1:
        raise InputError(f"{calibration}: array 'images' has shape {arr.shape}, expected (N >= 1, "
                         f"{', '.join(map(str, want))}) in the layout of ONNX input '{tr.onnx_input}'")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
        raise InputError(f"{calibration}: array 'images' has dtype {arr.dtype}, expected float")
    x = arr.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{calibration}: array 'images' has non-finite values")
    return to_nhwc(x, want), f"{calibration}: {arr.shape[0]} images"


def float_forward(net: Network, specs: dict[str, Spec], images: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's float output (N, H, W, C) for float ``images`` (N, H, W, C), ReLU6 clips included."""
    real = {net.input_layer.name: images}
    for layer in net.layers[1:]:
        spec = specs[layer.name]
        y = float_layer(layer, [real[n] for n in layer.inputs], spec.w, spec.b)
        real[layer.name] = np.minimum(y, spec.clip) if spec.clip else y
    return real


def import_onnx(path: str | Path, calibration: str | Path | None = None, *,
                calibration_images: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0,
                percentile: float = IMPORT_PERCENTILE) -> ImportedModel:
    """Translate, calibrate and quantise the ONNX model at ``path`` (see the module docstring)."""
    tr = translate(path)
    net = _network(tr, path)
    specs = {spec.name: spec for spec in tr.specs}
    images, origin = _calibration_images(net, tr, calibration, calibration_images, seed)
    with np.errstate(all="ignore"):
        real = float_forward(net, specs, images)
    for name, values in real.items():
        if not np.all(np.isfinite(values)):
            raise InputError(f"{path}: layer '{name}' has non-finite float activations on the calibration images "
                             "(weights or attributes too large)")
    fixed = {name: spec.clip / 127.0 for name, spec in specs.items() if spec.clip}
    scales = calibrate_scales(net, real, fixed, percentile)
    if not all(np.isfinite(v) and v > 0 for v in scales.values()):
        raise InputError(f"{path}: calibration gives a zero or non-finite activation scale")
    w = {n: s.w for n, s in specs.items() if s.w is not None}
    b = {n: s.b for n, s in specs.items() if s.b is not None}
    try:
        params = quantise_params(net, w, b, scales)
    except ValueError as exc:
        raise InputError(f"{path}: cannot quantise: {exc}") from None
    return ImportedModel(net, render_toml(tr, str(path)), params, scales, tr, origin)


def output_paths(toml_path: str | Path) -> list[Path]:
    """The three files `write_imported` writes for ``toml_path``: NAME.toml, NAME.npz, NAME.quant.json."""
    toml_path = Path(toml_path)
    return [toml_path, toml_path.with_suffix(".npz"), toml_path.with_suffix(".quant.json")]


def check_outputs(toml_path: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Refuse (`InputError`) before any work an output set that cannot be written or that would
    replace one of ``inputs`` (the ONNX file, the calibration images, external data)."""
    given = [Path(p) for p in inputs if p is not None]
    for path in output_paths(toml_path):
        check_destination(path, given)


def write_imported(model: ImportedModel, toml_path: str | Path,
                   inputs: Iterable[str | Path | None] = ()) -> list[Path]:
    """Write ``NAME.toml``, ``NAME.npz`` and ``NAME.quant.json`` as one set; returns the paths written.

    Each is written beside its destination and all three are renamed only when all are complete
    (`cimsim.io_safety.commit_together`): on any failure the earlier set is left intact and
    `OutputError` (exit 4) is raised. An output that is one of ``inputs`` or of the files the
    import read (`Translation.sources`) is refused (`InputError`)."""
    tr = model.translation
    given = [Path(p) for p in inputs if p is not None] + list(tr.sources)
    meta = {
        "onnx_input": tr.onnx_input, "onnx_output": tr.onnx_output,
        "input_layout": "NCHW" if len(tr.input_shape) == 3 else "NF",
        "input_shape": list(tr.input_shape), "output_shape": list(tr.output_shape),
        "input_scale": model.input_scale, "output_scale": model.output_scale,
        "calibration": model.calibration, "scales": model.scales, "notes": list(tr.notes),
    }
    outs: list[AtomicOutput] = []
    try:
        for path in output_paths(toml_path):
            outs.append(AtomicOutput(path, given))
        toml, npz, quant = outs
        toml.stream.write(model.toml.encode("utf-8"))
        toml.finish()
        save_params(npz.stream, model.params)
        npz.finish()
        quant.stream.write((json.dumps(meta, indent=2, allow_nan=False) + "\n").encode("utf-8"))
        return commit_together(outs)
    finally:
        for out in outs:
            out.abort()


__all__ = [
    "SUPPORTED_OPS",
    "ImportedModel",
    "check_outputs",
    "import_onnx",
    "load_onnx_network",
    "output_paths",
    "render_toml",
    "write_imported",
]
