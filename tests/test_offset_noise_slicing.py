"""ISAAC's offset weight encoding and noise-aware Adaptive Weight Slicing (RAELLA 7.1-7.3, Fig. 7-2)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cimsim.cli import main
from cimsim.functional.centers import OFFSET_WEIGHT_SLICES, fixed_weight_slices
from cimsim.functional.chip_math import LayerMath, all_positions, windows
from cimsim.functional.crossbar import Crossbar, CrossbarConfig
from cimsim.functional.crossbar_reference import mvm_explicit
from cimsim.functional.reference import reference_forward, requantise
from cimsim.functional.slicing import SearchNoise, all_slicings, choose_slicing, slicing_error
from cimsim.functional.weights import load_params
from cimsim.network.model import load_model

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "scenarios" / "digits_cnn.toml"


@pytest.mark.parametrize("policy", ["off", "always", "on_failure"])
@pytest.mark.parametrize("signed", [True, False])
def test_offset_encoding_bit_exact_without_noise(policy: str, signed: bool) -> None:
    """Unsigned w + 128 on the devices (every slice >= 0, centers -128), ISAAC's four 2b slices:
    with a wide ADC the product is exact, and `mvm` equals the literal `mvm_explicit`, also with
    RAELLA's 7-bit ADC where conversions saturate."""
    rng = np.random.default_rng(11)
    w = rng.integers(-128, 128, size=(120, 20)).astype(np.int8)
    w[0, 0], w[1, 0] = -128, 127
    x = (rng.integers(-128, 128, size=(50, 120)) if signed else rng.integers(0, 256, size=(50, 120)))
    for adc_bits in (16, 7):
        cfg = CrossbarConfig(rows=128, cols=32, adc_bits=adc_bits, policy=policy, weight_encoding="offset",
                             weight_slice_bits=OFFSET_WEIGHT_SLICES, input_signed=signed)
        xbar = Crossbar(w, cfg)
        assert (xbar.centers == -128).all() and xbar.offset_slices.min() >= 0 and xbar.offset_slices.max() == 3
        fast, slow = xbar.mvm(x), mvm_explicit(xbar, x)
        assert np.array_equal(fast.values, slow.values) and fast.counters() == slow.counters()
        if adc_bits == 16:
            assert fast.clipped_converts == 0
            assert np.array_equal(fast.values, x.astype(np.int64) @ w.astype(np.int64))
        else:
            assert fast.clipped_converts > 0  # dense high-order bits: 7 bits are too few for 128 rows


def test_offset_scenario_matches_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    """The digits CNN with the offset encoding (fixed slicing 2b x 4), noise off, 9-bit ADCs: the
    chip's outputs are the int8 reference's, bit for bit."""
    assert fixed_weight_slices("offset") == (2, 2, 2, 2) and fixed_weight_slices("center_offset") == (4, 2, 2)
    args = ["run", str(DIGITS), "--batch", "40", "--json", "--no-trace", "--set", "functional.weight_encoding=offset"]
    assert main(args) == 0
    f = json.loads(capsys.readouterr().out)["functional"]
    assert f["reference_match"] and f["mismatching_values"] == 0 and f["saturations_accepted"] == 0
    assert f["accuracy"]["chip"] == f["accuracy"]["int8_reference"]


@pytest.fixture(scope="module")
def digits_conv2():
    """The digits CNN's conv2 (72 rows) and its exact input windows of ten test images."""
    net = load_model(ROOT / "models" / "digits_cnn.toml")
    params = load_params(ROOT / "models" / "digits_cnn.npz", net)
    with np.load(ROOT / "models" / "digits_test.npz") as data:
        images = data["images"][:10]
    ref = reference_forward(net, params, images)
    layer = net.layer("conv2")
    win = np.concatenate([windows(x, all_positions(layer), layer.kernel_hw, layer.stride_hw, layer.padding_hw)
                          for x in ref[layer.inputs[0]]])
    return layer, params["conv2"], win


@pytest.mark.parametrize("sigma", [0.02, 0.06])
def test_noise_aware_slicing_within_budget_and_deterministic(digits_conv2, sigma: float) -> None:
    """Under column noise E the chosen slicing's error, recomputed on the same seeded noisy crossbars,
    is below the budget; every slicing with fewer slices is not; the search gives the same choice
    twice, and a different seed gives a different (equally valid) realisation."""
    layer, p, win = digits_conv2
    cfg = CrossbarConfig(rows=256, cols=256, adc_bits=7, policy="off")
    noise, budget = SearchNoise(sigma, seed=0, layer_index=2), 0.09
    choice = choose_slicing(layer, p, win, cfg, budget, 1, 256, noise=noise)
    assert choice.within_budget and choice.error < budget
    assert choose_slicing(layer, p, win, cfg, budget, 1, 256, noise=noise) == choice
    matrix = LayerMath(layer, p, cfg, 1, 256).matrix
    exact = requantise(win.astype(np.int64) @ matrix.astype(np.int64), p, layer.relu).astype(np.int32)

    def err(s: tuple[int, ...], n: SearchNoise) -> float:
        return slicing_error(layer, p, win, exact, replace(cfg, weight_slice_bits=s), 1, 256, noise=n)

    assert err(choice.slicing, noise) == pytest.approx(choice.error)
    assert all(err(s, noise) >= budget for s in all_slicings() if len(s) < len(choice.slicing))
    assert err(choice.slicing, SearchNoise(sigma, seed=1, layer_index=2)) != choice.error  # other draws


def test_noise_changes_the_chosen_slicing(digits_conv2) -> None:
    """Noise-aware: the same layer, budget and images give a different slicing at E = 12 % than
    without noise (each the search's own result), and the noiseless search is the plain one."""
    layer, p, win = digits_conv2
    cfg = CrossbarConfig(rows=256, cols=256, adc_bits=7, policy="off")
    quiet = choose_slicing(layer, p, win, cfg, 0.09, 1, 256)
    assert choose_slicing(layer, p, win, cfg, 0.09, 1, 256, noise=SearchNoise(0.0)) == quiet
    loud = choose_slicing(layer, p, win, cfg, 0.09, 1, 256, noise=SearchNoise(0.12, 0, 2))
    assert loud.slicing != quiet.slicing and loud.error > quiet.error


def test_adaptive_run_with_noise_reports_its_slicings(capsys: pytest.CaptureFixture[str]) -> None:
    """A digits run with adaptive slicing under noise reports the E its search used, and repeats exactly."""
    args = ["run", str(DIGITS), "--batch", "20", "--json", "--no-trace", "--set", "functional.weight_slicing=adaptive",
            "--set", "noise.column_sigma=0.06", "--set", "functional.adc_bits=7"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)["functional"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["functional"] == first
    assert first["slicing_noise_sigma"] == 0.06 and set(first["slicings"]) == {"conv1", "conv2", "fc"}


def test_digits_accuracy_tool_small_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tool's grid and ablation on a few images; bad input is a one-line error, exit 2."""
    sys.path.insert(0, str(ROOT / "tools"))
    import digits_accuracy

    out = tmp_path / "fig.png"
    assert digits_accuracy.main(["--batch", "6", "--bits", "9", "--policies", "off", "--slicings", "fixed",
                                 "--noise", "0", "--ablation-noise", "0", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| 9 | fixed |" in text and "| ISAAC-like, top-1 |" in text and out.stat().st_size > 0
    assert digits_accuracy.main(["--noise", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--noise" in err
