"""Simplify an ONNX graph before translation, the way exporters expect consumers to.

- `fix_batch`: a symbolic batch dimension of the graph input becomes 1 (cimsim translates one
  image; the scenario's batch decides how many run), before the checker and shape inference.
- `fold_constants`: every node whose inputs are all constants (initializers, `Constant` nodes or
  earlier folds) and whose op is one of `FOLDABLE` is evaluated with numpy and replaced by an
  initializer; a ``Shape`` of a tensor whose shape is static after inference is its shape. So the
  ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` that ``x.view(x.size(0), -1)`` exports to
  becomes a Reshape by a constant (batch, -1), and the zoo's ``Unsqueeze`` of BatchNorm constants
  becomes per-channel constants (the translator fuses ``Mul``/``Add`` by those into the Conv).

Pure onnx and numpy: no simplifier package is needed. A fold that would make a constant of more
than `MAX_FOLDED_ELEMENTS` elements is a one-line `InputError` naming the node.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import InputError
from cimsim.onnx_import.tensors import shown, tensor_array

MAX_FOLDED_ELEMENTS = 2**28
"""Largest constant a fold may produce (elements; 1 GiB of float32, a large layer's weights)."""


def fix_batch(model: Any) -> None:
    """Set a symbolic (or unknown) batch dimension of the graph inputs, and of every tensor declared
    with the same symbol, to 1."""
    graph = model.graph
    consts = {t.name for t in graph.initializer}
    symbols: set[str] = set()
    for vi in graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in consts and dims and not dims[0].HasField("dim_value"):
            if dims[0].dim_param:
                symbols.add(dims[0].dim_param)
            dims[0].dim_value = 1
    for vi in [*graph.output, *graph.value_info]:
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param") and dims[0].dim_param in symbols:
            dims[0].dim_value = 1


def _axes(node: Any, attrs: dict[str, Any], value: Callable[[str], np.ndarray | None]) -> list[int] | None:
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(node.input) > 1 and node.input[1]:
        axes = value(node.input[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    return []


def _reshape(x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    dims = [int(d) if d != 0 else x.shape[i] for i, d in enumerate(shape.reshape(-1))]
    return x.reshape(dims)


def _cast(to: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(to)


class _TooLarge(Exception):
    """A fold would make a constant of more than `MAX_FOLDED_ELEMENTS` elements."""


def _eval(path: Path, op: str, node: Any, attrs: dict[str, Any], ins: list[np.ndarray | None],
          value: Callable[[str], np.ndarray | None]) -> np.ndarray | None:
    """The value of ``node``'s first output, or None if it cannot be folded."""
    if any(x is None for x in ins):
        return None
    xs = [x for x in ins if x is not None]
    if op == "Constant":
        if "value" in attrs:
            return tensor_array(path, attrs["value"])
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                           ("value_ints", np.int64)):
            if key in attrs:
                return np.array(attrs[key], dtype=dtype)
        return None
    if op == "ConstantOfShape":
        fill = (tensor_array(path, attrs["value"]).reshape(-1) if "value" in attrs
                else np.zeros(1, dtype=np.float32))
        shape = [int(d) for d in xs[0].reshape(-1)]
        if any(d < 0 for d in shape) or fill.size != 1:
            return None
        if int(np.prod(shape, dtype=np.float64)) > MAX_FOLDED_ELEMENTS:
            raise _TooLarge(f"{int(np.prod(shape, dtype=np.float64)):,} elements")
        return np.full(shape, fill[0], dtype=fill.dtype)
    if op == "Gather":
        return np.take(xs[0], xs[1].astype(np.int64), axis=int(attrs.get("axis", 0)))
    if op == "Unsqueeze":
        axes = _axes(node, attrs, value)
        if not axes:
            return None
        rank = xs[0].ndim + len(axes)
        out = xs[0]
        for axis in sorted(a + rank if a < 0 else a for a in axes):
            out = np.expand_dims(out, axis)
        return out
    if op == "Squeeze":
        axes = _axes(node, attrs, value)
        if axes is None:
            return None
        return np.squeeze(xs[0], axis=tuple(axes) if axes else None)
    if op == "Concat":
        return np.concatenate(xs, axis=int(attrs.get("axis", 0)))
    if op == "Cast":
        return xs[0].astype(_cast(int(attrs["to"])))
    if op == "Identity":
        return xs[0]
    if op == "Reshape":
        return _reshape(xs[0], xs[1])
    if op == "Sqrt":
        return np.sqrt(xs[0]) if np.all(xs[0] >= 0) else None
    if op in ("Add", "Sub", "Mul", "Div"):
        a, b = xs
        if np.prod(np.broadcast_shapes(a.shape, b.shape), dtype=np.float64) > MAX_FOLDED_ELEMENTS:
            raise _TooLarge(f"{int(np.prod(np.broadcast_shapes(a.shape, b.shape), dtype=np.float64)):,} elements")
        if op == "Div":
            if np.any(b == 0):
                return None
            out = a / b
            return (np.trunc(out) if np.issubdtype(a.dtype, np.integer) else out).astype(a.dtype)
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](a, b).astype(a.dtype)
    return None


FOLDABLE: frozenset[str] = frozenset({"Constant", "ConstantOfShape", "Shape", "Gather", "Unsqueeze", "Squeeze",
                                      "Concat", "Cast", "Identity", "Reshape", "Sqrt", "Add", "Sub", "Mul", "Div"})
"""Ops evaluated when all their inputs are constants (``Shape``: when its input's shape is static)."""


def fold_constants(path: Path, model: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    """Fold the constant subgraphs of ``model`` (in place; see the module docstring); ``shapes`` are
    the static shapes of the graph's tensors after shape inference. Returns the number of nodes folded."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray | None:
        if name not in values and name in inits:
            values[name] = tensor_array(path, inits[name])
        return values.get(name)

    keep, folded = [], []
    for node in graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else ""
        result = None
        if op == "Shape" and node.input and node.input[0] in shapes:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            dims = shapes[node.input[0]]
            result = np.array(dims[attrs.get("start", 0):attrs.get("end", len(dims))], dtype=np.int64)
        elif op in FOLDABLE and len(node.output) == 1:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            n_in = 1 if op in ("Unsqueeze", "Squeeze") else len(node.input)
            try:
                result = _eval(path, op, node, attrs, [value(i) for i in node.input[:n_in] if i], value)
            except _TooLarge as exc:
                name = shown(node.name) if node.name else "(unnamed)"
                raise InputError(f"{path}: node {name} ({op}) folds to a constant of {exc}, more than "
                                 f"{MAX_FOLDED_ELEMENTS:,}") from None
            except (ValueError, IndexError, TypeError, KeyError, OverflowError):
                result = None  # left to the translator, which names the node
        if result is None or np.asarray(result).dtype.kind not in "biuf":  # bfloat16, float8...: not folded
            keep.append(node)
            continue
        values[node.output[0]] = np.asarray(result)
        folded.append(node.output[0])
    if not folded:
        return 0
    used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(keep)
    gone = set(folded)
    kept_info = [vi for vi in graph.value_info if vi.name not in gone]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    graph.initializer.extend(numpy_helper.from_array(values[name], name) for name in folded if name in used)
    return len(folded)
