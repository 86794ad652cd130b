"""Train the digits CNN of `scenarios/digits_cnn.toml` (issue 16: accuracy on real data).

    python tools/train_digits.py [--out models] [--seed 0] [--epochs 40]

The data: scikit-learn's bundled digits set (1,797 8 x 8 images, 0-16 grey levels, shipped inside
the scikit-learn package: nothing is downloaded; scikit-learn is used for its data only,
`pip install -e '.[digits]'`). A fixed, seeded split: 360 held-out test images, 1,437 training
images. The network, trained in plain numpy (mini-batch SGD with momentum, softmax cross-entropy):

    image 1 x 8 x 8 (grey / 16, in [0, 1])
    conv 3x3, 1 -> 8, pad 1, ReLU          8 x 8 x 8
    conv 3x3, 8 -> 16, stride 2, pad 1, ReLU   4 x 4 x 16
    flatten, fc 256 -> 10 (logits)

It is exported as ONNX built with `onnx.helper` (`digits_cnn.onnx`), imported with `cimsim import
--calibration` on the training images (`digits_cnn.toml`, `.npz` int8 weights, `.quant.json`), and
the held-out images are quantised with the imported input scale into `digits_test.npz`: the int8
array `images` (360, 8, 8, 1) the chip reads, `labels` (the true digits) and `float_predictions`
(the float model's top-1 on the same float images, computed here in numpy: the float baseline the
summary reports next to the chip's and the int8 reference's accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TEST_IMAGES = 360


def load_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x (N, 1, 8, 8) float32 in [0, 1], train y, test x, test y), a seeded permutation."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:TEST_IMAGES], order[TEST_IMAGES:]
    return x[train], y[train], x[test], y[test]


def im2col(x: np.ndarray, k: int, stride: int, pad: int) -> tuple[np.ndarray, int, int]:
    """(N, C, H, W) -> (N * Ho * Wo, C * k * k) windows (rows in (n, ho, wo) order), Ho, Wo."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((n, c, k, k, ho, wo), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * ho * wo, c * k * k), ho, wo


def col2im(cols: np.ndarray, shape: tuple[int, ...], k: int, stride: int, pad: int) -> np.ndarray:
    """The adjoint of `im2col`: window gradients summed back into (N, C, H, W)."""
    n, c, h, w = shape
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    g = cols.reshape(n, ho, wo, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += g[:, :, i, j]
    return xp[:, :, pad:pad + h, pad:pad + w]


CONVS = (("conv1", 1, 8, 1), ("conv2", 8, 16, 2))
"""(name, C_in, C_out, stride), 3x3 kernels, padding 1."""


def init(seed: int) -> dict[str, np.ndarray]:
    """He-initialised weights (ONNX layouts: conv (C_out, C_in, 3, 3), fc (10, 256))."""
    rng = np.random.default_rng(seed)
    p: dict[str, np.ndarray] = {}
    for name, cin, cout, _ in CONVS:
        p[f"{name}.w"] = rng.normal(0, np.sqrt(2 / (9 * cin)), (cout, cin, 3, 3)).astype(np.float32)
        p[f"{name}.b"] = np.zeros(cout, np.float32)
    p["fc.w"] = rng.normal(0, np.sqrt(1 / 256), (10, 256)).astype(np.float32)
    p["fc.b"] = np.zeros(10, np.float32)
    return p


def forward(p: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """Logits (N, 10) and what the backward pass needs."""
    tape = []
    a = x
    for name, _, cout, stride in CONVS:
        cols, ho, wo = im2col(a, 3, stride, 1)
        z = cols @ p[f"{name}.w"].reshape(cout, -1).T + p[f"{name}.b"]
        out = np.maximum(z, 0).reshape(len(x), ho, wo, cout).transpose(0, 3, 1, 2)
        tape.append((a, cols, z))
        a = out
    flat = a.reshape(len(x), -1)  # ONNX Flatten of NCHW: (c, h, w) order
    tape.append((flat,))
    return flat @ p["fc.w"].T + p["fc.b"], tape


def backward(p: dict[str, np.ndarray], tape: list[tuple[np.ndarray, ...]], dlogits: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of the loss for every parameter."""
    g: dict[str, np.ndarray] = {}
    (flat,) = tape[-1]
    g["fc.w"], g["fc.b"] = dlogits.T @ flat, dlogits.sum(0)
    da = (dlogits @ p["fc.w"]).reshape(-1, 16, 4, 4)
    for (name, _, cout, stride), (a_in, cols, z) in zip(reversed(CONVS), reversed(tape[:-1]), strict=True):
        dz = da.transpose(0, 2, 3, 1).reshape(-1, cout) * (z > 0)
        g[f"{name}.w"] = (dz.T @ cols).reshape(p[f"{name}.w"].shape)
        g[f"{name}.b"] = dz.sum(0)
        da = col2im(dz @ p[f"{name}.w"].reshape(cout, -1), a_in.shape, 3, stride, 1)
    return g


def train(x: np.ndarray, y: np.ndarray, seed: int, epochs: int, lr: float = 0.05, batch: int = 32) -> dict[str, np.ndarray]:
    """Mini-batch SGD with momentum 0.9 on softmax cross-entropy."""
    p = init(seed)
    v = {k: np.zeros_like(a) for k, a in p.items()}
    rng = np.random.default_rng(seed + 1)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for s in range(0, len(y), batch):
            idx = order[s:s + batch]
            logits, tape = forward(p, x[idx])
            e = np.exp(logits - logits.max(1, keepdims=True))
            prob = e / e.sum(1, keepdims=True)
            prob[np.arange(len(idx)), y[idx]] -= 1
            grads = backward(p, tape, prob / len(idx))
            for k in p:
                v[k] = 0.9 * v[k] - lr * grads[k]
                p[k] = p[k] + v[k]
    return p


def export_onnx(p: dict[str, np.ndarray], path: Path) -> None:
    """conv-ReLU, conv-ReLU, Flatten, Gemm as an ONNX file (opset 17), built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(a.astype(np.float32), k.replace(".", "_")) for k, a in p.items()]
    nodes, x = [], "image"
    for name, _, _, stride in CONVS:
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [name], name=name, kernel_shape=[3, 3],
                                      strides=[stride, stride], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [name], [f"{name}_relu"], name=f"{name}_relu"))
        x = f"{name}_relu"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "digits_cnn",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tools/train_digits.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _relative_calibration(quant: Path) -> None:
    """Name the (deleted) calibration file without the absolute path of the machine that trained."""
    meta = json.loads(quant.read_text())
    meta["calibration"] = "digits_calibration.npz: 256 training images (tools/train_digits.py, not kept)"
    quant.write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Train, export, import and write the held-out images (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "models"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args(argv)
    out = Path(args.out)
    xtr, ytr, xte, yte = load_split(args.seed)
    p = train(xtr, ytr, args.seed, args.epochs)
    float_pred = forward(p, xte)[0].argmax(1)
    train_acc = float((forward(p, xtr)[0].argmax(1) == ytr).mean())
    onnx_path = out / "digits_cnn.onnx"
    export_onnx(p, onnx_path)
    calib = out / "digits_calibration.npz"
    np.savez(calib, images=xtr[:256])
    from cimsim.onnx_import import import_onnx, write_imported

    imported = import_onnx(onnx_path, calib, calibration_images=256)
    write_imported(imported, out / "digits_cnn.toml")
    calib.unlink()
    _relative_calibration(out / "digits_cnn.quant.json")
    scale = imported.input_scale
    q = np.clip(np.rint(xte / scale), -128, 127).astype(np.int8).transpose(0, 2, 3, 1)  # (N, 8, 8, 1)
    np.savez_compressed(out / "digits_test.npz", images=q, labels=yte, float_predictions=float_pred.astype(np.int64))
    print(json.dumps({"train_accuracy": round(train_acc, 4),
                      "float_test_accuracy": round(float((float_pred == yte).mean()), 4),
                      "input_scale": scale, "test_images": len(yte)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
