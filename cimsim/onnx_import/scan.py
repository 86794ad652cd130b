"""The ONNX ops the importer handles, and a scan that lists every unsupported node at once.

`scan_ops` runs on the parsed protobuf before anything expensive (external data, `onnx.checker`,
shape inference): one pass over the nodes, so a large model with an unsupported op is refused at
once, with every unsupported node in one line (op, count, names), e.g. ``unsupported ONNX
operators: Softmax (1: 'prob'), LRN (2: 'norm1', 'norm2')``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cimsim.errors import InputError
from cimsim.onnx_import.tensors import shown

SUPPORTED_OPS: tuple[str, ...] = (
    "Conv", "BatchNormalization", "Relu", "Clip", "Add", "Sum", "Mul", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Flatten", "Reshape", "Gemm", "MatMul", "Concat",
    "Identity", "Dropout", "Softmax", "Constant",
)
"""ONNX ops the importer translates (Mul only by a constant after a Conv/Gemm, Softmax only as the
graph output, Constant only as weights, shapes and clip bounds)."""
FOLDED_OPS: tuple[str, ...] = (
    "Shape", "ConstantOfShape", "Gather", "Unsqueeze", "Squeeze", "Cast", "Sub", "Div", "Sqrt",
)
"""Ops accepted only on constants (`cimsim.onnx_import.fold` replaces them by their values)."""
NAMES_SHOWN = 3
"""Node names listed per unsupported op type."""


def _op(node: Any) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def needed(graph: Any) -> list[bool]:
    """For each node of ``graph``, whether a graph output depends on it (one pass back from the outputs)."""
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output if name}
    used = [False] * len(graph.node)
    stack = [o.name for o in graph.output]
    while stack:
        i = producer.get(stack.pop(), -1)
        if i >= 0 and not used[i]:
            used[i] = True
            stack.extend(name for name in graph.node[i].input if name)
    return used


def scan_ops(path: Path, graph: Any) -> None:
    """Refuse (one-line `InputError`) a graph with any node the importer cannot handle among those
    its outputs depend on: an op outside `SUPPORTED_OPS` and `FOLDED_OPS`, an op of another domain,
    or a Softmax that is not a graph output."""
    outputs = {o.name for o in graph.output}
    found: dict[str, list[str]] = {}
    allowed = set(SUPPORTED_OPS) | set(FOLDED_OPS)
    for i, (node, use) in enumerate(zip(graph.node, needed(graph), strict=True)):
        if not use:
            continue
        op = _op(node)
        if op in allowed and (op != "Softmax" or (node.output and node.output[0] in outputs)):
            continue
        found.setdefault(op, []).append(shown(node.name, 60) if node.name else f"#{i}")
    if not found:
        return
    parts = []
    for op, names in found.items():
        more = f", ... {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
        parts.append(f"{shown(op, 60, quote=False)} ({len(names)}: {', '.join(names[:NAMES_SHOWN])}{more})")
    note = "a Softmax only as the graph output; " if "Softmax" in found else ""
    raise InputError(f"{path}: unsupported ONNX operators: {', '.join(parts)} ({note}supported: "
                     f"{', '.join(SUPPORTED_OPS)}; on constants: {', '.join(FOLDED_OPS)})")
