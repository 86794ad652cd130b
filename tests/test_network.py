"""Tests of cimsim.network: the ResNet-32 model, a small CNN, and model-file validation."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from cimsim.errors import InputError
from cimsim.network import Layer, Network, load_model

REPO = Path(__file__).resolve().parents[1]
RESNET32 = REPO / "models" / "resnet32_cifar10.toml"


@pytest.fixture(scope="module")
def resnet() -> Network:
    """The ResNet-32 model shipped in models/."""
    return load_model(RESNET32)


# -- ResNet-32 ---------------------------------------------------------------


def test_resnet32_layer_inventory(resnet: Network) -> None:
    convs = [layer.name for layer in resnet.layers if layer.kind == "conv"]
    assert [n for n in convs if n.startswith("conv")] == [f"conv{i}" for i in range(1, 32)]
    assert sorted(n for n in convs if not n.startswith("conv")) == ["rs1", "rs2"]
    adds = [layer.name for layer in resnet.layers if layer.kind == "add"]
    assert adds == [f"add{i}" for i in range(3, 32, 2)]
    assert len(adds) == 15
    assert [layer.name for layer in resnet.layers if layer.kind == "avgpool"] == ["pool"]
    assert [layer.name for layer in resnet.layers if layer.kind == "fc"] == ["fc"]
    assert resnet.input_layer.kind == "input"
    assert resnet.layers[0] is resnet.input_layer
    assert len(resnet.layers) == 1 + 33 + 15 + 2
    assert resnet.name == "resnet32_cifar10"
    assert resnet.bits == 8
    assert resnet.source == str(RESNET32)


@pytest.mark.parametrize(
    ("name", "rows", "cols"),
    [
        ("conv1", 27, 16),
        ("conv2", 144, 16),
        ("conv11", 144, 16),
        ("conv12", 144, 28),  # real C_in 16 (Table 2 says 28)
        ("conv13", 252, 28),
        ("conv21", 252, 28),
        ("conv22", 252, 56),  # real C_in 28 (Table 2 says 56)
        ("conv23", 504, 56),
        ("conv31", 504, 56),
        ("rs1", 16, 28),
        ("rs2", 28, 56),
        ("fc", 56, 10),
        ("add3", 0, 0),
        ("pool", 0, 0),
        ("image", 0, 0),
    ],
)
def test_resnet32_kernel_matrices(resnet: Network, name: str, rows: int, cols: int) -> None:
    layer = resnet.layer(name)
    assert (layer.kernel_rows, layer.kernel_cols) == (rows, cols)


@pytest.mark.parametrize(
    ("names", "shape"),
    [
        (["image"], (32, 32, 3)),
        (["conv1"] + [f"conv{i}" for i in range(2, 12)] + [f"add{i}" for i in range(3, 12, 2)], (32, 32, 16)),
        (["rs1"] + [f"conv{i}" for i in range(12, 22)] + [f"add{i}" for i in range(13, 22, 2)], (16, 16, 28)),
        (["rs2"] + [f"conv{i}" for i in range(22, 32)] + [f"add{i}" for i in range(23, 32, 2)], (8, 8, 56)),
        (["pool"], (1, 1, 56)),
        (["fc"], (1, 1, 10)),
    ],
)
def test_resnet32_output_shapes(resnet: Network, names: list[str], shape: tuple[int, int, int]) -> None:
    for name in names:
        layer = resnet.layer(name)
        assert (layer.out_h, layer.out_w, layer.out_channels) == shape, name


def test_resnet32_strides_and_relu(resnet: Network) -> None:
    strided = {layer.name for layer in resnet.layers if layer.stride != 1}
    assert strided == {"conv12", "conv22", "rs1", "rs2"}
    assert resnet.layer("conv12").padding == 1
    assert resnet.layer("rs1").kernel == 1 and resnet.layer("rs1").padding == 0
    assert resnet.layer("conv2").relu and not resnet.layer("conv3").relu
    assert resnet.layer("add3").relu and not resnet.layer("rs2").relu
    assert resnet.layer("conv12").in_channels == 16
    assert resnet.layer("conv22").in_channels == 28


def test_resnet32_graph(resnet: Network) -> None:
    graph = resnet.graph
    assert isinstance(graph, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(graph)
    assert set(graph.nodes) == {layer.name for layer in resnet.layers}
    assert graph.nodes["conv5"]["layer"] is resnet.layer("conv5")
    assert graph.edges["rs1", "add13"]["role"] == "residual"
    assert graph.edges["conv13", "add13"]["role"] == "main"
    assert graph.edges["conv1", "add3"]["role"] == "residual"
    assert graph.edges["conv3", "add3"]["role"] == "main"
    assert graph.edges["rs2", "add23"]["role"] == "residual"
    assert graph.edges["add29", "add31"]["role"] == "residual"
    assert graph.edges["conv1", "conv2"]["role"] == "main"
    assert resnet.layer("add13").inputs == ("conv13", "rs1")
    assert resnet.consumers("add11") == ["rs1", "conv12"]
    assert resnet.consumers("conv1") == ["conv2", "add3"]
    assert resnet.consumers("fc") == []
    assert resnet.output_layer.name == "fc"
    residual = [(u, v) for u, v, role in graph.edges(data="role") if role == "residual"]
    assert len(residual) == 15


def test_layer_properties() -> None:
    layer = Layer("c", "conv", ("x",), 8, 8, 4, 4, 4, 6, kernel=3, stride=2, padding=1)
    assert layer.kernel_rows == 36
    assert layer.kernel_cols == 6
    assert layer.pixels_out == 16
    assert layer.pixel_bits(8) == 48


def test_unknown_layer_name(resnet: Network) -> None:
    with pytest.raises(KeyError):
        resnet.layer("conv99")


# -- a small CNN ---------------------------------------------------------------

SMALL = """\
name = "tiny"
description = "three layers"
bits = 4

[input]
height = 8
width = 6
channels = 3

[[layers]]
name = "c1"
type = "conv"
input = "input"
out_channels = 5
kernel = 3
stride = 2
relu = true

[[layers]]
name = "p"
type = "avgpool"
inputs = ["c1"]

[[layers]]
name = "f"
type = "fc"
input = "p"
out_features = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as a model file in ``tmp_path``."""
    path = tmp_path / "model.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_small_cnn(tmp_path: Path) -> None:
    net = load_model(write(tmp_path, SMALL))
    assert [layer.name for layer in net.layers] == ["input", "c1", "p", "f"]
    assert (net.name, net.description, net.bits) == ("tiny", "three layers", 4)
    c1 = net.layer("c1")
    assert (c1.out_h, c1.out_w, c1.out_channels) == (3, 2, 5)  # (8-3)//2+1, (6-3)//2+1
    assert (c1.stride, c1.padding, c1.relu) == (2, 0, True)
    assert c1.kernel_rows == 27
    assert net.layer("p").in_channels == 5
    assert (net.layer("f").kernel_rows, net.layer("f").kernel_cols) == (5, 2)
    assert net.layer("f").relu is False
    assert net.output_layer.name == "f"
    assert net.input_layer.name == "input"
    assert net.layer("c1").pixel_bits(net.bits) == 20


# -- validation ------------------------------------------------------------------

HEAD = """\
name = "bad"
[input]
height = 8
width = 8
channels = 3
"""


def conv(name: str, src: str = "input", extra: str = "") -> str:
    """A valid 3x3 padded conv table, plus ``extra`` lines."""
    return (
        f'[[layers]]\nname = "{name}"\ntype = "conv"\ninput = "{src}"\n'
        f"out_channels = 4\nkernel = 3\npadding = 1\n{extra}\n"
    )


CASES: list[tuple[str, str, list[str]]] = [
    ("malformed TOML", HEAD + "[[layers]\nname = 1", ["malformed TOML"]),
    ("unknown top-level key", HEAD.replace('name = "bad"', 'name = "bad"\nversion = 2') + conv("a"),
     ["'version'", "unknown key"]),
    ("unknown input key", HEAD + "depth = 2\n" + conv("a"), ["[input]", "'depth'", "unknown key"]),
    ("kernel on add", HEAD + conv("a") + conv("b", "a")
     + '[[layers]]\nname = "s"\ntype = "add"\ninputs = ["b", "a"]\nkernel = 3\n',
     ["layers[2]", "'s'", "'kernel'", "unknown key", "'add'"]),
    ("out_features on conv", HEAD + conv("a", extra="out_features = 3"), ["'out_features'", "unknown key"]),
    ("relu on avgpool", HEAD + conv("a") + '[[layers]]\nname = "p"\ntype = "avgpool"\ninput = "a"\nrelu = true\n',
     ["'relu'", "unknown key"]),
    ("missing name", HEAD.replace('name = "bad"\n', "") + conv("a"), ["'name'", "missing"]),
    ("missing input table", 'name = "bad"\n' + conv("a"), ["'input'", "missing"]),
    ("missing height", HEAD.replace("height = 8\n", "") + conv("a"), ["[input]", "'height'", "missing"]),
    ("missing layers", HEAD, ["'layers'", "missing"]),
    ("empty layers", HEAD.replace('name = "bad"', 'name = "bad"\nlayers = []'), ["'layers'", "no layers"]),
    ("missing layer name", HEAD + '[[layers]]\ntype = "conv"\ninput = "input"\nout_channels = 4\nkernel = 1\n',
     ["layers[0]", "'name'", "missing"]),
    ("missing type", HEAD + '[[layers]]\nname = "a"\ninput = "input"\n', ["'a'", "'type'", "missing"]),
    ("missing kernel", HEAD + '[[layers]]\nname = "a"\ntype = "conv"\ninput = "input"\nout_channels = 4\n',
     ["'a'", "'kernel'", "missing"]),
    ("missing out_features", HEAD + conv("a") + '[[layers]]\nname = "p"\ntype = "avgpool"\ninput = "a"\n'
     + '[[layers]]\nname = "f"\ntype = "fc"\ninput = "p"\n', ["'f'", "'out_features'", "missing"]),
    ("missing input", HEAD + '[[layers]]\nname = "a"\ntype = "avgpool"\n', ["'a'", "'input'", "missing"]),
    ("both input and inputs", HEAD + '[[layers]]\nname = "a"\ntype = "avgpool"\ninput = "input"\n'
     'inputs = ["input"]\n', ["'a'", "'inputs'", "exactly one"]),
    ("zero kernel", HEAD + conv("a").replace("kernel = 3", "kernel = 0"), ["'kernel'", "got 0", "positive"]),
    ("negative stride", HEAD + conv("a", extra="stride = -1"), ["'stride'", "got -1", "positive"]),
    ("negative padding", HEAD + conv("a").replace("padding = 1", "padding = -1"), ["'padding'", "got -1"]),
    ("bool is not int", HEAD + conv("a").replace("out_channels = 4", "out_channels = true"),
     ["'out_channels'", "got true", "integer"]),
    ("float is not int", HEAD.replace("height = 8", "height = 8.0") + conv("a"),
     ["[input]", "'height'", "got 8.0", "integer"]),
    ("string bits", HEAD.replace('name = "bad"', 'name = "bad"\nbits = "8"') + conv("a"), ["'bits'", "'8'"]),
    ("zero channels", HEAD.replace("channels = 3", "channels = 0") + conv("a"), ["'channels'", "got 0"]),
    ("relu not bool", HEAD + conv("a", extra="relu = 1"), ["'relu'", "got 1", "true or false"]),
    ("empty name", HEAD + conv(""), ["layers[0]", "'name'", "non-empty"]),
    ("duplicate name", HEAD + conv("a") + conv("a", "a"), ["layers[1]", "'a'", "duplicate"]),
    ("name clashes with input", HEAD + conv("input"), ["layers[0]", "'input'", "duplicate", "[input]"]),
    ("forward reference", HEAD + conv("a", "b") + conv("b", "input"),
     ["layers[0]", "'a'", "'b'", "not defined before this layer"]),
    ("self reference", HEAD + conv("a", "a"), ["'a'", "not defined before this layer"]),
    ("undefined input", HEAD + conv("a", "nope"), ["'nope'", "not defined before this layer"]),
    ("unknown type", HEAD + '[[layers]]\nname = "a"\ntype = "lstm"\ninput = "input"\n',
     ["'a'", "'type'", "'lstm'", "conv, add, avgpool, fc, maxpool, flatten, concat"]),
    ("add with one input", HEAD + conv("a") + '[[layers]]\nname = "s"\ntype = "add"\ninput = "a"\n',
     ["'s'", "'input'", "an add takes exactly 2"]),
    ("add with three inputs", HEAD + conv("a") + conv("b", "a")
     + '[[layers]]\nname = "s"\ntype = "add"\ninputs = ["a", "b", "a"]\n', ["'s'", "'inputs'", "exactly 2"]),
    ("add of one layer twice", HEAD + conv("a") + '[[layers]]\nname = "s"\ntype = "add"\ninputs = ["a", "a"]\n',
     ["'s'", "different"]),
    ("conv with two inputs", HEAD + conv("a") + '[[layers]]\nname = "b"\ntype = "conv"\ninputs = ["a", "input"]\n'
     "out_channels = 4\nkernel = 1\n", ["'b'", "'inputs'", "exactly 1"]),
    ("avgpool with no inputs", HEAD + '[[layers]]\nname = "p"\ntype = "avgpool"\ninputs = []\n',
     ["'p'", "'inputs'", "exactly 1"]),
    ("fc with two inputs", HEAD + '[[layers]]\nname = "p"\ntype = "avgpool"\ninput = "input"\n'
     '[[layers]]\nname = "q"\ntype = "avgpool"\ninput = "input"\n'
     '[[layers]]\nname = "f"\ntype = "fc"\ninputs = ["p", "q"]\nout_features = 2\n', ["'f'", "exactly 1"]),
    ("padding >= kernel", HEAD + conv("a").replace("padding = 1", "padding = 3"),
     ["'padding'", "got 3", "less than kernel (3)"]),
    ("kernel larger than input", HEAD + conv("a").replace("kernel = 3", "kernel = 11").replace(
        "padding = 1", "padding = 1"), ["'kernel'", "got 11", "10x10"]),
    ("add shape mismatch", HEAD + conv("a") + conv("b", "a", "stride = 2")
     + '[[layers]]\nname = "s"\ntype = "add"\ninputs = ["b", "a"]\n',
     ["'s'", "'b'", "'a'", "4x4x4", "8x8x4", "identical"]),
    ("fc on a feature map", HEAD + conv("a") + '[[layers]]\nname = "f"\ntype = "fc"\ninput = "a"\nout_features = 2\n',
     ["'f'", "'a'", "8x8x4", "1x1"]),
    ("two output layers", HEAD + conv("a") + conv("b") + conv("c", "a"),
     ["'layers'", "2 output layers", "'b'", "'c'"]),
    ("layers not tables", HEAD.replace('name = "bad"', 'name = "bad"\nlayers = [1, 2]'),
     ["'layers'", "array of tables"]),
]


@pytest.mark.parametrize(("text", "fragments"), [(t, f) for _, t, f in CASES], ids=[c[0] for c in CASES])
def test_validation_errors(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ":")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(InputError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "not found" in message


def test_malformed_toml_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[input\nheight = 3\n')
    with pytest.raises(InputError) as info:
        load_model(path)
    assert "\n" not in str(info.value)
    assert "line" in str(info.value)
