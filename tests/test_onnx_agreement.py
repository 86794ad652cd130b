"""A model imported from ONNX on the simulated chip with real values: the summary reports its
agreement with onnxruntime's float outputs on the images the chip ran (issue 12)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_graphs import balance_logits, run_ort, small_cnn
from test_onnx import images_for, save

from cimsim.cli import main
from cimsim.functional.images import ImageStream
from cimsim.network import load_model
from cimsim.onnx_import import import_onnx
from cimsim.runner import run_scenario


def _scenario(tmp_path: Path, batch: int, extra: str = "") -> Path:
    g, model = small_cnn(0)
    balance_logits(model, images_for(g, 64, 7))  # no class wins every image (see onnx_graphs)
    save(tmp_path, model, "cnn.onnx")
    path = tmp_path / "s.toml"
    path.write_text(f'model = "cnn.onnx"\n[run]\nbatch = {batch}\n[functional]\nenabled = true\n{extra}')
    return path


def test_onnx_model_reports_agreement_with_onnxruntime(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """small_cnn (every op kind: residual add, maxpool, depthwise with ReLU6, grouped 1x1, concat,
    non-square conv, local avgpool, flatten + Gemm) on 100 images: the chip equals the int8 reference,
    and its dequantised logits agree with onnxruntime's (top-1, relative L2) as the summary says."""
    path = _scenario(tmp_path, 100, "adc_bits = 12\n")
    report = run_scenario(path)
    f = json.loads(json.dumps(report.summary))["functional"]  # as --json prints it
    assert f["reference_match"] and f["images_checked"] == 100
    agree = f["onnx_agreement"]
    assert agree["available"] and agree["images"] == 100
    with capsys.disabled():
        print(f"\nsimulated chip vs onnxruntime, 100 images: top-1 {100 * agree['top1']:.1f} %, "
              f"relative L2 {100 * agree['rel_l2']:.2f} %")
    assert agree["top1"] >= 0.95 and agree["rel_l2"] < 0.10
    # the same numbers, computed here from the images the chip ran and onnxruntime's own outputs
    imp = import_onnx(tmp_path / "cnn.onnx")
    net = load_model(tmp_path / "cnn.onnx")
    pixels = np.stack([ImageStream(net, 100, 0, None)[i] for i in range(100)])
    want = run_ort(onnx.load(str(tmp_path / "cnn.onnx")), pixels.transpose(0, 3, 1, 2) * imp.input_scale)
    from cimsim.functional.reference import reference_forward

    got = imp.dequantise_output(reference_forward(net, imp.params, pixels)[net.output_layer.name]).reshape(want.shape)
    assert agree["top1"] == round(float((got.argmax(1) == want.argmax(1)).mean()), 4)
    assert agree["rel_l2"] == round(float(np.linalg.norm(got - want) / np.linalg.norm(want)), 4)
    line = f"onnxruntime agreement: top-1 {100 * agree['top1']:.1f} %, relative L2 of the logits"
    assert line in report.table()  # the terminal report


def test_agreement_without_onnxruntime_is_one_field_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = _scenario(tmp_path, 1)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    assert main(["run", str(path), "--json"]) == 0
    f = json.loads(capsys.readouterr().out)["functional"]
    assert f["images_checked"] == 1
    assert f["onnx_agreement"]["available"] is False and "not installed" in f["onnx_agreement"]["reason"]


def test_a_model_toml_has_no_agreement_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text('name = "m"\n[input]\nheight = 2\nwidth = 2\nchannels = 1\n[[layers]]\n'
                                     'name = "c"\ntype = "conv"\ninput = "input"\nout_channels = 2\nkernel = 1\n')
    (tmp_path / "s.toml").write_text('model = "m.toml"\n[functional]\nenabled = true\n')
    assert main(["run", str(tmp_path / "s.toml"), "--json"]) == 0
    assert "onnx_agreement" not in json.loads(capsys.readouterr().out)["functional"]
