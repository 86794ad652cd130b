"""Load an ONNX file into a checked, shape-inferred ModelProto, every failure a one-line `InputError`.

The file is loaded with onnx's own loader after a size check (`MAX_ONNX_BYTES`, from `os.stat`
before anything is read), with external data left out; then every external tensor is checked
(`cimsim.onnx_import.tensors.check_external`: its file inside the model's folder, its offset
and length inside the file and matching the tensor's shape and type) and loaded with the
model's folder as the base, never the working directory. Before the external data, the checker
and shape inference, node and tensor names longer than `MAX_NAME_CHARS` are refused and every
unsupported node is listed (`cimsim.onnx_import.scan.scan_ops`); a symbolic batch dimension is
then set to 1 (`cimsim.onnx_import.fold.fix_batch`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from cimsim.errors import InputError
from cimsim.onnx_import.fold import fix_batch
from cimsim.onnx_import.scan import scan_ops
from cimsim.onnx_import.tensors import check_external, load_external, shown

MAX_ONNX_BYTES = 2**31 - 1
"""Largest ``.onnx`` file read (protobuf's own limit for one message: 2 GiB). Larger weights go in
external data files, whose total is capped by `MAX_EXTERNAL_BYTES`."""
MAX_EXTERNAL_BYTES = 8 * 2**30
"""Largest total of external tensor data read for one model (8 GiB)."""
MAX_NAME_CHARS = 4096
"""Longest node or tensor name accepted."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_size(path: Path) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ONNX file: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file")
    if st.st_size > MAX_ONNX_BYTES:
        raise InputError(f"{path}: ONNX file of {st.st_size:,} bytes is larger than the {MAX_ONNX_BYTES:,}-byte "
                         "limit (put large weights in external data files)")


def _check_names(path: Path, model: Any) -> None:
    graph = model.graph
    named = [(f"node {i}", n.name) for i, n in enumerate(graph.node)]
    named += [(f"node {i} ({n.op_type}) tensor", t) for i, n in enumerate(graph.node) for t in [*n.input, *n.output]]
    named += [("initializer", t.name) for t in graph.initializer]
    named += [("graph input", v.name) for v in graph.input] + [("graph output", v.name) for v in graph.output]
    for what, name in named:
        if len(name) > MAX_NAME_CHARS:
            raise InputError(f"{path}: {what} has a name of {len(name):,} characters (at most {MAX_NAME_CHARS:,}): "
                             f"{shown(name, 40)}")


def load_proto(path: Path) -> tuple[Any, list[Path]]:
    """The checked, shape-inferred ModelProto of ``path`` and the external data files it read;
    every problem is one-line `InputError`."""
    try:
        import onnx
        from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
    except ImportError:
        raise InputError(f"{path}: reading ONNX models needs the onnx package: pip install 'cimsim[onnx]'") from None
    if not path.is_file():
        raise InputError(f"{path}: ONNX file not found")
    _check_size(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ONNX file: {exc.strerror or one_line(exc)}") from None
    except (DecodeError, ValueError, RuntimeError, TypeError) as exc:
        raise InputError(f"{path}: not an ONNX model (the protobuf does not parse: {one_line(exc)[:200]})") from None
    if not model.graph.node:
        raise InputError(f"{path}: not an ONNX model, or one with an empty graph (no nodes)")
    _check_names(path, model)
    scan_ops(path, model.graph)
    external = check_external(path, model, MAX_EXTERNAL_BYTES)
    if external:
        load_external(path, model)
    fix_batch(model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InputError(f"{path}: invalid ONNX model: {one_line(exc)[:300]}") from None
    return infer_shapes(path, model), external


def infer_shapes(path: Path, model: Any) -> Any:
    """``model`` with every tensor's shape inferred (strict); a failure is a one-line `InputError`."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise InputError(f"{path}: ONNX shape inference failed: {one_line(exc)[:300]}") from None
