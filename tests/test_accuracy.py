"""Top-1 accuracy on labelled images (issue 16): the digits CNN on the simulated chip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cimsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "scenarios" / "digits_cnn.toml"


def _summary(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["run", *args, "--json", "--no-trace"]) == 0
    return json.loads(capsys.readouterr().out)


def test_wide_adcs_chip_accuracy_equals_int8_reference(capsys: pytest.CaptureFixture[str]) -> None:
    f = _summary(capsys, str(DIGITS), "--batch", "60", "--set", "functional.adc_bits=9")["functional"]
    assert f["reference_match"]
    acc = f["accuracy"]
    assert acc["images"] == 60
    assert acc["chip"] == acc["int8_reference"]
    assert acc["float"] is not None and 0.5 < acc["float"] <= 1.0  # a trained model, far above chance (0.1)


def test_narrow_adcs_move_the_chip_off_the_reference_not_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    f = _summary(capsys, str(DIGITS), "--batch", "60", "--set", "functional.adc_bits=5")["functional"]
    assert not f["reference_match"]
    assert f["accuracy"]["int8_reference"] == _summary(capsys, str(DIGITS), "--batch", "60")["functional"][
        "accuracy"]["int8_reference"]  # the reference does not depend on the chip's ADCs


def _scenario(tmp_path: Path, **functional: str) -> Path:
    keys = "\n".join(f'{k} = "{v}"' for k, v in functional.items())
    path = tmp_path / "s.toml"
    path.write_text(f'name = "t"\nmodel = "{ROOT / "models" / "digits_cnn.toml"}"\n'
                    f'[functional]\nenabled = true\nadc_bits = 9\nweights = "{ROOT / "models" / "digits_cnn.npz"}"\n'
                    f'{keys}\n[run]\nbatch = 8\n')
    return path


def test_labels_file_relative_to_the_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with np.load(ROOT / "models" / "digits_test.npz") as data:
        np.savez(tmp_path / "images.npz", images=data["images"][:8])  # no labels inside
        np.savez(tmp_path / "labels.npz", labels=(data["labels"][:8] + 1) % 10)  # every label wrong
    plain = _summary(capsys, str(_scenario(tmp_path, images="images.npz")))["functional"]
    assert "accuracy" not in plain
    acc = _summary(capsys, str(_scenario(tmp_path, images="images.npz", labels="labels.npz")))["functional"]["accuracy"]
    assert acc["images"] == 8 and acc["float"] is None
    ref_ok = _summary(capsys, str(_scenario(tmp_path, images="images.npz",
                                            labels=str(ROOT / "models" / "digits_test.npz"))))["functional"]["accuracy"]
    assert acc["chip"] < ref_ok["chip"]  # the same outputs scored against shifted labels
    assert acc["chip"] == acc["int8_reference"]


@pytest.mark.parametrize("arrays", [{"other": np.zeros(8, np.int64)}, {"labels": np.zeros(3, np.int64)},
                                    {"labels": np.zeros(8, np.float32)}, {"labels": -np.ones(8, np.int64)}])
def test_bad_labels_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        arrays: dict[str, np.ndarray]) -> None:
    np.savez(tmp_path / "labels.npz", **arrays)
    assert main(["run", str(_scenario(tmp_path, labels="labels.npz")), "--no-trace"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cimsim: error:") and "labels.npz" in err and "\n" not in err
