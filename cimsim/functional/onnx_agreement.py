"""Agreement of the simulated chip's outputs with onnxruntime, for a scenario whose model is an
``.onnx`` file (issue 12).

When a scenario names an ``.onnx`` model, `cimsim.onnx_import.import_onnx` translates and
quantises it as ``cimsim import`` does with its defaults (no ``--calibration``: generated
calibration images, seed 0), and the functional datapath runs its int8 weights (unless
``functional.weights`` names others). Every image the chip ran is kept (int8) with the chip's
int8 output; at the end of the run onnxruntime computes the float model on the same images,
dequantised with the input scale, and the chip's outputs, dequantised with the output scale,
are compared with onnxruntime's: the top-1 agreement (argmax of the flattened output) and the
relative L2 error ``||chip - ort|| / ||ort||`` over all images. An image whose output (the
chip's or onnxruntime's) has a non-finite value counts as a disagreement and the relative L2
is then None (``non_finite_images`` says how many): never a perfect score, never NaN. Without onnxruntime (an
optional extra: ``pip install 'cimsim[onnxruntime]'``) the summary says it is not available.
A model TOML written by ``cimsim import`` is not compared (name the ``.onnx`` itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.functional.weights import LayerParams


@dataclass(frozen=True, eq=False)
class OnnxSource:
    """An ``.onnx`` model as the chip runs it: its imported weights and int8 scales."""

    path: Path
    params: dict[str, LayerParams]
    input_scale: float
    output_scale: float
    input_shape: tuple[int, ...]
    """ONNX input shape without the batch: (C, H, W) or (F,)."""
    output_shape: tuple[int, ...]
    onnx_output: str = ""
    """The ONNX tensor the network's output is (a graph output, or the input of a dropped final
    Softmax); empty: the graph's first output."""


def onnx_source(model: str | Path) -> OnnxSource | None:
    """The imported model if `model` is an ``.onnx`` file, else None."""
    path = Path(model)
    if path.suffix.lower() != ".onnx":
        return None
    from cimsim.onnx_import import import_onnx

    imp = import_onnx(path)
    tr = imp.translation
    return OnnxSource(path, imp.params, imp.input_scale, imp.output_scale, tuple(tr.input_shape),
                      tuple(tr.output_shape), tr.onnx_output)


def _session(ort: Any, path: Path, output: str) -> tuple[Any, list[str] | None]:
    """An onnxruntime session of the model at ``path`` computing tensor ``output`` (made a graph
    output if it is not one: the input of a final Softmax the import dropped), and the names to run."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if not output or output in [o.name for o in sess.get_outputs()]:
        return sess, [output] if output else None
    import onnx

    model = onnx.load(str(path))  # external data from the model's folder, as the import read it
    infos = onnx.shape_inference.infer_shapes(model).graph.value_info
    elem = next((vi.type.tensor_type.elem_type for vi in infos if vi.name == output), onnx.TensorProto.FLOAT)
    model.graph.output.append(onnx.helper.make_tensor_value_info(output, elem, None))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]), [output]


class OnnxAgreement:
    """Collects the chip's int8 outputs and compares them with onnxruntime (module docstring)."""

    def __init__(self, source: OnnxSource) -> None:
        self.source = source
        self.images: dict[int, np.ndarray] = {}
        self.outputs: dict[int, np.ndarray] = {}

    def add(self, image: int, pixels: np.ndarray, output: np.ndarray) -> None:
        """Image `image` (int8 (H, W, C)) and the chip's int8 network output for it."""
        self.images[image] = np.array(pixels, dtype=np.int8)
        self.outputs[image] = np.array(output, dtype=np.int8)

    def _onnx_input(self, pixels: np.ndarray) -> np.ndarray:
        """int8 (N, H, W, C) images, dequantised, in the ONNX input layout."""
        real = pixels.astype(np.float32) * np.float32(self.source.input_scale)
        if len(self.source.input_shape) == 3:
            return np.ascontiguousarray(real.transpose(0, 3, 1, 2))
        return real.reshape(real.shape[0], *self.source.input_shape)

    def _chip_output(self, out: np.ndarray) -> np.ndarray:
        """int8 (N, H, W, C) outputs, dequantised, flattened in the ONNX output layout (N, -1)."""
        real = out.astype(np.float64) * self.source.output_scale
        if len(self.source.output_shape) == 3:
            real = real.transpose(0, 3, 1, 2)
        return real.reshape(real.shape[0], -1)

    def summary(self) -> dict[str, Any]:
        """``{"available": True, "top1", "rel_l2", "images"}``, or why it is not available."""
        try:
            import onnxruntime as ort
        except ImportError:
            return {"available": False, "reason": "onnxruntime is not installed (pip install 'cimsim[onnxruntime]')"}
        keys = sorted(self.images)
        if not keys:
            return {"available": False, "reason": "no image was checked"}
        pixels = np.stack([self.images[k] for k in keys])
        got = self._chip_output(np.stack([self.outputs[k] for k in keys]))
        sess, names = _session(ort, self.source.path, self.source.onnx_output)
        inp = sess.get_inputs()[0]
        x = self._onnx_input(pixels)
        fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] > 0
        if fixed_batch:  # a graph exported with a fixed batch size of 1: one image at a time
            want = np.concatenate([sess.run(names, {inp.name: x[i:i + 1]})[0] for i in range(len(x))])
        else:
            want = sess.run(names, {inp.name: x})[0]
        want = np.asarray(want, dtype=np.float64).reshape(len(keys), -1)
        finite = np.isfinite(got).all(axis=1) & np.isfinite(want).all(axis=1)
        agree = finite & (got.argmax(axis=1) == want.argmax(axis=1))
        out: dict[str, Any] = {"available": True, "top1": round(float(agree.mean()), 4), "rel_l2": None,
                               "images": len(keys)}
        if not finite.all():  # an image with a non-finite output never agrees; no L2 is reported
            out["non_finite_images"] = int((~finite).sum())
            return out
        with np.errstate(all="ignore"):
            norm = float(np.linalg.norm(want))
            rel = float(np.linalg.norm(got - want)) / norm if norm else float("nan")
        if np.isfinite(rel):
            out["rel_l2"] = round(rel, 4)
        return out


__all__ = ["OnnxAgreement", "OnnxSource", "onnx_source"]
