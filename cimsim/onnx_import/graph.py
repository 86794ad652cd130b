"""Read an ONNX graph and translate it into cimsim layer specs with float weights.

`translate(path)` loads the protobuf, checks it (`onnx.checker`), infers every
tensor's shape (`onnx.shape_inference`, strict), and walks the nodes the graph
output depends on, fusing them into cimsim layers:

- Conv -> ``conv`` (weights OIHW -> (kh, kw, C_in / groups, C_out)); a
  BatchNormalization right after a Conv or Gemm/MatMul is folded into its
  weights and bias; an Add of a constant after one becomes its bias.
- Relu -> ``relu = true`` of the producing conv, fc, add or maxpool; Clip(0, m)
  likewise, plus a fixed output scale m / 127, so that int8 saturation at 127 is
  the clip at m (ReLU6 with m = 6; TFLite does the same).
- Add of two activations -> ``add`` (main: the first input whose producer may
  fuse it, a conv or fc with no other consumer; residual: the other).
- MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Concat (channels).
- Flatten and Reshape to 2-D (batch, features) -> ``flatten`` (nothing on a
  1 x 1 map); the (c, h, w) order of ONNX's flattening is carried to the next
  Gemm/MatMul, whose weight rows are permuted to cimsim's (h, w, c) order.
- Gemm and MatMul with constant weights -> ``fc``.
- Identity and Dropout (inference) pass their input through.

Anything else is an `InputError` naming the node, the op and the supported ops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import InputError
from cimsim.onnx_import.proto import _one_line, load_proto
from cimsim.onnx_import.specs import Spec, Translation
from cimsim.onnx_import.tensors import shown, tensor_array

SUPPORTED_OPS: tuple[str, ...] = (
    "Conv", "BatchNormalization", "Relu", "Clip", "Add", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "Concat", "Identity", "Dropout", "Constant",
)
"""ONNX ops the importer translates (Constant nodes only as weights, shapes and clip bounds)."""
RELU_KINDS = ("conv", "fc", "add", "maxpool")
"""cimsim layer types that can apply a ReLU."""


@dataclass
class _Tensor:
    """An activation tensor of the ONNX graph: the cimsim layer holding it, its ONNX shape and,
    for a 2-D tensor flattened from a (C, H, W) map, that map's shape (its (c, h, w) order)."""

    layer: str
    shape: tuple[int, ...]
    flat_from: tuple[int, int, int] | None = None


class _Translator:
    """Walks the nodes of one graph and builds the specs."""

    def __init__(self, path: Path, model: Any) -> None:
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.path = path
        self.graph = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: tensor_array(self.path, t) for t in self.graph.initializer}
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        for vi in list(self.graph.value_info) + list(self.graph.input) + list(self.graph.output):
            self.shapes[vi.name] = self._static_shape(vi)
        self.tensors: dict[str, _Tensor] = {}
        self.specs: dict[str, Spec] = {}
        self.names: set[str] = set()
        self.consumers: dict[str, int] = {}

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
        return InputError(_one_line(f"{self.path}: node {name} ({shown(node.op_type, 40, quote=False)}): {problem}"))

    @staticmethod
    def _static_shape(vi: Any) -> tuple[int, ...] | None:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            return None
        dims = []
        for d in tt.shape.dim:
            if not d.HasField("dim_value"):
                return None
            dims.append(int(d.dim_value))
        return tuple(dims)

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

    def act(self, node: Any, name: str) -> _Tensor:
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
        self.tensors[node.output[0]] = _Tensor(spec.name, shape)
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

    # -- the walk -------------------------------------------------------------

    def run(self) -> Translation:
        graph = self.graph
        inputs = [vi for vi in graph.input if vi.name not in self.consts]
        if len(inputs) != 1:
            raise InputError(f"{self.path}: the graph has {len(inputs)} inputs besides initializers; "
                             "cimsim networks have exactly one (the image)")
        if len(graph.output) != 1:
            raise InputError(f"{self.path}: the graph has {len(graph.output)} outputs; cimsim networks have one")
        inp = inputs[0]
        dims = inp.type.tensor_type.shape.dim
        if inp.type.tensor_type.elem_type not in (1, 10, 11):  # float, float16, double
            raise InputError(f"{self.path}: input '{inp.name}' is not a float tensor")
        if len(dims) not in (2, 4):
            raise InputError(f"{self.path}: input '{inp.name}' has {len(dims)} dimensions; expected (N, C, H, W) "
                             "or (N, features)")
        shape: list[int] = [1]
        for i, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value"):
                raise InputError(f"{self.path}: input '{inp.name}' has a dynamic dimension {i} "
                                 f"('{d.dim_param or '?'}'); export the model with a fixed input size")
            if d.dim_value <= 0:
                raise InputError(f"{self.path}: input '{inp.name}' has dimension {i} of size {d.dim_value}")
            shape.append(int(d.dim_value))
        input_name = self.unique(inp.name, "input")
        self.tensors[inp.name] = _Tensor(input_name, tuple(shape))
        self.shapes[inp.name] = tuple(shape)

        nodes = self._needed_nodes()
        for node in nodes:
            for name in node.input:
                if name:
                    self.consumers[name] = self.consumers.get(name, 0) + 1
        self.consumers[graph.output[0].name] = self.consumers.get(graph.output[0].name, 0) + 1
        for node in nodes:
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain not in ("", "ai.onnx") or handler is None:
                raise self.fail(node, f"op not supported; supported: {', '.join(SUPPORTED_OPS)}")
            handler(node, self.attrs(node))
        out = graph.output[0].name
        if out not in self.tensors or self.tensors[out].layer == input_name:
            raise InputError(f"{self.path}: the graph output '{out}' is not computed by a supported layer")
        t = self.tensors[out]
        return Translation(input_name, inp.name, tuple(shape[1:]), list(self.specs.values()), t.layer, out,
                           t.shape[1:])

    def _needed_nodes(self) -> list[Any]:
        """The nodes the graph output depends on, in graph order; inputs must be defined before use."""
        produced = {o: n for n in self.graph.node for o in n.output if o}
        needed: set[int] = set()
        stack = [self.graph.output[0].name]
        while stack:
            name = stack.pop()
            node = produced.get(name)
            if node is None or id(node) in needed:
                continue
            needed.add(id(node))
            stack.extend(i for i in node.input if i)
        known = set(self.consts) | set(self.tensors)
        out = []
        for node in self.graph.node:
            for name in node.input:
                if name and name not in known:
                    raise self.fail(node, f"input '{name}' is not produced by any earlier node, initializer or "
                                          "graph input")
            known.update(o for o in node.output if o)
            if id(node) in needed:
                out.append(node)
        return out

    # -- ops ----------------------------------------------------------------

    def op_Constant(self, node: Any, a: dict[str, Any]) -> None:
        if "value" not in a:
            raise self.fail(node, "only Constant nodes with a 'value' tensor are supported")
        self.consts[node.output[0]] = tensor_array(self.path, a["value"])

    def op_Identity(self, node: Any, a: dict[str, Any]) -> None:
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
        else:
            self.tensors[node.output[0]] = self.act(node, node.input[0])

    def op_Dropout(self, node: Any, a: dict[str, Any]) -> None:
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise self.fail(node, "its mask output is used; only inference-mode Dropout is supported")
        self.tensors[node.output[0]] = self.act(node, node.input[0])

    def window(self, node: Any, a: dict[str, Any], kernel: tuple[int, int]) -> dict[str, Any]:
        """kernel, stride, padding keys from ONNX attributes, refusing the unsupported ones."""
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, f"attribute 'dilations' = {list(a['dilations'])} is not supported (only 1)")
        if a.get("ceil_mode", 0):
            raise self.fail(node, "attribute 'ceil_mode' = 1 is not supported (output sizes round down)")
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

        def value(pair: list[int] | tuple[int, int]) -> int | list[int]:
            return int(pair[0]) if pair[0] == pair[1] else [int(pair[0]), int(pair[1])]
        return {"kernel": value(kernel), "stride": value(strides), "padding": value(pads[:2])}

    def op_Conv(self, node: Any, a: dict[str, Any]) -> None:
        x = self.act(node, node.input[0])
        w = self.const(node, node.input[1], "weight")
        if w.ndim != 4 or len(x.shape) != 4:
            raise self.fail(node, "only 2-D convolutions (N, C, H, W tensors) are supported")
        groups = int(a.get("group", 1))
        if groups < 1 or x.shape[1] % groups or w.shape[0] % groups or w.shape[1] * groups != x.shape[1]:
            raise self.fail(node, f"attribute 'group' = {groups} does not divide the {x.shape[1]} input and "
                                  f"{w.shape[0]} output channels of weights {tuple(w.shape)}")
        keys = {"out_channels": int(w.shape[0]), **self.window(node, a, (int(w.shape[2]), int(w.shape[3]))),
                "groups": groups}
        if groups == 1:
            del keys["groups"]
        out = self.shape_of(node, node.output[0])
        spec = self.new(node, "conv", [x.layer], out, **keys)
        spec.w = w.transpose(2, 3, 1, 0)
        spec.b = (self.const(node, node.input[2], "bias").reshape(-1) if len(node.input) > 2 and node.input[2]
                  else np.zeros(w.shape[0]))

    def op_BatchNormalization(self, node: Any, a: dict[str, Any]) -> None:
        if a.get("training_mode", 0):
            raise self.fail(node, "training_mode = 1 is not supported (export the model in eval mode)")
        spec = self.fusable(node, node.input[0], ("conv", "fc"), "supported only right after a Conv or Gemm, "
                            "folded into it")
        assert spec.w is not None and spec.b is not None
        gamma, beta, mean, var = (self.const(node, n, what).reshape(-1) for n, what in
                                  zip(node.input[1:5], ("scale", "bias", "mean", "variance"), strict=True))
        eps = self.finite(node, a, "epsilon", 1e-5, low=0.0)
        if np.any(var < 0):
            raise self.fail(node, f"variance '{node.input[4]}' has negative values")
        if np.any(var + eps <= 0):
            raise self.fail(node, f"variance '{node.input[4]}' + epsilon has zeros (a division by zero)")
        with np.errstate(all="ignore"):
            s = gamma / np.sqrt(var + eps)
            spec.w = self.checked(node, "the weights folded with this BatchNormalization", spec.w * s)
            spec.b = self.checked(node, "the biases folded with this BatchNormalization", (spec.b - mean) * s + beta)
        spec.nodes.append(node.name)
        self.tensors[node.output[0]] = self.tensors[node.input[0]]

    def _relu(self, node: Any, clip: float | None) -> None:
        spec = self.fusable(node, node.input[0], RELU_KINDS, "supported only after a Conv, Gemm/MatMul, Add or "
                            "MaxPool, fused into it")
        spec.relu, spec.clip = True, clip
        spec.nodes.append(node.name)
        self.tensors[node.output[0]] = self.tensors[node.input[0]]

    def op_Relu(self, node: Any, a: dict[str, Any]) -> None:
        self._relu(node, None)

    def op_Clip(self, node: Any, a: dict[str, Any]) -> None:
        def bound(index: int, attr: str) -> float | None:
            if len(node.input) > index and node.input[index]:
                return float(self.const(node, node.input[index], f"Clip {attr}").reshape(-1)[0])
            return float(a[attr]) if attr in a else None
        low, high = bound(1, "min"), bound(2, "max")
        if low != 0.0 or (high is not None and not high > 0):
            raise self.fail(node, f"Clip(min={low}, max={high}) is supported only as a ReLU (min 0) or ReLU6-like "
                                  "(min 0, max > 0)")
        self._relu(node, None if high is None or not np.isfinite(high) else high)

    def op_Add(self, node: Any, a: dict[str, Any]) -> None:
        first, second = node.input[0], node.input[1]
        if first in self.consts or second in self.consts:
            data, const = (second, first) if first in self.consts else (first, second)
            spec = self.fusable(node, data, ("conv", "fc"), "an Add of a constant is supported only as the bias of "
                                "the Conv or Gemm/MatMul before it")
            assert spec.b is not None
            bias = self.const(node, const, "bias")
            channels = spec.b.shape[0]
            if bias.size not in (1, channels):
                raise self.fail(node, f"constant '{const}' of shape {tuple(bias.shape)} is not a per-channel bias "
                                      f"of {channels} channels")
            spec.b = spec.b + bias.reshape(-1)
            spec.nodes.append(node.name)
            self.tensors[node.output[0]] = self.tensors[data]
            return
        ta, tb = self.act(node, first), self.act(node, second)
        if ta.shape != tb.shape or ta.flat_from or tb.flat_from or len(ta.shape) != 4:
            raise self.fail(node, f"an Add of activations needs two (N, C, H, W) tensors of one shape, got "
                                  f"{ta.shape} and {tb.shape} (no broadcasting)")

        def can_main(name: str, t: _Tensor) -> bool:
            spec = self.specs.get(t.layer)
            return spec is not None and spec.type in ("conv", "fc") and self.consumers.get(name, 0) == 1
        order = [ta.layer, tb.layer] if can_main(first, ta) or not can_main(second, tb) else [tb.layer, ta.layer]
        if order[0] == order[1]:
            raise self.fail(node, "adds a tensor to itself; not supported")
        self.new(node, "add", order, ta.shape)

    def _pool(self, node: Any, a: dict[str, Any], type_: str) -> None:
        x = self.act(node, node.input[0])
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "the Indices output is not supported")
        if len(x.shape) != 4 or x.flat_from:
            raise self.fail(node, "only 2-D pooling of (N, C, H, W) tensors is supported")
        kernel = tuple(int(k) for k in a.get("kernel_shape", []))
        if len(kernel) != 2:
            raise self.fail(node, "only 2-D pooling (a kernel_shape of 2) is supported")
        keys = self.window(node, a, (kernel[0], kernel[1]))
        out = self.shape_of(node, node.output[0])
        if type_ == "avgpool":
            if kernel == x.shape[2:] and keys["padding"] == 0:
                self.new(node, "avgpool", [x.layer], out)  # the whole map: the global (simulated) pool
                return
            if a.get("count_include_pad", 0):
                keys["count_include_pad"] = True
        self.new(node, type_, [x.layer], out, **keys)

    def op_MaxPool(self, node: Any, a: dict[str, Any]) -> None:
        self._pool(node, a, "maxpool")

    def op_AveragePool(self, node: Any, a: dict[str, Any]) -> None:
        self._pool(node, a, "avgpool")

    def op_GlobalAveragePool(self, node: Any, a: dict[str, Any]) -> None:
        x = self.act(node, node.input[0])
        if len(x.shape) != 4:
            raise self.fail(node, "only (N, C, H, W) inputs are supported")
        self.new(node, "avgpool", [x.layer], (x.shape[0], x.shape[1], 1, 1))

    def op_GlobalMaxPool(self, node: Any, a: dict[str, Any]) -> None:
        x = self.act(node, node.input[0])
        if len(x.shape) != 4:
            raise self.fail(node, "only (N, C, H, W) inputs are supported")
        h, w = x.shape[2:]
        self.new(node, "maxpool", [x.layer], (x.shape[0], x.shape[1], 1, 1), kernel=h if h == w else [h, w])

    def _flatten(self, node: Any) -> None:
        x = self.act(node, node.input[0])
        out = self.shape_of(node, node.output[0])
        if len(out) != 2 or out[0] != x.shape[0] or out[1] != int(np.prod(x.shape[1:])):
            raise self.fail(node, f"output shape {out}: only a flatten to (batch, features) is supported")
        if len(x.shape) == 2:
            self.tensors[node.output[0]] = x
        elif len(x.shape) == 4 and not x.flat_from:
            c, h, w = x.shape[1:]
            if (h, w) == (1, 1):
                self.tensors[node.output[0]] = _Tensor(x.layer, out)
            else:
                self.new(node, "flatten", [x.layer], out)
                self.tensors[node.output[0]].flat_from = (c, h, w)
        else:
            raise self.fail(node, f"cannot flatten a tensor of shape {x.shape}")

    def op_Flatten(self, node: Any, a: dict[str, Any]) -> None:
        if int(a.get("axis", 1)) != 1:
            raise self.fail(node, f"attribute 'axis' = {a['axis']} is not supported (only 1: (batch, features))")
        self._flatten(node)

    def op_Reshape(self, node: Any, a: dict[str, Any]) -> None:
        self._flatten(node)

    def _fc(self, node: Any, weights: np.ndarray, bias: np.ndarray) -> None:
        x = self.act(node, node.input[0])
        if len(x.shape) != 2:
            raise self.fail(node, f"input '{node.input[0]}' has shape {x.shape}; a Gemm/MatMul needs (batch, "
                                  "features) (put a Flatten before it)")
        if weights.shape[0] != x.shape[1]:
            raise self.fail(node, f"weights of shape {weights.shape} do not match {x.shape[1]} input features")
        if x.flat_from is not None:
            c, h, w = x.flat_from
            weights = weights[np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()]
        out = self.shape_of(node, node.output[0])
        spec = self.new(node, "fc", [x.layer], out, out_features=int(weights.shape[1]))
        spec.w, spec.b = weights.reshape(1, 1, *weights.shape), bias

    def op_Gemm(self, node: Any, a: dict[str, Any]) -> None:
        if a.get("transA", 0):
            raise self.fail(node, "attribute 'transA' = 1 is not supported")
        w = self.const(node, node.input[1], "weight")
        if w.ndim != 2:
            raise self.fail(node, f"weight '{node.input[1]}' is not a matrix")
        alpha, beta = self.finite(node, a, "alpha", 1.0), self.finite(node, a, "beta", 1.0)
        with np.errstate(all="ignore"):
            w = self.checked(node, "the weights times alpha", (w.T if a.get("transB", 0) else w) * alpha)
        bias = np.zeros(w.shape[1])
        if len(node.input) > 2 and node.input[2]:
            with np.errstate(all="ignore"):
                c = self.checked(node, "the biases times beta", self.const(node, node.input[2], "bias") * beta)
            if c.size not in (1, w.shape[1]):
                raise self.fail(node, f"bias of shape {tuple(c.shape)} is not per output feature")
            bias = bias + c.reshape(-1)
        self._fc(node, w, bias)

    def op_MatMul(self, node: Any, a: dict[str, Any]) -> None:
        w = self.const(node, node.input[1], "weight")
        if w.ndim != 2:
            raise self.fail(node, f"weight '{node.input[1]}' is not a matrix")
        self._fc(node, w, np.zeros(w.shape[1]))

    def op_Concat(self, node: Any, a: dict[str, Any]) -> None:
        parts = [self.act(node, name) for name in node.input]
        rank = len(parts[0].shape)
        axis = int(a.get("axis", 1))
        if axis < 0:
            axis += rank
        if axis != 1 or any(len(t.shape) != rank or t.flat_from for t in parts):
            raise self.fail(node, f"attribute 'axis' = {a.get('axis')}: only a concat along channels (axis 1) is "
                                  "supported")
        layers = [t.layer for t in parts]
        if len(set(layers)) != len(layers):
            raise self.fail(node, "concatenates one tensor twice; not supported")
        self.new(node, "concat", layers, self.shape_of(node, node.output[0]))


def translate(path: str | Path) -> Translation:
    """Load, check and translate the ONNX model at ``path`` (see the module docstring)."""
    path = Path(path)
    model, external = load_proto(path)
    tr = _Translator(path, model).run()
    tr.sources = (path, *external)
    return tr
