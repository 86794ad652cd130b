"""Split-sign inputs (RAELLA 6.1) and Adaptive Weight Slicing (RAELLA 4.2)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_datapath import _random_model

from cimsim.cli import main
from cimsim.functional.chip_math import LayerMath, all_positions, windows
from cimsim.functional.crossbar import Crossbar, CrossbarConfig
from cimsim.functional.crossbar_reference import mvm_explicit
from cimsim.functional.encoding import input_can_be_negative, sign_passes, split
from cimsim.functional.reference import reference_forward, requantise
from cimsim.functional.slicing import all_slicings, choose_slicing, slicing_error
from cimsim.functional.weights import make_images, make_params
from cimsim.network.model import load_model
from cimsim.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "resnet32_cifar10.toml"


@pytest.fixture(scope="module")
def net():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def params(net):
    return make_params(net, 0)


# --- split-sign inputs ------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["off", "always", "on_failure"])
def test_split_sign_bit_exact_against_numpy(policy: str) -> None:
    """Random signed int8 inputs (-128 included): the two passes' difference is x @ W exactly
    with a wide ADC; with RAELLA's 7-bit ADC it equals the literal per-pass reference."""
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(96, 12))
    x = rng.integers(-128, 128, size=(200, 96))
    x[0, :] = -128
    for adc_bits, exact in ((20, True), (7, False)):
        cfg = CrossbarConfig(rows=128, cols=16, adc_bits=adc_bits, policy=policy, input_signed=False)
        xbar = Crossbar(w, cfg)
        pos, neg = split(x)
        assert pos.min() >= 0 and neg.max() == 128
        assert np.array_equal(pos.astype(np.int64) - neg, x)
        rp, rn = xbar.mvm(pos), xbar.mvm(neg)
        values = rp.values.astype(np.int64) - rn.values
        ep, en = mvm_explicit(xbar, pos), mvm_explicit(xbar, neg)
        assert np.array_equal(values, ep.values.astype(np.int64) - en.values)
        assert rp.counters() == ep.counters() and rn.counters() == en.counters()
        if exact:
            assert rp.clipped_converts == rn.clipped_converts == 0
            assert np.array_equal(values, x @ w)


def test_split_sign_layer_doubles_cycles_and_converts(net, params) -> None:
    """A signed layer's MVM is both passes: cycles and ADC converts are the passes' sums
    (policy always: 2 x 11 cycles), the accumulators the exact product where nothing clipped."""
    layer = net.layer("conv1")
    cfg = CrossbarConfig(rows=512, cols=512, policy="always")
    image = make_images(net, 1, 0)[0]
    win = windows(image, all_positions(layer), layer.kernel_hw, layer.stride_hw, layer.padding_hw)
    assert (win < 0).any()
    one = LayerMath(layer, params["conv1"], cfg, 1, 512)
    two = LayerMath(layer, params["conv1"], cfg, 1, 512, sign_passes=2)
    r1, r2 = one.compute(win), two.compute(win)
    assert set(r2.cycles.tolist()) == {22} and set(r1.cycles.tolist()) == {11}
    passes = two.compute_passes(win)
    assert r2.adc_converts == sum(p.adc_converts for _, p in passes)
    assert r2.column_mvms == 2 * r1.column_mvms
    exact = win.astype(np.int64) @ two.matrix.astype(np.int64)
    ok = ~r2.clipped_mask
    assert np.array_equal(r2.acc[ok], exact[ok])


def test_unsigned_layers_unchanged(net, params) -> None:
    """Only the network input is signed in ResNet-32 (every other conv/fc reads a ReLU output), and
    a post-ReLU layer gets one pass: its results equal two's complement's."""
    convs = [layer.name for layer in net.layers if layer.kind in ("conv", "fc")]
    signed = [n for n in convs if input_can_be_negative(net, n)]
    assert signed == ["conv1"]
    assert {sign_passes("split_sign", net, n) for n in convs[1:]} == {1}
    assert {sign_passes("twos_complement", net, n) for n in convs} == {1}
    name = convs[1]
    layer = net.layer(name)
    ref = reference_forward(net, params, make_images(net, 1, 0))
    x = ref[layer.inputs[0]][0]
    assert x.min() >= 0
    win = windows(x, all_positions(layer), layer.kernel_hw, layer.stride_hw, layer.padding_hw)
    cfg = CrossbarConfig(rows=512, cols=512, policy="on_failure")
    a = LayerMath(layer, params[name], cfg, 1, 512).compute(win)
    b = LayerMath(layer, params[name], cfg, 1, 512, sign_passes=sign_passes("split_sign", net, name)).compute(win)
    assert np.array_equal(a.acc, b.acc) and a.counters() == b.counters()
    assert np.array_equal(a.cycles, b.cycles)


def test_split_sign_run_changes_only_the_signed_layer(capsys: pytest.CaptureFixture[str]) -> None:
    scenario = str(ROOT / "scenarios" / "raella_resnet32_always.toml")
    runs = []
    for enc in ("twos_complement", "split_sign"):
        assert main(["run", scenario, "--json", "--no-trace", "--set", f"functional.input_encoding={enc}"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    base, split_run = (r["functional"] for r in runs)
    assert "input_encoding" not in base and split_run["split_sign_layers"] == ["conv1"]
    for name, counters in base["layers"].items():
        if name != "conv1":
            assert split_run["layers"][name] == counters
    conv1, conv1_split = base["layers"]["conv1"], split_run["layers"]["conv1"]
    assert conv1_split["column_mvms"] == 2 * conv1["column_mvms"]
    assert conv1_split["speculative_converts"] == 2 * conv1["speculative_converts"]
    assert runs[1]["latency_ns"] > runs[0]["latency_ns"]


# --- adaptive weight slicing --------------------------------------------------------------


def test_all_slicings_are_raellas_108() -> None:
    s = all_slicings()
    assert len(s) == len(set(s)) == 108
    assert all(sum(c) == 8 and min(c) >= 1 and max(c) <= 4 for c in s)
    assert [len(c) for c in s] == sorted(len(c) for c in s) and s[0] == (4, 4)


@pytest.mark.parametrize("budget", [0.09, 0.01])
def test_adaptive_slicing_within_budget(net, params, budget: float) -> None:
    """On a test layer the chosen slicing's error (mean |error| of nonzero int8 outputs, RAELLA
    4.2.1), recomputed with the literal crossbar, is below the budget, and no slicing with fewer
    slices is."""
    name = "conv3"
    layer = net.layer(name)
    ref = reference_forward(net, params, make_images(net, 2, 5))
    win = np.concatenate([windows(x, all_positions(layer), layer.kernel_hw, layer.stride_hw, layer.padding_hw)
                          for x in ref[layer.inputs[0]]])
    cfg = CrossbarConfig(rows=512, cols=512, adc_bits=5, policy="always")
    p = params[name]
    choice = choose_slicing(layer, p, win, cfg, budget, 1, 512)
    assert choice.within_budget and choice.error < budget
    exact = requantise(win.astype(np.int64) @ LayerMath(layer, p, cfg, 1, 512).matrix.astype(np.int64),
                       p, layer.relu).astype(np.int32)
    xbar = Crossbar(LayerMath(layer, p, cfg, 1, 512).matrix,
                    replace(cfg, policy="off", weight_slice_bits=choice.slicing))
    out = requantise(mvm_explicit(xbar, win).values, p, layer.relu).astype(np.int32)
    nz = exact != 0
    assert np.abs(out[nz] - exact[nz]).mean() == pytest.approx(choice.error) and choice.error < budget
    for s in all_slicings():
        if len(s) < len(choice.slicing):
            e = slicing_error(layer, p, win, exact, replace(cfg, weight_slice_bits=s), 1, 512)
            assert e >= budget


@pytest.mark.parametrize("policy", ["always", "on_failure"])
def test_split_sign_and_adaptive_runs_match_the_reference(tmp_path: Path, policy: str) -> None:
    """A small random network with wide ADCs: split-sign inputs and adaptive slicing keep the chip's
    outputs equal to the reference; per_group and batched agree; the slicings are reported."""
    scen = _random_model(tmp_path, 1)
    sets = ["functional.input_encoding=split_sign", "functional.weight_slicing=adaptive",
            f"functional.policy={policy}"]
    batched = run_scenario(scen, sets).summary
    f = batched["functional"]
    assert f["reference_match"] and f["saturations_accepted"] == 0
    assert f["split_sign_layers"] == ["a"]
    assert set(f["slicings"]) == {"a", "b", "r", "c"}
    assert all(s["within_budget"] and s["error"] < f["error_budget"] for s in f["slicings"].values())
    per_group = run_scenario(scen, [*sets, "functional.mode=per_group"]).summary
    assert per_group["functional"] == f
    assert per_group["latency_timesteps"] == batched["latency_timesteps"]
    plain = run_scenario(scen, [f"functional.policy={policy}"]).summary["functional"]
    assert f["layers"]["a"]["mvms"] == 2 * plain["layers"]["a"]["mvms"]  # two passes per window
    assert f["layers"]["b"]["mvms"] == plain["layers"]["b"]["mvms"]
