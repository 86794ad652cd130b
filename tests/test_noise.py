"""Analog noise (`cimsim.functional.noise`) and the PCM/PWM crossbar (`cimsim.functional.pcm_pwm`).

Noise statistics against the model's parameters (within sampling error), determinism with
noise on, and the noiseless PCM/PWM crossbar against the exact int8 product.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cimsim.cli import main
from cimsim.functional.crossbar import Crossbar, CrossbarConfig
from cimsim.functional.crossbar_reference import mvm_explicit
from cimsim.functional.noise import NoisyCrossbar, add_column_noise
from cimsim.functional.pcm_pwm import PROG_POLY, PcmConfig, PcmPwmCrossbar, program

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONAL = ROOT / "scenarios" / "dazzi2021_resnet32_functional.toml"
PCM = ROOT / "scenarios" / "dazzi2021_resnet32_pcm.toml"


def _summary(capsys: pytest.CaptureFixture[str], scenario: Path, *sets: str) -> dict:
    args = ["run", str(scenario), "--json", "--no-trace"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_column_noise_mean_and_std_match_the_model() -> None:
    rng = np.random.default_rng(1)
    e, n = 0.08, 200_000
    mags = np.array([4.0, 64.0, 900.0])
    sums = np.tile(np.array([3.0, -20.0, 100.0]), (n, 1))
    err = add_column_noise(sums, np.tile(mags, (n, 1)), e, rng) - sums
    sigma = e * np.sqrt(mags)
    # mean within 4 standard errors of 0; standard deviation within 4 standard errors of E sqrt(N+ + N-)
    assert np.all(np.abs(err.mean(axis=0)) < 4 * sigma / np.sqrt(n))
    assert np.all(np.abs(err.std(axis=0) - sigma) < 4 * sigma / np.sqrt(2 * n))
    assert np.array_equal(add_column_noise(sums[:5], np.tile(mags, (5, 1)), 0.0, rng), sums[:5])


def test_noisy_crossbar_without_noise_is_the_literal_crossbar() -> None:
    rng = np.random.default_rng(2)
    w = rng.integers(-128, 128, (64, 12)).astype(np.int8)
    x = rng.integers(-128, 128, (40, 64)).astype(np.int8)
    for policy in ("off", "always", "on_failure"):
        cfg = CrossbarConfig(64, 12, policy=policy)
        a, b = mvm_explicit(Crossbar(w, cfg), x), NoisyCrossbar(w, cfg, 0.0, np.random.default_rng(0)).mvm(x)
        assert np.array_equal(a.values, b.values) and a.counters() == b.counters(), policy


def test_noisy_crossbar_output_errors_follow_the_column_sums() -> None:
    """Policy off, wide ADC: each output's error is the shift-add of its conversions' errors
    (rint of the Gaussian), mean 0 and variance sum over conversions of weight**2 (E**2 (N+ + N-) + 1/12)."""
    rng = np.random.default_rng(3)
    rows, cols, e, n = 32, 4, 0.5, 20_000
    w = rng.integers(-40, 40, (rows, cols)).astype(np.int8)
    x = rng.integers(-128, 128, rows).astype(np.int8)
    cfg = CrossbarConfig(rows, cols, adc_bits=24, policy="off", weight_encoding="differential")
    xbar = NoisyCrossbar(w, cfg, e, np.random.default_rng(4))
    res = xbar.mvm(np.tile(x, (n, 1)))
    err = res.values.astype(np.float64) - (x.astype(np.int64) @ w.astype(np.int64))
    mag = xbar._slice_sums(np.abs(xbar._rec_table.astype(np.float64)), xbar._wabs, xbar._low_bytes(x[None]))[:, 0]
    weight = xbar._d_rec[:, None] * np.repeat(xbar._wdig, cols)[None, :]  # (recovery slice, device column)
    var_conv = np.where(mag > 0, e * e * mag + 1 / 12, 0.0)  # rounding adds 1/12 (Sheppard) where there is noise
    var = (weight**2 * var_conv).reshape(len(xbar._d_rec), -1, cols).sum(axis=(0, 1))
    assert np.all(np.abs(err.mean(axis=0)) < 4 * np.sqrt(var / n))
    assert np.all(np.abs(err.var(axis=0) / var - 1) < 0.06)


def test_pcm_pwm_without_noise_equals_the_int8_product() -> None:
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (256, 64)).astype(np.int8)
    x = rng.integers(-128, 128, (50, 256)).astype(np.int8)
    exact = x.astype(np.int64) @ w.astype(np.int64)
    xbar = PcmPwmCrossbar(w, PcmConfig(adc_bits=24), np.random.default_rng(0))
    res = xbar.mvm(x)
    assert xbar.adc_shift == 0 and np.array_equal(res.values, exact)
    assert res.crossbar_cycles == 1 and res.adc_converts == 50 * 64 and res.clipped_converts == 0
    narrow = PcmPwmCrossbar(w, PcmConfig(adc_bits=12), np.random.default_rng(0))
    half_lsb = 1 << (narrow.adc_shift - 1)
    assert narrow.adc_shift > 0 and np.abs(narrow.mvm(x).values - exact).max() <= half_lsb


def test_pcm_programming_noise_matches_its_parameter() -> None:
    cfg = PcmConfig(pcm=True, program_sigma=0.05, read_sigma=0.0, drift_nu=0.0, drift_nu_sigma=0.0)
    g = np.full(200_000, 0.5)
    gp, gf = program(g, cfg, np.random.default_rng(6))
    p = PROG_POLY
    sigma = 0.05 * (p[0] + p[1] * 0.5 + p[2] * 0.25) / sum(p)
    assert abs((gp - g).mean()) < 4 * sigma / np.sqrt(g.size)
    assert abs((gp - g).std() - sigma) < 4 * sigma / np.sqrt(2 * g.size)
    assert np.array_equal(gp, gf)  # no drift, no read noise


def test_noise_is_deterministic_and_reported(capsys: pytest.CaptureFixture[str]) -> None:
    a = _summary(capsys, FUNCTIONAL, "noise.column_sigma=0.08")
    b = _summary(capsys, FUNCTIONAL, "noise.column_sigma=0.08")
    c = _summary(capsys, FUNCTIONAL, "noise.column_sigma=0.08", "run.seed=1")
    assert a == b
    noise = a["functional"]["noise"]
    assert noise["column_sigma"] == 0.08 and a["functional"]["mismatching_values"] > 0
    assert noise["mismatch_fraction"] == a["functional"]["mismatching_values"] / a["functional"]["output_values"]
    assert c["functional"]["totals"] != a["functional"]["totals"] or c["functional"]["noise"] != noise


def test_pcm_scenario_timing_and_exactness(capsys: pytest.CaptureFixture[str]) -> None:
    """A PWM MVM of 8 cycles (16 steps per cycle) times exactly like the 8 one-bit slices of the
    functional scenario; without PCM noise and with a 24-bit ADC the outputs match the reference."""
    ref = _summary(capsys, FUNCTIONAL)
    pcm = _summary(capsys, PCM, "noise.pcm=false", "functional.adc_bits=24", "functional.pwm_steps_per_cycle=16")
    for key in ("latency_timesteps", "throughput_images_per_s", "total_timesteps"):
        assert pcm[key] == ref[key], key
    assert pcm["functional"]["reference_match"] and pcm["functional"]["crossbar"] == "pcm_pwm"
    noisy = _summary(capsys, PCM, "functional.pwm_steps_per_cycle=16")
    assert noisy["latency_timesteps"] == ref["latency_timesteps"]
    assert noisy["functional"]["noise"]["pcm_program_sigma"] == 0.0422


@pytest.mark.parametrize("setting", ["noise.column_sigma=-0.1", "functional.crossbar=memristor",
                                     "noise.pcm_drift_nu=2"])
def test_bad_noise_settings_are_one_line_errors(setting: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(FUNCTIONAL), "--no-trace", "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cimsim: error:") and "\n" not in err
