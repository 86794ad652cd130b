"""tools/train_digits.py: its backward pass is the gradient of its forward pass, and the shipped
digits files agree with each other (the ONNX model's float predictions on the int8 test images)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import train_digits as td


def test_backward_matches_numerical_gradient() -> None:
    rng = np.random.default_rng(3)
    p = {k: v.astype(np.float64) + rng.normal(0, 0.05, v.shape) for k, v in td.init(1).items()}
    x, y = rng.random((3, 1, 8, 8)), np.array([1, 4, 7])

    def loss(q: dict[str, np.ndarray]) -> float:
        logits = td.forward(q, x)[0]
        logits = logits - logits.max(1, keepdims=True)
        return float(-(logits[np.arange(3), y] - np.log(np.exp(logits).sum(1))).mean())

    logits, tape = td.forward(p, x)
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = e / e.sum(1, keepdims=True)
    prob[np.arange(3), y] -= 1
    grads = td.backward(p, tape, prob / 3)
    for key in ("conv1.w", "conv2.w", "conv2.b", "fc.w"):
        flat = p[key].reshape(-1)
        for i in rng.choice(flat.size, 4, replace=False):
            old = flat[i]
            flat[i] = old + 1e-5
            up = loss(p)
            flat[i] = old - 1e-5
            down = loss(p)
            flat[i] = old
            assert grads[key].reshape(-1)[i] == pytest.approx((up - down) / 2e-5, rel=1e-3, abs=1e-7)


def test_shipped_float_predictions_match_the_onnx_model() -> None:
    ort = pytest.importorskip("onnxruntime")
    with np.load(ROOT / "models" / "digits_test.npz") as npz:
        data = {key: npz[key] for key in npz.files}
    scale = json.loads((ROOT / "models" / "digits_cnn.quant.json").read_text())["input_scale"]
    x = (data["images"].astype(np.float32) * np.float32(scale)).transpose(0, 3, 1, 2)
    sess = ort.InferenceSession(str(ROOT / "models" / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    pred = np.array([sess.run(None, {"image": x[i:i + 1]})[0].argmax() for i in range(len(x))])
    assert len(pred) == len(data["labels"]) == 360
    assert (pred == data["float_predictions"]).mean() >= 0.99  # the input's int8 rounding moves at most a few
    assert (pred == data["labels"]).mean() > 0.9
