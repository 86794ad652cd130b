"""Top-1 accuracy of a functional run on labelled images (issue 16).

The labels: the int array `labels` (one per image, at least `run.batch`) of the `.npz` named by
`functional.labels` (relative to the scenario), or, when that key is empty, of the images `.npz`
(`functional.images`) if it holds one. Without labels there is no accuracy. The optional int
array `float_predictions` of the same file is the float model's top-1 on the same images (written
by the tool that made the file, e.g. `tools/train_digits.py`): the float baseline. Accuracy is the
fraction of images whose argmax of the flattened network output equals the label, for the chip's
outputs (`chip`) and for the numpy int8 reference forward pass (`int8_reference`) on the same
int8 images; `float` from `float_predictions` (None without them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import InputError
from cimsim.functional.npz import Npz

MAX_CLASSES = 1 << 20
"""Largest label value accepted."""


def _read_ints(npz: Npz, name: str, batch: int) -> np.ndarray:
    shape = npz.shape(name)
    if len(shape) != 1 or shape[0] < batch:
        raise InputError(f"{npz.path}: array {name!r} has shape {shape}, expected (N,) with N >= run.batch ({batch})")
    arr = npz.read(name)[:batch]
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{npz.path}: array {name!r} has dtype {arr.dtype}, expected integers")
    if arr.size and (arr.min() < 0 or arr.max() >= MAX_CLASSES):
        raise InputError(f"{npz.path}: array {name!r} has values in [{arr.min()}, {arr.max()}], "
                         f"expected class indices in [0, {MAX_CLASSES})")
    return arr.astype(np.int64)


class Accuracy:
    """Collects each checked image's chip and reference top-1 (module docstring)."""

    def __init__(self, labels: np.ndarray, float_predictions: np.ndarray | None, source: Path) -> None:
        self.labels = labels
        self.float_predictions = float_predictions
        self.source = source
        self.chip: dict[int, int] = {}
        self.reference: dict[int, int] = {}

    @classmethod
    def from_files(cls, labels: Path | None, images: Path | None, batch: int) -> Accuracy | None:
        """The labels of `labels` (an .npz that must hold `labels`), else of `images` if it holds them."""
        path = labels if labels is not None else images
        if path is None:
            return None
        npz = Npz(path)
        try:
            if "labels" not in npz:
                if labels is not None:
                    raise InputError(f"{path}: functional.labels: no int array 'labels' in the archive")
                return None
            lab = _read_ints(npz, "labels", batch)
            fp = _read_ints(npz, "float_predictions", batch) if "float_predictions" in npz else None
        finally:
            npz.close()
        return cls(lab, fp, path)

    def add(self, image: int, chip_out: np.ndarray, reference_out: np.ndarray) -> None:
        """The chip's and the reference's network outputs for image `image`."""
        self.chip[image] = int(np.argmax(chip_out.reshape(-1)))
        self.reference[image] = int(np.argmax(reference_out.reshape(-1)))

    def summary(self) -> dict[str, Any]:
        """`{"images", "chip", "int8_reference", "float", "labels"}` (fractions rounded to 4 digits)."""
        keys = sorted(self.chip)
        if not keys:
            return {"images": 0, "chip": None, "int8_reference": None, "float": None, "labels": self.source.name}
        want = self.labels[keys]

        def frac(pred: np.ndarray) -> float:
            return round(float((pred == want).mean()), 4)

        return {
            "images": len(keys),
            "chip": frac(np.array([self.chip[k] for k in keys])),
            "int8_reference": frac(np.array([self.reference[k] for k in keys])),
            "float": frac(self.float_predictions[keys]) if self.float_predictions is not None else None,
            "labels": self.source.name,
        }


__all__ = ["Accuracy"]
