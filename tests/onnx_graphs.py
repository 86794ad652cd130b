"""Small ONNX graphs built with onnx.helper for the importer's tests (nothing is downloaded)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    """Appends ONNX nodes with seeded, He-initialised weights, tracking each tensor's NCHW shape."""

    def __init__(self, shape: tuple[int, ...] = (1, 3, 16, 16), seed: int = 0, input_name: str = "image") -> None:
        self.rng = np.random.default_rng(seed)
        self.input_name = input_name
        self.input_shape = shape
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.shape: dict[str, tuple[int, ...]] = {input_name: tuple(shape)}
        self.count = 0

    def _name(self, op: str) -> str:
        self.count += 1
        return f"{op.lower()}{self.count}"

    def const(self, array: np.ndarray, hint: str = "w") -> str:
        name = f"{hint}{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs: Any) -> str:
        name = self._name(op)
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        self.shape[name] = shape
        return name

    # -- layers ---------------------------------------------------------------

    def conv(self, x: str, cout: int, k: int | tuple[int, int] = 3, stride: int | tuple[int, int] = 1,
             pad: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True) -> str:
        n, c, h, w = self.shape[x]
        kh, kw = (k, k) if isinstance(k, int) else k
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        fan_in = kh * kw * c // groups
        weight = self.rng.normal(0, np.sqrt(2.0 / fan_in), size=(cout, c // groups, kh, kw))
        inputs = [x, self.const(weight)]
        if bias:
            inputs.append(self.const(self.rng.normal(0, 0.1, size=cout), "b"))
        shape = (n, cout, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        return self.node("Conv", inputs, shape, kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw],
                         group=groups)

    def bn(self, x: str) -> str:
        c = self.shape[x][1]
        params = [self.rng.lognormal(0, 0.2, c), self.rng.normal(0, 0.2, c), self.rng.normal(0, 0.2, c),
                  self.rng.lognormal(0, 0.2, c)]
        return self.node("BatchNormalization", [x] + [self.const(p, "bn") for p in params], self.shape[x],
                         epsilon=1e-5)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x], self.shape[x])

    def relu6(self, x: str) -> str:
        return self.node("Clip", [x, self.const(np.array(0.0), "lo"), self.const(np.array(6.0), "hi")],
                         self.shape[x])

    def add(self, a: str, b: str) -> str:
        return self.node("Add", [a, b], self.shape[a])

    def pool(self, op: str, x: str, k: int, stride: int, pad: int = 0, **attrs: Any) -> str:
        n, c, h, w = self.shape[x]
        shape = (n, c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
        return self.node(op, [x], shape, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, **attrs)

    def gap(self, x: str) -> str:
        n, c = self.shape[x][:2]
        return self.node("GlobalAveragePool", [x], (n, c, 1, 1))

    def flatten(self, x: str) -> str:
        n = self.shape[x][0]
        return self.node("Flatten", [x], (n, int(np.prod(self.shape[x][1:]))), axis=1)

    def reshape(self, x: str) -> str:
        n = self.shape[x][0]
        shape = self.const(np.array([n, -1]), "shape")
        self.inits[-1] = numpy_helper.from_array(np.array([n, -1], dtype=np.int64), shape)
        return self.node("Reshape", [x, shape], (n, int(np.prod(self.shape[x][1:]))))

    def _fc_weights(self, k: int, m: int) -> np.ndarray:
        w = self.rng.normal(0, np.sqrt(2.0 / k), size=(k, m))
        return w - w.mean(axis=0, keepdims=True)  # no common mode: logits differ between images

    def gemm(self, x: str, m: int, trans_b: bool = True) -> str:
        n, k = self.shape[x]
        w = self._fc_weights(k, m)
        b = self.const(self.rng.normal(0, 0.05, size=m), "b")
        return self.node("Gemm", [x, self.const(w.T if trans_b else w), b], (n, m), transB=int(trans_b))

    def matmul(self, x: str, m: int, bias: bool = True) -> str:
        n, k = self.shape[x]
        y = self.node("MatMul", [x, self.const(self._fc_weights(k, m))], (n, m))
        return self.node("Add", [y, self.const(self.rng.normal(0, 0.05, size=m), "b")], (n, m)) if bias else y

    def concat(self, *xs: str) -> str:
        n, _, h, w = self.shape[xs[0]]
        return self.node("Concat", list(xs), (n, sum(self.shape[x][1] for x in xs), h, w), axis=1)

    # -- the model ----------------------------------------------------------------

    def model(self, output: str, dynamic: dict[int, str] | None = None) -> onnx.ModelProto:
        dims: list[Any] = list(self.input_shape)
        for i, name in (dynamic or {}).items():
            dims[i] = name
        inp = helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, dims)
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, list(self.shape[output]))
        graph = helper.make_graph(self.nodes, "test", [inp], [out], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        return model


def small_cnn(seed: int = 0) -> tuple[GraphBuilder, onnx.ModelProto]:
    """A CNN using every supported op kind: conv+BN+ReLU, residual add, maxpool, depthwise conv with
    ReLU6, grouped 1x1, concat, local average pool, flatten and Gemm (10 logits)."""
    g = GraphBuilder((1, 3, 16, 16), seed)
    x = g.relu(g.bn(g.conv(g.input_name, 16, bias=False)))
    y = g.bn(g.conv(g.relu(g.bn(g.conv(x, 16))), 16))
    x = g.relu(g.add(y, x))
    x = g.pool("MaxPool", x, 2, 2)                                  # 8x8x16
    d = g.relu6(g.bn(g.conv(x, 16, groups=16)))                     # depthwise 3x3, ReLU6
    p = g.bn(g.conv(d, 16, k=1, pad=0, groups=2))                   # grouped 1x1
    x = g.concat(p, x)                                              # 8x8x32
    x = g.relu(g.bn(g.conv(x, 24, k=(3, 1), pad=(1, 0))))           # non-square
    x = g.pool("AveragePool", x, 2, 2)                              # 4x4x24
    x = g.flatten(x)
    return g, g.model(g.gemm(x, 10))


def run_ort(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    """onnxruntime's float outputs of ``model`` for float32 ``images`` (fed one at a time, batch 1)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: images[i:i + 1].astype(np.float32)})[0]
                           for i in range(len(images))])


def balance_logits(model: onnx.ModelProto, images: np.ndarray) -> onnx.ModelProto:
    """Subtract the mean logit over ``images`` from the last Gemm's bias, so that no class wins for
    every image (as in a trained classifier); ``model`` is changed in place and returned."""
    last = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    logits = run_ort(model, images)
    for i, init in enumerate(model.graph.initializer):
        if init.name == last.input[2]:
            bias = numpy_helper.to_array(init) - logits.mean(axis=0)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), init.name))
    return model
