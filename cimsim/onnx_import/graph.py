"""Read an ONNX graph and translate it into cimsim layer specs with float weights.

`translate(path)` loads the protobuf (`cimsim.onnx_import.proto`: every unsupported node listed
at once before anything expensive, then `onnx.checker` and strict shape inference), folds its
constant subgraphs (`cimsim.onnx_import.fold`), and walks the nodes the graph output depends on,
fusing them into cimsim layers:

- Conv -> ``conv`` (weights OIHW -> (kh, kw, C_in / groups, C_out)); a
  BatchNormalization right after a Conv or Gemm/MatMul is folded into its
  weights and bias; so are a Mul by a per-channel constant (BatchNorm written as
  Mul and Add) and an Add of a per-channel constant (its bias).
- Relu -> ``relu = true`` of the producing conv, fc, add or maxpool; Clip(0, m)
  likewise, plus a fixed output scale m / 127, so that int8 saturation at 127 is
  the clip at m (ReLU6 with m = 6; TFLite does the same).
- Add of two activations, and Sum of n (a chain of n - 1) -> ``add`` (main: the
  first input whose producer may fuse it, a conv or fc with no other consumer;
  residual: the other).
- MaxPool, AveragePool (``ceil_mode`` where it rounds nothing up),
  GlobalAveragePool, ReduceMean over H and W (the global average pool),
  GlobalMaxPool, Concat (channels).
- Flatten and Reshape to 2-D (batch, features) -> ``flatten`` (nothing on a
  1 x 1 map); the (c, h, w) order of ONNX's flattening is carried to the next
  Gemm/MatMul, whose weight rows are permuted to cimsim's (h, w, c) order.
- Gemm and MatMul with constant weights -> ``fc``.
- Identity and Dropout (inference) pass their input through; a Softmax over the
  classes at the graph output is dropped (it does not change the top-1): the
  network's output is its input, and `Translation.notes` says so.

Anything else is an `InputError` naming the node and the op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import InputError
from cimsim.onnx_import.fold import fold_constants
from cimsim.onnx_import.proto import infer_shapes, load_proto
from cimsim.onnx_import.scan import FOLDED_OPS, SUPPORTED_OPS
from cimsim.onnx_import.specs import Translation
from cimsim.onnx_import.tensors import shown, tensor_array
from cimsim.onnx_import.walker import ActTensor, Walker, static_shapes

RELU_KINDS = ("conv", "fc", "add", "maxpool")
"""cimsim layer types that can apply a ReLU."""


class _Translator(Walker):
    """Walks the nodes of one graph and builds the specs."""

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
        self.tensors[inp.name] = ActTensor(input_name, tuple(shape))
        self.shapes[inp.name] = tuple(shape)

        nodes = self._needed_nodes()
        for node in nodes:
            for name in node.input:
                if name:
                    self.consumers[name] = self.consumers.get(name, 0) + 1
        self.consumers[graph.output[0].name] = self.consumers.get(graph.output[0].name, 0) + 1
        for node in nodes:
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain in ("", "ai.onnx") and node.op_type in FOLDED_OPS:
                raise self.fail(node, "supported only on constants (folded before translation); this one could "
                                      "not be folded (an input is an activation or has a dynamic shape, or an "
                                      "index or axis is out of range)")
            if node.domain not in ("", "ai.onnx") or handler is None:
                raise self.fail(node, f"op not supported; supported: {', '.join(SUPPORTED_OPS)}")
            handler(node, self.attrs(node))
        out = graph.output[0].name
        if out not in self.tensors or self.tensors[out].layer == input_name:
            raise InputError(f"{self.path}: the graph output '{out}' is not computed by a supported layer")
        t = self.tensors[out]
        return Translation(input_name, inp.name, tuple(shape[1:]), list(self.specs.values()), t.layer,
                           self.dropped or out, t.shape[1:], notes=tuple(self.notes))

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

    def per_channel(self, node: Any, name: str, x: ActTensor, what: str) -> np.ndarray:
        """Constant ``name`` as one value per channel of ``x`` (a (C,) vector); refused unless it
        broadcasts along the channel axis (1) only: (1, C, 1, 1), (C, 1, 1), (1,) on a map, (C,) on
        a (batch, features) tensor."""
        arr = self.const(node, name, what)
        rank, channels = len(x.shape), x.shape[1]
        full = (1,) * (rank - arr.ndim) + tuple(arr.shape)
        if arr.ndim > rank or any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, channels):
            raise self.fail(node, f"constant '{name}' of shape {tuple(arr.shape)} is not one {what} per channel of "
                                  f"the tensor of shape {x.shape}")
        return np.broadcast_to(arr.reshape(-1), (channels,)).copy()

    def _const_and_data(self, node: Any) -> tuple[str, str] | None:
        first, second = node.input[0], node.input[1]
        if first in self.consts and second in self.consts:
            raise self.fail(node, "both inputs are constants but the op was not folded")
        if first in self.consts:
            return second, first
        return (first, second) if second in self.consts else None

    def op_Mul(self, node: Any, a: dict[str, Any]) -> None:
        pair = self._const_and_data(node)
        if pair is None:
            raise self.fail(node, "a Mul of two activations is not supported (only a Mul by a per-channel constant "
                                  "after a Conv or Gemm/MatMul: BatchNorm written as Mul and Add)")
        data, const = pair
        spec = self.fusable(node, data, ("conv", "fc"), "a Mul by a constant is supported only right after a Conv "
                            "or Gemm/MatMul, folded into its weights")
        assert spec.w is not None and spec.b is not None
        scale = self.per_channel(node, const, self.tensors[data], "scale")
        with np.errstate(all="ignore"):
            spec.w = self.checked(node, "the weights folded with this Mul", spec.w * scale)
            spec.b = self.checked(node, "the biases folded with this Mul", spec.b * scale)
        spec.nodes.append(node.name)
        self.tensors[node.output[0]] = self.tensors[data]

    def op_Add(self, node: Any, a: dict[str, Any]) -> None:
        pair = self._const_and_data(node)
        if pair is not None:
            data, const = pair
            spec = self.fusable(node, data, ("conv", "fc"), "an Add of a constant is supported only as the bias of "
                                "the Conv or Gemm/MatMul before it")
            assert spec.b is not None
            with np.errstate(all="ignore"):
                spec.b = self.checked(node, "the biases plus this Add",
                                      spec.b + self.per_channel(node, const, self.tensors[data], "bias"))
            spec.nodes.append(node.name)
            self.tensors[node.output[0]] = self.tensors[data]
            return
        self._add(node, node.input[0], node.input[1])

    def _add(self, node: Any, first: str, second: str) -> None:
        """An ``add`` layer of activations ``first`` and ``second``, output ``node.output[0]``."""
        ta, tb = self.act(node, first), self.act(node, second)
        if ta.shape != tb.shape or ta.flat_from or tb.flat_from or len(ta.shape) != 4:
            raise self.fail(node, f"an {node.op_type} of activations needs (N, C, H, W) tensors of one shape, got "
                                  f"{ta.shape} and {tb.shape} (no broadcasting)")

        def can_main(name: str, t: ActTensor) -> bool:
            spec = self.specs.get(t.layer)
            return spec is not None and spec.type in ("conv", "fc") and self.consumers.get(name, 0) == 1
        order = [ta.layer, tb.layer] if can_main(first, ta) or not can_main(second, tb) else [tb.layer, ta.layer]
        if order[0] == order[1]:
            raise self.fail(node, "adds a tensor to itself; not supported")
        self.new(node, "add", order, ta.shape)

    def op_Sum(self, node: Any, a: dict[str, Any]) -> None:
        """Sum of n activations: a chain of n - 1 ``add`` layers (one input: its input)."""
        names = list(node.input)
        if any(n in self.consts for n in names):
            raise self.fail(node, "a Sum with a constant input is not supported (only a sum of activations)")
        self.tensors[node.output[0]] = self.act(node, names[0])
        for i, name in enumerate(names[1:]):
            self._add(node, node.output[0] if i else names[0], name)

    def op_Softmax(self, node: Any, a: dict[str, Any]) -> None:
        """A Softmax over the classes at the graph output is dropped: it does not change the top-1."""
        x = self.act(node, node.input[0])
        rank = len(x.shape)
        axis = int(a.get("axis", 1 if self.opset < 13 else -1))
        axis = axis + rank if axis < 0 else axis
        others = x.shape[1:axis] if self.opset < 13 else x.shape[1:axis] + x.shape[axis + 1:]
        if node.output[0] != self.graph.output[0].name or not 1 <= axis < rank or any(d != 1 for d in others):
            raise self.fail(node, f"supported only as the graph output, over the classes of each image (axis "
                                  f"{a.get('axis', 'default')} of shape {x.shape}); it is then dropped")
        self.tensors[node.output[0]] = x
        self.dropped = node.input[0]
        self.notes.append(f"the final Softmax {shown(node.name) if node.name else '(unnamed)'} is dropped (it does "
                          f"not change the top-1): the network's output is its input {shown(node.input[0])}")

    def _pool(self, node: Any, a: dict[str, Any], type_: str) -> None:
        x = self.act(node, node.input[0])
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "the Indices output is not supported")
        if len(x.shape) != 4 or x.flat_from:
            raise self.fail(node, "only 2-D pooling of (N, C, H, W) tensors is supported")
        kernel = tuple(int(k) for k in a.get("kernel_shape", []))
        if len(kernel) != 2:
            raise self.fail(node, "only 2-D pooling (a kernel_shape of 2) is supported")
        keys = self.window(node, a, (kernel[0], kernel[1]), x.shape[2:])
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

    def op_ReduceMean(self, node: Any, a: dict[str, Any]) -> None:
        """A mean over H and W: the global average pool (keepdims 0: then flattened, a view)."""
        x = self.act(node, node.input[0])
        if "axes" in a:
            axes = [int(v) for v in a["axes"]]
        elif len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.const(node, node.input[1], "axes").reshape(-1)]
        else:
            axes = [] if a.get("noop_with_empty_axes", 0) else list(range(len(x.shape)))
        rank = len(x.shape)
        if rank != 4 or x.flat_from or sorted(v + rank if v < 0 else v for v in axes) != [2, 3]:
            raise self.fail(node, f"axes {axes} of a tensor of shape {x.shape}: only a mean over H and W of an "
                                  "(N, C, H, W) tensor (a global average pool) is supported")
        self.new(node, "avgpool", [x.layer], (x.shape[0], x.shape[1], 1, 1))
        if not a.get("keepdims", 1):
            self.tensors[node.output[0]] = ActTensor(self.tensors[node.output[0]].layer, (x.shape[0], x.shape[1]))

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
                self.tensors[node.output[0]] = ActTensor(x.layer, out)
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
    """Load, check, simplify and translate the ONNX model at ``path`` (see the module docstring)."""
    path = Path(path)
    model, external = load_proto(path)
    if fold_constants(path, model, static_shapes(model.graph)):
        known = static_shapes(model.graph)
        if any(o and o not in known for node in model.graph.node for o in node.output):
            model = infer_shapes(path, model)  # again, only if a shape is still unknown (costly on big weights)
    tr = _Translator(path, model).run()
    tr.sources = (path, *external)
    return tr
