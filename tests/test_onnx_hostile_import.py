"""The ONNX importer against hostile or careless inputs (issue 22): external data read from the
model's folder and bounds-checked, names that cannot inject TOML keys, non-finite attributes,
the size cap, and `cimsim import`'s three outputs written as one set."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("tomli_w")

from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import GraphBuilder

import cimsim.io_safety as io_safety
import cimsim.onnx_import.proto as proto
from cimsim.cli import main
from cimsim.functional.onnx_agreement import OnnxAgreement, OnnxSource
from cimsim.network import load_model
from cimsim.onnx_import import import_onnx

REPO = Path(__file__).resolve().parents[1]


def small(seed: int = 7) -> tuple[GraphBuilder, str]:
    g = GraphBuilder((1, 3, 8, 8), seed=seed)
    return g, g.gemm(g.flatten(g.gap(g.relu(g.conv(g.input_name, 8)))), 4)


def one_line(capsys, argv: list[str], code: int = 2) -> str:
    """Run the CLI, assert exit ``code`` with one 'cimsim: error:' line and no warning; the line."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = main(argv)
    err = capsys.readouterr().err
    assert got == code and len(err.splitlines()) == 1 and err.startswith("cimsim: error: "), (got, err)
    return err


def save_external(model, folder: Path, name: str = "m.onnx", data: str = "m.onnx.data") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                    size_threshold=0)
    return path


def weights_of(imported) -> dict[str, np.ndarray]:
    return {n: p.weights for n, p in imported.params.items()}


# -- external data -------------------------------------------------------------------------


def test_external_data_imports_from_any_working_directory_and_ignores_a_decoy(tmp_path, monkeypatch):
    g, out = small()
    inline = tmp_path / "inline.onnx"
    onnx.save(g.model(out), str(inline))
    path = save_external(g.model(out), tmp_path / "model")
    want = weights_of(import_onnx(inline))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    size = (tmp_path / "model" / "m.onnx.data").stat().st_size
    (elsewhere / "m.onnx.data").write_bytes(np.full(size, 0x7F, np.uint8).tobytes())  # a same-named decoy
    for cwd in (tmp_path / "model", elsewhere, REPO):
        monkeypatch.chdir(cwd)
        for name in ("m.onnx", str(path)) if cwd == tmp_path / "model" else (str(path), os.path.relpath(path)):
            got = weights_of(import_onnx(name))
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])


def _external_case(tmp_path: Path, label: str) -> Path:
    """A model whose first external tensor is broken as ``label`` says."""
    g, out = small()
    folder = tmp_path / label.replace(" ", "_")
    path = save_external(g.model(out), folder)
    model = onnx.load(str(path), load_external_data=False)
    tensor = model.graph.initializer[0]
    entries = {e.key: e for e in tensor.external_data}
    size = (folder / "m.onnx.data").stat().st_size
    if label == "offset past the end":
        entries["offset"].value = str(size + 64)
    elif label == "length too long":
        entries["length"].value = str(int(entries["length"].value) + 4)
    elif label == "length too short":
        entries["length"].value = str(int(entries["length"].value) - 4)
    elif label == "length past the end":
        entries["offset"].value = str(size - 4)
    elif label == "negative offset":
        entries["offset"].value = "-4"
    elif label == "offset not a number":
        entries["offset"].value = "4e3"
    elif label == "absolute location":
        entries["location"].value = str(folder / "m.onnx.data")
    elif label == "dotdot location":
        (tmp_path / "outside.data").write_bytes((folder / "m.onnx.data").read_bytes())
        entries["location"].value = "../outside.data"
    elif label == "symlink out":
        (tmp_path / "outside.data").write_bytes((folder / "m.onnx.data").read_bytes())
        (folder / "link.data").symlink_to(tmp_path / "outside.data")
        entries["location"].value = "link.data"
    elif label == "missing file":
        entries["location"].value = "absent.data"
    elif label == "a directory":
        (folder / "dir.data").mkdir()
        entries["location"].value = "dir.data"
    elif label == "string tensor":
        tensor.data_type = TensorProto.STRING
    else:
        raise AssertionError(label)
    onnx.save(model, str(path))  # the external entries as edited; the data file is left as it is
    return path


EXTERNAL_CASES = ("offset past the end", "length too long", "length too short", "length past the end",
                  "negative offset", "offset not a number", "absolute location", "dotdot location", "symlink out",
                  "missing file", "a directory", "string tensor")


@pytest.mark.parametrize("label", EXTERNAL_CASES)
def test_bad_external_data_is_one_line_naming_the_tensor(tmp_path, capsys, label):
    path = _external_case(tmp_path, label)
    err = one_line(capsys, ["import", str(path), "-o", str(tmp_path / "o.toml")])
    assert "tensor 'w0'" in err, err
    assert not list(tmp_path.glob("o.*"))


def test_the_size_cap_refuses_huge_and_sparse_files(tmp_path, capsys, monkeypatch):
    sparse = tmp_path / "huge.onnx"
    with open(sparse, "wb") as f:
        f.truncate(3 * 2**30 + 512)  # 3 GiB of nothing: refused from its size, never read
    err = one_line(capsys, ["import", str(sparse), "-o", str(tmp_path / "o.toml")])
    assert "limit" in err
    g, out = small()
    path = tmp_path / "m.onnx"
    onnx.save(g.model(out), str(path))
    monkeypatch.setattr(proto, "MAX_ONNX_BYTES", path.stat().st_size - 1)
    assert "limit" in one_line(capsys, ["import", str(path), "-o", str(tmp_path / "o.toml")])
    monkeypatch.setattr(proto, "MAX_ONNX_BYTES", 2**31 - 1)
    ext = save_external(g.model(out), tmp_path / "ext")
    monkeypatch.setattr(proto, "MAX_EXTERNAL_BYTES", 100)
    assert "external data of more than 100 bytes" in one_line(capsys, ["import", str(ext), "-o",
                                                                         str(tmp_path / "o.toml")])


# -- names and types -----------------------------------------------------------------------


def test_a_node_name_cannot_inject_toml_keys(tmp_path, capsys):
    g = GraphBuilder((1, 3, 8, 8), seed=3)
    y = g.gemm(g.flatten(g.gap(g.conv(g.input_name, 8))), 4)
    plain = tmp_path / "plain.onnx"
    onnx.save(g.model(y), str(plain))
    g.nodes[0].name = "x\nrelu = true"
    g.nodes[-1].name = "fc\n[[layers]]\nname = 'evil'\r\u2028\x7f\"'"
    path = tmp_path / "m.onnx"
    onnx.save(g.model(y), str(path))
    out = tmp_path / "m.toml"
    assert main(["import", str(path), "-o", str(out)]) == 0
    capsys.readouterr()
    tomllib.loads(out.read_text())
    net = load_model(out)

    def shape(n):
        return [(y.kind, y.relu, y.inputs and len(y.inputs), y.out_h, y.out_w, y.out_channels) for y in n.layers]
    assert shape(net) == shape(import_onnx(plain).network)  # the layers are the graph's: no injected relu
    conv = next(layer for layer in net.layers if layer.kind.value == "conv")
    assert conv.relu is False and conv.name == "x_relu_true"  # sanitised, visibly
    assert "evil" not in [layer.name for layer in net.layers]
    text = out.read_text()
    assert "# ONNX: x\\nrelu = true" in text  # the raw name survives, escaped, in the comment
    assert all(line.isascii() for line in text.splitlines())


def test_a_huge_node_name_and_a_string_weight_are_one_line_errors(tmp_path, capsys):
    g, out = small()
    model = g.model(out)
    model.graph.node[0].name = "n" * 1_000_000
    huge = tmp_path / "huge.onnx"
    onnx.save(model, str(huge))
    assert "1,000,000 characters" in one_line(capsys, ["import", str(huge), "-o", str(tmp_path / "o.toml")])
    g, out = small()
    model = g.model(out)
    model.graph.initializer[0].CopyFrom(helper.make_tensor("w0", TensorProto.STRING, [8, 3, 3, 3],
                                                           [b"x"] * (8 * 27)))
    strings = tmp_path / "strings.onnx"
    onnx.save(model, str(strings))
    one_line(capsys, ["import", str(strings), "-o", str(tmp_path / "o.toml")])


# -- attributes that feed arithmetic ---------------------------------------------------------


def _with_attr(op: str, name: str, value: float):
    g = GraphBuilder((1, 3, 8, 8), seed=5)
    x = g.bn(g.conv(g.input_name, 8))
    out = g.gemm(g.flatten(g.gap(g.relu(x))), 4)
    model = g.model(out)
    node = next(n for n in model.graph.node if n.op_type == op)
    for attr in node.attribute:
        if attr.name == name:
            attr.f = value
            break
    else:
        node.attribute.append(helper.make_attribute(name, value))
    return model


def _negative_variance():
    g = GraphBuilder((1, 3, 8, 8), seed=5)
    out = g.gemm(g.flatten(g.gap(g.relu(g.bn(g.conv(g.input_name, 8))))), 4)
    model = g.model(out)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    for i, init in enumerate(model.graph.initializer):
        if init.name == bn.input[4]:
            var = numpy_helper.to_array(init).copy()
            var[2] = -0.5
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(var, init.name))
    return model


def _huge_scale():
    g = GraphBuilder((1, 3, 8, 8), seed=5)
    out = g.gemm(g.flatten(g.gap(g.relu(g.bn(g.conv(g.input_name, 8))))), 4)
    model = g.model(out)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    for i, init in enumerate(model.graph.initializer):
        if init.name in (bn.input[1], bn.input[4]):  # scale 3e38 over sqrt(0 + epsilon): past float32
            value = np.full(8, 3e38 if init.name == bn.input[1] else 0.0, np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, init.name))
    return model


ATTRIBUTE_CASES = {
    "Gemm alpha NaN": lambda: _with_attr("Gemm", "alpha", float("nan")),
    "Gemm beta inf": lambda: _with_attr("Gemm", "beta", float("inf")),
    "Gemm alpha huge": lambda: _with_attr("Gemm", "alpha", 3e38),
    "BN epsilon NaN": lambda: _with_attr("BatchNormalization", "epsilon", float("nan")),
    "BN epsilon negative": lambda: _with_attr("BatchNormalization", "epsilon", -1.0),
    "BN negative variance": _negative_variance,
    "BN overflowing scale": _huge_scale,
}


@pytest.mark.parametrize("label", ATTRIBUTE_CASES)
def test_non_finite_or_out_of_range_attributes_are_one_line_errors(tmp_path, capsys, label):
    path = tmp_path / "m.onnx"
    onnx.save(ATTRIBUTE_CASES[label](), str(path))
    err = one_line(capsys, ["import", str(path), "-o", str(tmp_path / "o.toml")])
    assert "node '" in err or "layer '" in err, err
    (tmp_path / "s.toml").write_text('model = "m.onnx"\n')
    one_line(capsys, ["run", str(tmp_path / "s.toml"), "--no-trace"])


def test_agreement_never_scores_non_finite_outputs(tmp_path):
    pytest.importorskip("onnxruntime")
    g, out = small()
    path = tmp_path / "m.onnx"
    onnx.save(g.model(out), str(path))
    imp = import_onnx(path)
    tr = imp.translation
    rng = np.random.default_rng(0)
    pixels = rng.integers(-40, 40, size=(3, 8, 8, 3)).astype(np.int8)
    outputs = rng.integers(-100, 100, size=(3, 1, 1, 4)).astype(np.int8)
    for scale in (float("nan"), float("inf")):
        agree = OnnxAgreement(OnnxSource(path, imp.params, imp.input_scale, scale, tr.input_shape,
                                         tr.output_shape))
        for i in range(3):
            agree.add(i, pixels[i], outputs[i])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = agree.summary()
        assert got["top1"] == 0.0 and got["rel_l2"] is None and got["non_finite_images"] == 3, got
        json.dumps(got, allow_nan=False)


# -- the three outputs as one set ---------------------------------------------------------------


def _earlier_set(tmp_path: Path, capsys) -> tuple[Path, Path, dict[Path, bytes]]:
    g, out = small(seed=1)
    first = tmp_path / "first.onnx"
    onnx.save(g.model(out), str(first))
    dest = tmp_path / "net.toml"
    assert main(["import", str(first), "-o", str(dest)]) == 0
    capsys.readouterr()
    g, out = small(seed=2)
    second = tmp_path / "second.onnx"
    onnx.save(g.model(out), str(second))
    files = [dest, dest.with_suffix(".npz"), dest.with_suffix(".quant.json")]
    return second, dest, {f: f.read_bytes() for f in files}


def _intact(tmp_path: Path, before: dict[Path, bytes]) -> None:
    assert {f: f.read_bytes() for f in before} == before
    assert not list(tmp_path.glob("*.partial"))


def test_a_write_failure_on_the_second_file_leaves_the_earlier_set(tmp_path, capsys, monkeypatch):
    second, dest, before = _earlier_set(tmp_path, capsys)
    real = io_safety.GuardedFile.write
    seen: list[int] = []

    def write(self, data):
        if id(self) not in seen:
            seen.append(id(self))
        if len(seen) > 1 and self.error is None:  # the disk fills up in the .npz
            self.error = OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(io_safety.GuardedFile, "write", write)
    err = one_line(capsys, ["import", str(second), "-o", str(dest)], code=4)
    assert "No space left on device" in err and "net.npz" in err
    _intact(tmp_path, before)


def test_a_file_size_limit_leaves_the_earlier_set_and_exits_4(tmp_path, capsys):
    second, dest, before = _earlier_set(tmp_path, capsys)
    limit = max(len(before[dest]), 2048) + 256  # the .toml fits, the .npz does not
    assert len(before[dest.with_suffix(".npz")]) > limit
    script = ("import resource, sys\n"
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
              "from cimsim.cli import main\n"
              f"sys.exit(main(['import', {str(second)!r}, '-o', {str(dest)!r}]))\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("cimsim: error: "), proc.stderr
    _intact(tmp_path, before)


def test_an_output_that_is_an_input_is_refused(tmp_path, capsys):
    second, _dest, before = _earlier_set(tmp_path, capsys)
    cal = tmp_path / "cal.npz"
    np.savez(cal, images=np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32))
    x = tmp_path / "X.toml"
    np.savez(tmp_path / "X.npz", images=np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32))
    keep = (tmp_path / "X.npz").read_bytes()
    err = one_line(capsys, ["import", str(second), "-o", str(x), "--calibration", str(tmp_path / "X.npz")])
    assert "is an input of this command" in err
    assert (tmp_path / "X.npz").read_bytes() == keep and not x.exists()
    (tmp_path / "Y.npz").symlink_to(cal)  # the .npz output, through a symlink, is the calibration input
    one_line(capsys, ["import", str(second), "-o", str(tmp_path / "Y.toml"), "--calibration", str(cal)])
    ext = save_external(small()[0].model(small()[1]), tmp_path / "ext", data="w.npz")  # external data named .npz
    one_line(capsys, ["import", str(ext), "-o", str(tmp_path / "ext" / "w.toml")])
    assert (tmp_path / "ext" / "w.npz").stat().st_size > 0 and not (tmp_path / "ext" / "w.toml").exists()
    _intact(tmp_path, before)
