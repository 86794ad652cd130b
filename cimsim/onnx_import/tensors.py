"""The tensors of an ONNX model: their values (`tensor_array`, numeric only) and their external
data, checked before a byte of it is read.

An ONNX tensor may keep its bytes in another file (``data_location = EXTERNAL``, with
``location``, ``offset`` and ``length`` entries). `check_external` checks every such tensor of
the model (initializers and the tensors of node attributes, subgraphs included) against the
model's folder and the file:

- ``location`` is a relative path that stays inside the model's folder: not absolute, no ``..``,
  no symlink leading out of it; it names a regular file;
- ``offset`` and ``length`` are non-negative integers, lie within the file, and ``length`` is the
  byte size of the tensor's declared shape and type (a tensor without ``length`` must end the file);
- the tensor's type has a fixed size (a STRING tensor cannot be external);
- the total stays under the caller's cap.

Every violation is one `InputError` naming the model file and the tensor. `load_external` then
reads the data with onnx's own loader, with the model's folder as the base directory (never
the working directory).
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from cimsim.errors import InputError

_FOUR_BIT = {21, 22, 23}
"""UINT4, INT4, FLOAT4E2M1: two elements per byte."""
_EXTERNAL = 1
"""TensorProto.EXTERNAL."""


def shown(name: str, limit: int = 80, quote: bool = True) -> str:
    """``name`` for a one-line message: quoted, every character that is not printable ASCII
    escaped, cut to ``limit`` characters."""
    text = ascii(name[:limit]) if quote else ascii(name[:limit])[1:-1]
    return text + ("..." if len(name) > limit else "")


def all_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of ``graph``: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from all_tensors(attr.g)
            for sub in attr.graphs:
                yield from all_tensors(sub)


def tensor_bytes(tensor: Any) -> int | None:
    """Bytes of ``tensor``'s declared shape and type, or None for a type without a fixed size."""
    from onnx import helper

    count = math.prod(int(d) for d in tensor.dims)
    if tensor.data_type in _FOUR_BIT:
        return (count + 1) // 2
    if tensor.data_type in (0, 8):  # UNDEFINED, STRING
        return None
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    return count * itemsize


def _type_name(data_type: int) -> str:
    from onnx import TensorProto

    try:
        return str(TensorProto.DataType.Name(data_type))
    except ValueError:
        return str(data_type)


def _location(model_path: Path, tensor: Any, fail: Any) -> Path:
    """The checked file of an external tensor (inside the model's folder, a regular file)."""
    entries = {e.key: e.value for e in tensor.external_data}
    raw = entries.get("location", "")
    if not raw or "\x00" in raw:
        raise fail("has no valid 'location'")
    if PurePosixPath(raw).is_absolute() or PureWindowsPath(raw).is_absolute() or PureWindowsPath(raw).drive:
        raise fail(f"location {raw!a} is an absolute path; only files inside the model's folder are read")
    if ".." in PurePosixPath(raw.replace("\\", "/")).parts:
        raise fail(f"location {raw!a} leaves the model's folder ('..')")
    base = Path(os.path.realpath(model_path.parent))
    target = Path(os.path.realpath(base / raw))
    if target != base and base not in target.parents:
        raise fail(f"location {raw!a} leads outside the model's folder (a symlink)")
    try:
        st = os.stat(target)
    except OSError as exc:
        raise fail(f"external file {raw!a}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"external file {raw!a} is not a regular file")
    return target


def _int_entry(tensor: Any, key: str, fail: Any) -> int | None:
    for entry in tensor.external_data:
        if entry.key == key:
            value = entry.value.strip()
            if not (value.isascii() and value.isdigit()) or len(value) > 20:
                raise fail(f"external '{key}' = {entry.value[:40]!a} is not a non-negative integer")
            return int(value)
    return None


def check_external(model_path: Path, model: Any, max_total: int) -> list[Path]:
    """Check every external tensor of ``model`` (module docstring); the files they read."""
    files: dict[Path, int] = {}
    total = 0
    for tensor in all_tensors(model.graph):
        if tensor.data_location != _EXTERNAL:
            continue

        def fail(problem: str, tensor: Any = tensor) -> InputError:
            return InputError(f"{model_path}: tensor {shown(tensor.name)}: {problem}")

        where = _location(model_path, tensor, fail)
        size = files.setdefault(where, where.stat().st_size)
        want = tensor_bytes(tensor)
        if want is None:
            raise fail(f"its data type ({_type_name(tensor.data_type)}) has no fixed size; it cannot be external data")
        offset = _int_entry(tensor, "offset", fail) or 0
        length = _int_entry(tensor, "length", fail)
        name = ascii(where.name)
        if length is None:
            if size - offset != want:
                raise fail(f"external data in {name} from offset {offset:,} to its end is {size - offset:,} bytes, "
                           f"but shape {list(tensor.dims)} needs {want:,}")
            length = want
        if length != want:
            raise fail(f"external length {length:,} does not match its shape {list(tensor.dims)} and type "
                       f"({want:,} bytes)")
        if offset + length > size:
            raise fail(f"external data (offset {offset:,}, length {length:,}) runs past the end of {name} "
                       f"({size:,} bytes)")
        total += length
        if total > max_total:
            raise InputError(f"{model_path}: external data of more than {max_total:,} bytes; refusing to read it")
    return list(files)


def tensor_array(model_path: Path, tensor: Any) -> np.ndarray:
    """A TensorProto's values; a non-numeric (STRING) or malformed tensor is an `InputError`."""
    from onnx import numpy_helper

    if tensor.data_type in (0, 8):  # UNDEFINED, STRING
        raise InputError(f"{model_path}: tensor {shown(tensor.name)} has data type {_type_name(tensor.data_type)}; "
                         "weights and constants must be numeric")
    try:
        arr = numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise InputError(f"{model_path}: tensor {shown(tensor.name)} cannot be read: {why}") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{model_path}: tensor {shown(tensor.name)} has dtype {arr.dtype}; weights and constants "
                         "must be numeric")
    return arr


def load_external(model_path: Path, model: Any) -> None:
    """Read the (checked) external data into ``model``, with the model's folder as the base."""
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(model, str(model_path.parent))
    except (OSError, ValueError) as exc:
        raise InputError(f"{model_path}: cannot read external data: {' '.join(str(exc).split())[:200]}") from None
