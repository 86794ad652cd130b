"""The state of an ONNX graph's translation and the helpers its op handlers share
(`cimsim.onnx_import.graph` walks the graph; this module holds no op)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import InputError
from cimsim.onnx_import.proto import one_line
from cimsim.onnx_import.specs import Spec
from cimsim.onnx_import.tensors import shown, tensor_array


@dataclass
class ActTensor:
    """An activation tensor of the ONNX graph: the cimsim layer holding it, its ONNX shape and,
    for a 2-D tensor flattened from a (C, H, W) map, that map's shape (its (c, h, w) order)."""

    layer: str
    shape: tuple[int, ...]
    flat_from: tuple[int, int, int] | None = None


def static_shape(vi: Any) -> tuple[int, ...] | None:
    """The shape of a ValueInfo if every dimension is a number, else None."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def static_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``graph`` whose shape is static (after shape inference), with its shape."""
    shapes = {vi.name: static_shape(vi) for vi in [*graph.value_info, *graph.input, *graph.output]}
    return {name: shape for name, shape in shapes.items() if shape is not None}


class Walker:
    """The state of one graph's translation and the helpers every op handler uses: constants,
    shapes, the activation tensors and the specs built so far, one-line failures naming the node."""

    def __init__(self, path: Path, model: Any) -> None:
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.path = path
        self.graph = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: tensor_array(self.path, t) for t in self.graph.initializer}
        self.shapes: dict[str, tuple[int, ...] | None] = {
            vi.name: static_shape(vi) for vi in [*self.graph.value_info, *self.graph.input, *self.graph.output]}
        self.tensors: dict[str, ActTensor] = {}
        self.specs: dict[str, Spec] = {}
        self.names: set[str] = set()
        self.consumers: dict[str, int] = {}
        self.opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.notes: list[str] = []
        """What the translation changed that a user should know (`Translation.notes`)."""
        self.dropped: str | None = None
        """The ONNX tensor the network's output is, when a final Softmax was dropped."""

    # -- helpers -----------------------------------------------------------

    def finite(self, node: Any, a: dict[str, Any], attr: str, default: float, low: float | None = None) -> float:
        """Float attribute ``attr`` checked finite (and >= ``low``), one-line `InputError` otherwise."""
        value = a.get(attr, default)
        if not isinstance(value, int | float) or not np.isfinite(value) or (low is not None and value < low):
            bound = f" and at least {low:g}" if low is not None else ""
            raise self.fail(node, f"attribute '{attr}' = {value!r} must be a finite number{bound}")
        return float(value)

    def checked(self, node: Any, what: str, arr: np.ndarray) -> np.ndarray:
        """``arr`` if every value is finite (and fits float32), else a one-line `InputError`."""
        if not np.all(np.isfinite(arr)) or (arr.size and float(np.abs(arr).max()) > 3e38):
            raise self.fail(node, f"{what} are not finite (or overflow float32)")
        return arr

    def fail(self, node: Any, problem: str) -> InputError:
        name = shown(node.name) if node.name else "(unnamed)"
        return InputError(one_line(f"{self.path}: node {name} ({shown(node.op_type, 40, quote=False)}): {problem}"))

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def unique(self, raw: str, fallback: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]+", "_", raw).strip("_") or fallback
        if base[0].isdigit():
            base = f"{fallback}_{base}"
        name, i = base, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def const(self, node: Any, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(node, f"{what} '{name}' must be a constant (an initializer or a Constant node)")
        arr = self.consts[name]
        if arr.size == 0:
            raise self.fail(node, f"{what} '{name}' is empty (shape {tuple(arr.shape)})")
        if not np.all(np.isfinite(arr.astype(np.float64))):
            raise self.fail(node, f"{what} '{name}' has non-finite values")
        return arr.astype(np.float64)

    def act(self, node: Any, name: str) -> ActTensor:
        if name not in self.tensors:
            raise self.fail(node, f"input '{name}' is not an activation (not the graph input or a supported "
                                  "node's output; constants are only weights, shapes and clip bounds here)")
        return self.tensors[name]

    def shape_of(self, node: Any, name: str) -> tuple[int, ...]:
        shape = self.shapes.get(name)
        if shape is None:
            raise self.fail(node, f"the shape of '{name}' is not static after shape inference (a dynamic "
                                  "shape); export the model with a fixed input size")
        if any(d <= 0 for d in shape):
            raise self.fail(node, f"tensor '{name}' has shape {shape}, a 0-sized dimension")
        return shape

    def new(self, node: Any, type_: str, inputs: list[str], shape: tuple[int, ...], **keys: Any) -> Spec:
        spec = Spec(self.unique(node.name, node.op_type.lower()), type_, inputs, keys, nodes=[node.name])
        self.specs[spec.name] = spec
        self.tensors[node.output[0]] = ActTensor(spec.name, shape)
        return spec

    def fusable(self, node: Any, name: str, types: tuple[str, ...], what: str) -> Spec:
        """The layer holding activation ``name`` if it is of one of ``types``, still unfused
        (no relu) and ``name`` feeds nothing but ``node``."""
        t = self.act(node, name)
        spec = self.specs.get(t.layer)
        kind = "the graph input" if spec is None else f"a {spec.type} layer"
        if spec is None or spec.type not in types:
            raise self.fail(node, f"{what}; its input '{name}' comes from {kind}")
        if spec.relu:
            raise self.fail(node, f"{what}; its input '{name}' is already after a ReLU / Clip")
        if self.consumers.get(name, 0) > 1:
            raise self.fail(node, f"{what}; its input '{name}' is also used by other nodes")
        if t.flat_from is not None:
            raise self.fail(node, f"{what}; its input '{name}' is a flattened map")
        return spec


    def window(self, node: Any, a: dict[str, Any], kernel: tuple[int, int],
               size: tuple[int, ...] | None = None) -> dict[str, Any]:
        """kernel, stride, padding keys from ONNX attributes, refusing the unsupported ones; ``size``
        is the input's (H, W), needed for ``ceil_mode``."""
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, f"attribute 'dilations' = {list(a['dilations'])} is not supported (only 1)")
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto not in ("NOTSET", "VALID"):
            raise self.fail(node, f"attribute 'auto_pad' = {auto} is not supported; export with explicit pads")
        strides = list(a.get("strides", [1, 1]))
        pads = [0, 0, 0, 0] if auto == "VALID" else list(a.get("pads", [0, 0, 0, 0]))
        if len(kernel) != 2 or len(strides) != 2 or len(pads) != 4:
            raise self.fail(node, "only 2-D kernels (N, C, H, W tensors) are supported")
        if any(int(v) < 1 for v in strides) or any(int(v) < 0 for v in pads) or any(int(v) < 1 for v in kernel):
            raise self.fail(node, f"strides {strides}, pads {pads} and kernel {list(kernel)}: strides and kernel must "
                                  "be at least 1 and pads at least 0")
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise self.fail(node, f"attribute 'pads' = {pads} is asymmetric; only symmetric padding is supported")
        if a.get("ceil_mode", 0):
            spare = [None if size is None else (int(size[i]) + 2 * int(pads[i]) - int(kernel[i])) % int(strides[i])
                     for i in (0, 1)]
            if spare != [0, 0]:
                shown_size = "?" if size is None else "x".join(map(str, size))
                raise self.fail(node, f"attribute 'ceil_mode' = 1 on a {shown_size} input with kernel {list(kernel)}, "
                                      f"strides {strides} and pads {pads} rounds the output size up: the extra row "
                                      "or column needs padding at the bottom or right only, which cimsim's "
                                      "symmetric padding cannot express")

        def value(pair: list[int] | tuple[int, int]) -> int | list[int]:
            return int(pair[0]) if pair[0] == pair[1] else [int(pair[0]), int(pair[1])]
        return {"kernel": value(kernel), "stride": value(strides), "padding": value(pads[:2])}

