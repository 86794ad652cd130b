"""Load an ONNX file into a checked, shape-inferred ModelProto, every failure a one-line `InputError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cimsim.errors import InputError


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def load_proto(path: Path) -> Any:
    """The checked, shape-inferred ModelProto of ``path``; every problem is one-line `InputError`."""
    try:
        import onnx
        from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
    except ImportError:
        raise InputError(f"{path}: reading ONNX models needs the onnx package: pip install 'cimsim[onnx]'") from None
    if not path.is_file():
        raise InputError(f"{path}: ONNX file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ONNX file: {exc.strerror}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not an ONNX model (the protobuf does not parse: {_one_line(exc)})") from None
    if not model.graph.node:
        raise InputError(f"{path}: not an ONNX model, or one with an empty graph (no nodes)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InputError(f"{path}: invalid ONNX model: {_one_line(exc)[:300]}") from None
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise InputError(f"{path}: ONNX shape inference failed: {_one_line(exc)[:300]}") from None
