"""The ONNX importer's scan, graph simplification and the ops added for exported models (issue 22):
every unsupported node in one line before the checker, constant folding (the ``x.view(x.size(0), -1)``
shape arithmetic, ConstantOfShape weights, a symbolic batch), BatchNorm written as Mul and Add,
ReduceMean, Sum, ceil_mode pools and a final Softmax; each against onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import GraphBuilder, balance_logits, run_ort
from test_onnx import images_for, save

import cimsim.onnx_import.proto as proto
from cimsim.cli import main
from cimsim.onnx_import import float_forward, import_onnx, to_nhwc


def int64(g: GraphBuilder, values: list[int] | int, hint: str = "i") -> str:
    name = f"{hint}{len(g.inits)}"
    g.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
    return name


def raw(g: GraphBuilder, op: str, inputs: list[str], **attrs: Any) -> str:
    """A node whose output has no shape in the builder (shape arithmetic)."""
    name = g._name(op)
    g.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
    return name


def dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with a symbolic batch 'N' in its input and output."""
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def float_vs_ort(tmp_path: Path, g: GraphBuilder, model: onnx.ModelProto, name: str = "m.onnx",
                 want_model: onnx.ModelProto | None = None) -> tuple[Any, float]:
    """Import ``model``, run the translated float network and onnxruntime (``want_model``, default
    ``model``) on 4 images; (imported, max abs difference relative to the largest output)."""
    path = save(tmp_path, model, name)
    imp = import_onnx(path, calibration_images=4)
    x = images_for(g, 4, 3)
    specs = {s.name: s for s in imp.translation.specs}
    real = float_forward(imp.network, specs, to_nhwc(x.astype(np.float64), imp.translation.input_shape))
    got = real[imp.network.output_layer.name]
    want = run_ort(want_model or model, x)
    got = (got.transpose(0, 3, 1, 2) if want.ndim == 4 else got).reshape(want.shape)
    return imp, float(np.abs(got - want).max() / (np.abs(want).max() + 1e-9))


# -- the scan ------------------------------------------------------------------------------------


def _refuse_heavy_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the checker, shape inference and the external-data checks fail loudly if reached."""
    def reached(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the scan must come before this")
    monkeypatch.setattr(onnx.checker, "check_model", reached)
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", reached)
    monkeypatch.setattr(proto, "check_external", reached)


def test_scan_lists_every_unsupported_node_before_the_checker(tmp_path, capsys, monkeypatch):
    g = GraphBuilder((1, 3, 8, 8), seed=1)
    x = g.relu(g.conv(g.input_name, 4))
    for label in ("norm1", "norm2"):
        g.nodes.append(helper.make_node("LRN", [x], [label], name=label, size=3))
        g.shape[label] = g.shape[x]
        x = label
    g.nodes.append(helper.make_node("Softmax", [x], ["prob"], name="prob", axis=1))
    g.shape["prob"] = g.shape[x]
    x = g.node("Tanh", ["prob"], g.shape[x])
    g.nodes.append(helper.make_node("Erf", [x], ["e"]))  # unnamed: shown by its index
    g.shape["e"] = g.shape[x]
    path = save(tmp_path, g.model(g.relu(g.conv("e", 4))))
    _refuse_heavy_work(monkeypatch)
    assert main(["import", str(path), "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("cimsim: error: "), err
    assert ("unsupported ONNX operators: LRN (2: 'norm1', 'norm2'), Softmax (1: 'prob'), Tanh (1: 'tanh3'), "
            "Erf (1: #6) (a Softmax only as the graph output; supported: Conv,") in err, err


def test_scan_of_a_vgg19_sized_graph_is_a_pure_scan(tmp_path, capsys, monkeypatch):
    """VGG-19's 16 convs, 5 pools and 3 Gemms (half width, 32 x 32: 45 MB of weights) with two LRNs and
    a Softmax before the classifier: one line, and none of the checker, shape inference or external data."""
    g = GraphBuilder((1, 3, 32, 32), seed=2)
    x = g.input_name
    for block, (convs, width) in enumerate(((2, 32), (2, 64), (4, 128), (4, 256), (4, 256))):
        for _ in range(convs):
            x = g.relu(g.conv(x, width))
        if block < 2:
            name = f"lrn{block}"
            g.nodes.append(helper.make_node("LRN", [x], [name], name=name, size=5))
            g.shape[name] = g.shape[x]
            x = name
        x = g.pool("MaxPool", x, 2, 2)
    x = g.relu(g.gemm(g.flatten(x), 2048))
    x = g.relu(g.gemm(x, 2048))
    x = g.node("Softmax", [x], g.shape[x], axis=1)
    model = g.model(g.gemm(x, 1000))
    assert len(model.graph.node) >= 40 and model.ByteSize() > 40e6
    path = save(tmp_path, model)
    _refuse_heavy_work(monkeypatch)
    assert main(["import", str(path), "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "unsupported ONNX operators: LRN (2: 'lrn0', 'lrn1'), Softmax (1: 'softmax" in err, err


# -- constant folding and a symbolic batch ---------------------------------------------------------


def test_view_batch_minus_one_folds_to_a_flatten_with_a_symbolic_batch(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat (with a Constant node) -> Cast -> Reshape, as
    ``x.view(x.size(0), -1)`` exports, on a graph whose batch is 'N': one flatten before the fc."""
    g = GraphBuilder((1, 3, 8, 8), seed=3)
    x = g.pool("MaxPool", g.relu(g.conv(g.input_name, 4)), 2, 2)
    size = raw(g, "Shape", [x])
    batch = raw(g, "Gather", [size, int64(g, 0)], axis=0)
    batch = raw(g, "Unsqueeze", [batch, int64(g, [0], "axes")])
    minus = g._name("minus")
    g.nodes.append(helper.make_node("Constant", [], [minus], value_ints=[-1]))
    shape = raw(g, "Cast", [raw(g, "Concat", [batch, minus], axis=0)], to=TensorProto.INT64)
    flat = g.node("Reshape", [x, shape], (1, 4 * 4 * 4))
    model = dynamic_batch(g.model(g.gemm(flat, 5)))
    imp, diff = float_vs_ort(tmp_path, g, model)
    assert diff < 1e-5
    assert [s.type for s in imp.translation.specs] == ["conv", "maxpool", "flatten", "fc"]
    assert imp.translation.input_shape == (3, 8, 8)


def test_constant_of_shape_weights_and_squeeze_fold(tmp_path):
    """Weights made by ConstantOfShape (as the ONNX zoo's light models ship them) and a bias by
    Squeeze of an initializer are folded into initializers."""
    g = GraphBuilder((1, 3, 6, 6), seed=4)
    w = raw(g, "ConstantOfShape", [int64(g, [4, 3, 3, 3])],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.05]))
    b = raw(g, "Squeeze", [g.const(np.array([[0.1, -0.2, 0.3, 0.0]])), int64(g, [0], "axes")])
    x = g.node("Conv", [g.input_name, w, b], (1, 4, 6, 6), kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    imp, diff = float_vs_ort(tmp_path, g, g.model(g.relu(x)))
    assert diff < 1e-5 and [s.type for s in imp.translation.specs] == ["conv"]


def test_a_fold_into_a_huge_constant_is_one_line(tmp_path, capsys):
    g = GraphBuilder((1, 3, 6, 6), seed=4)
    raw(g, "ConstantOfShape", [int64(g, [2**20, 2**20])])  # even unused: every node is folded
    path = save(tmp_path, g.model(g.conv(g.input_name, 4)))
    assert main(["import", str(path), "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "(ConstantOfShape) folds to a constant of 1,099,511,627,776" in err, err


# -- BatchNorm as Mul and Add ----------------------------------------------------------------------


def test_bn_written_as_unsqueeze_mul_add_is_fused_into_the_conv(tmp_path):
    """Conv -> BatchNormalization -> Mul(Unsqueeze(scale)) -> Add(Unsqueeze(shift)) -> Relu, as the ONNX
    zoo's Inception v2 and DenseNet write it: one conv layer."""
    g = GraphBuilder((1, 3, 7, 7), seed=5)
    x = g.bn(g.conv(g.input_name, 6))
    scale = raw(g, "Unsqueeze", [g.const(g.rng.lognormal(0, 0.3, 6)), int64(g, [1, 2], "axes")])
    x = g.node("Mul", [x, scale], g.shape[x])
    shift = raw(g, "Unsqueeze", [g.const(g.rng.normal(0, 0.3, 6)), int64(g, [1, 2], "axes")])
    x = g.relu(g.node("Add", [shift, x], g.shape[x]))
    imp, diff = float_vs_ort(tmp_path, g, g.model(x))
    assert diff < 1e-5
    (spec,) = imp.translation.specs
    assert spec.type == "conv" and spec.relu and [n[:3] for n in spec.nodes] == ["con", "bat", "mul", "add", "rel"]


@pytest.mark.parametrize("case", ["Add (C,) on a map", "Mul of activations", "Mul after a pool"])
def test_mul_and_add_that_are_not_per_channel_are_one_line(tmp_path, capsys, case):
    g = GraphBuilder((1, 3, 4, 4), seed=6)
    x = g.conv(g.input_name, 4)
    if case == "Add (C,) on a map":  # broadcasts along W in ONNX: not a bias
        out = g.node("Add", [x, g.const(np.ones(4))], g.shape[x])
        fragment = "is not one bias per channel"
    elif case == "Mul of activations":
        out = g.node("Mul", [x, g.conv(g.input_name, 4)], g.shape[x])
        fragment = "a Mul of two activations is not supported"
    else:
        x = g.pool("MaxPool", x, 2, 2)
        out = g.node("Mul", [x, g.const(np.ones((4, 1, 1)))], g.shape[x])
        fragment = "maxpool layer"
    path = save(tmp_path, g.model(out))
    assert main(["import", str(path), "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "node '" in err and fragment in err, err


# -- ReduceMean, Sum, ceil_mode --------------------------------------------------------------------


@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_mean_over_h_and_w_is_the_global_average_pool(tmp_path, opset):
    """keepdims 1 then Flatten, and keepdims 0 straight into a Gemm; axes an attribute (opset 17) or
    an input (opset 18, the new PyTorch exporter's AdaptiveAvgPool2d((1, 1)) and x.mean((2, 3)))."""
    for keepdims in (1, 0):
        g = GraphBuilder((1, 3, 6, 5), seed=7)
        x = g.relu(g.conv(g.input_name, 8))
        shape = (1, 8, 1, 1) if keepdims else (1, 8)
        if opset == 17:
            x = g.node("ReduceMean", [x], shape, axes=[2, 3], keepdims=keepdims)
        else:
            x = g.node("ReduceMean", [x, int64(g, [-2, -1], "axes")], shape, keepdims=keepdims)
        model = g.model(g.gemm(g.flatten(x) if keepdims else x, 3))
        model.opset_import[0].version = opset
        imp, diff = float_vs_ort(tmp_path, g, model, f"m{keepdims}.onnx")
        assert diff < 1e-5, (keepdims, diff)
        assert [layer.kind for layer in imp.network.layers[1:]] == ["conv", "avgpool", "fc"]


def test_reduce_mean_over_channels_is_refused(tmp_path, capsys):
    g = GraphBuilder((1, 3, 4, 4), seed=7)
    x = g.conv(g.input_name, 4)
    path = save(tmp_path, g.model(g.node("ReduceMean", [x], (1, 1, 4, 4), axes=[1])))
    assert main(["import", str(path), "-o", str(tmp_path / "x.toml")]) == 2
    assert "only a mean over H and W" in capsys.readouterr().err


def test_sum_of_two_and_of_three_is_a_chain_of_adds(tmp_path):
    for n in (2, 3):
        g = GraphBuilder((1, 3, 6, 6), seed=8)
        x = g.relu(g.conv(g.input_name, 4))
        parts = [g.conv(x, 4) for _ in range(n - 1)] + [x]
        imp, diff = float_vs_ort(tmp_path, g, g.model(g.relu(g.node("Sum", parts, g.shape[x]))), f"s{n}.onnx")
        assert diff < 1e-5, (n, diff)
        adds = [s for s in imp.translation.specs if s.type == "add"]
        assert len(adds) == n - 1 and adds[-1].relu


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_ceil_mode_is_accepted_when_it_rounds_nothing_up(tmp_path, op):
    """SqueezeNet 1.1's pools: 3 x 3, stride 2, ceil_mode on 111, 55, 27 (here 9): (9 - 3) / 2 is whole."""
    g = GraphBuilder((1, 3, 9, 9), seed=9)
    x = g.pool(op, g.relu(g.conv(g.input_name, 4)), 3, 2, ceil_mode=1)
    imp, diff = float_vs_ort(tmp_path, g, g.model(x))
    assert diff < 1e-5 and imp.network.output_layer.out_h == 4


# -- a final Softmax -----------------------------------------------------------------------------


def softmax_cnn(seed: int, opset: int = 17) -> tuple[GraphBuilder, onnx.ModelProto, onnx.ModelProto]:
    """A small CNN with a symbolic batch, its classifier balanced, with and without a final Softmax."""
    g = GraphBuilder((1, 3, 8, 8), seed)
    x = g.pool("MaxPool", g.relu(g.bn(g.conv(g.input_name, 8))), 2, 2)
    logits = g.gemm(g.flatten(g.relu(g.conv(x, 8))), 10)
    plain = g.model(logits)
    balance_logits(plain, images_for(g, 64, 7))
    g.inits = list(plain.graph.initializer)
    prob = g.node("Softmax", [logits], g.shape[logits], **({"axis": 1} if opset < 13 else {}))
    with_softmax = g.model(prob)
    with_softmax.opset_import[0].version = opset
    return g, dynamic_batch(with_softmax), plain


def test_a_final_softmax_is_dropped_with_a_note(tmp_path, capsys):
    g, model, plain = softmax_cnn(0)
    imp, diff = float_vs_ort(tmp_path, g, model, want_model=plain)
    assert diff < 1e-5  # the network's output is the Softmax's input: the logits
    tr = imp.translation
    assert tr.onnx_output == plain.graph.output[0].name and "Softmax 'softmax" in tr.notes[0]
    assert "# Note: the final Softmax 'softmax" in imp.toml
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.toml")]) == 0
    assert "note: the final Softmax" in capsys.readouterr().out
    meta = json.loads((tmp_path / "m.quant.json").read_text())
    assert meta["onnx_output"] == tr.onnx_output and meta["notes"] == list(tr.notes)


def test_softmax_opset_11_over_a_flattened_axis_1_is_dropped(tmp_path):
    g, model, plain = softmax_cnn(1, opset=11)
    _, diff = float_vs_ort(tmp_path, g, model, want_model=plain)
    assert diff < 1e-5


def test_chip_agreement_of_a_model_with_a_final_softmax_compares_the_logits(tmp_path):
    """A scenario naming the .onnx (symbolic batch, final Softmax): the chip runs batch 8 and
    onnx_agreement compares its logits with onnxruntime's logits, not with the probabilities."""
    from cimsim.runner import run_scenario

    _, model, _ = softmax_cnn(2)
    save(tmp_path, model, "cnn.onnx")
    (tmp_path / "s.toml").write_text('model = "cnn.onnx"\n[run]\nbatch = 8\n[functional]\nenabled = true\n'
                                     'adc_bits = 12\n')
    agree = run_scenario(tmp_path / "s.toml").summary["functional"]["onnx_agreement"]
    assert agree["available"] and agree["images"] == 8
    assert agree["top1"] >= 0.875 and agree["rel_l2"] < 0.10, agree  # 1.0 and 2.8 % when written


def test_an_unsupported_node_the_output_does_not_need_is_not_refused(tmp_path):
    g = GraphBuilder((1, 3, 6, 6), seed=10)
    x = g.relu(g.conv(g.input_name, 4))
    g.node("Tanh", [x], g.shape[x])  # a dead branch
    _, diff = float_vs_ort(tmp_path, g, g.model(x))
    assert diff < 1e-5


def test_shape_arithmetic_that_cannot_fold_is_one_line_naming_the_node(tmp_path, capsys):
    """A Gather of index 7 from a 4-element Shape: one line naming the node, no traceback."""
    g = GraphBuilder((1, 3, 4, 4), seed=11)
    x = g.conv(g.input_name, 4)
    batch = raw(g, "Unsqueeze", [raw(g, "Gather", [raw(g, "Shape", [x]), int64(g, 7)], axis=0), int64(g, [0])])
    shape = raw(g, "Concat", [batch, int64(g, [-1])], axis=0)
    g.nodes.append(helper.make_node("Reshape", [x, shape], ["flat"], name="flat"))
    g.shape["flat"] = (1, 64)
    path = save(tmp_path, g.model("flat"))
    code = main(["import", str(path), "-o", str(tmp_path / "x.toml")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("cimsim: error: "), err
    assert "gather3" in err, err  # shape inference names it (the fold would too)
