"""Bit-sliced RAELLA crossbar: exactness, speculation/recovery accounting, Center+Offset."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cimsim.errors import InputError
from cimsim.functional.crossbar import Crossbar, CrossbarConfig, optimal_centers, weight_slices
from cimsim.functional.crossbar_reference import mvm_explicit

ENCODINGS = ("differential", "center_offset", "offset")
POLICIES = ("off", "always", "on_failure")


def _laplace_matrix(rng, rows, cols, scale=20.0, mean=0.0):
    return np.clip(np.rint(rng.laplace(mean, scale, (rows, cols))), -128, 127).astype(np.int8)


def _relu_inputs(rng, n, rows, scale=15.0):
    x = np.clip(np.rint(rng.exponential(scale, (n, rows))), 0, 127)
    x[rng.random(x.shape) < 0.5] = 0
    return x.astype(np.int8)


def _exact(x, w):
    return x.astype(np.int64) @ w.astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("policy", POLICIES)
def test_values_exact_wherever_no_saturation_was_accepted(seed, encoding, policy):
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 257)), int(rng.integers(1, 65))
    w = _laplace_matrix(rng, rows, cols)
    x = _relu_inputs(rng, 64, rows)
    res = Crossbar(w, CrossbarConfig(256, 64, weight_encoding=encoding, policy=policy)).mvm(x)
    exact = _exact(x, w)
    assert res.values.dtype == np.int32 and res.values.shape == (64, cols)
    assert np.array_equal(res.values[~res.clipped_mask], exact[~res.clipped_mask])
    if res.clipped_converts == 0:
        assert np.array_equal(res.values, exact)
    # every flagged output really is wrong or touched by a clipped conversion
    assert res.clipped_mask.sum() <= res.clipped_converts


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("policy", POLICIES)
def test_wide_adc_is_exact_for_signed_inputs_and_never_fails(encoding, policy):
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, (200, 30)).astype(np.int8)
    x = rng.integers(-128, 128, (40, 200)).astype(np.int8)
    res = Crossbar(w, CrossbarConfig(256, 64, adc_bits=16, weight_encoding=encoding, policy=policy)).mvm(x)
    assert np.array_equal(res.values, _exact(x, w))
    assert res.failed_columns == res.saturations_accepted == res.clipped_converts == 0
    assert res.crossbar_cycles == {"off": 8, "always": 11, "on_failure": 3}[policy]
    single = Crossbar(w, CrossbarConfig(256, 64, adc_bits=16, policy=policy)).mvm(x[0])
    assert single.values.shape == (30,) and np.array_equal(single.values, _exact(x[:1], w)[0])


def test_fast_path_matches_explicit_shift_and_add():
    """`mvm` (exact product + clip corrections) == `mvm_explicit` (every conversion assembled)."""
    rng = np.random.default_rng(3)
    combos = itertools.product(ENCODINGS, POLICIES, ("slice", "column"), (4, 7), (1, 2, 3), (False, True))
    for encoding, policy, recovery, adc, rbits, signed in combos:
        rows, cols = int(rng.integers(1, 200)), int(rng.integers(1, 40))
        w = _laplace_matrix(rng, rows, cols)
        x = rng.integers(-128, 128, (30, rows)).astype(np.int8) if signed else _relu_inputs(rng, 30, rows, scale=25.0)
        cfg = CrossbarConfig(
            256, 64, adc_bits=adc, recovery_slice_bits=rbits, weight_encoding=encoding, policy=policy,
            recovery=recovery,
        )
        xbar = Crossbar(w, cfg)
        fast, slow = xbar.mvm(x), mvm_explicit(xbar, x)
        where = (encoding, policy, recovery, adc, rbits, signed)
        assert np.array_equal(fast.values, slow.values), where
        assert fast.counters() == slow.counters(), where
        assert np.array_equal(fast.cycles, slow.cycles), where
        assert np.array_equal(fast.clipped_mask, slow.clipped_mask), where
        exact = _exact(x, w)
        assert np.array_equal(fast.values[~fast.clipped_mask], exact[~fast.clipped_mask]), where
        if adc == 4:  # heavy saturation: the mask is exercised and really marks wrong values
            assert fast.clipped_converts > 0 and (fast.values != exact).any(), where


def test_hand_computed_saturation_and_recovery_differential():
    """100 rows of weight 1, every input 16 (bit 4): the 4b speculative slice sums to 100 > 63.

    Weight slices (4,2,2) of |w| = 1: only the last device column holds 1.
    Speculative slice 1 (bits 7..4) sees 100 -> saturated, failed; recovery bit 4
    sees 100 again -> accepted at 63, so the result is 63 * 16 = 1008 instead of 1600.
    """
    w = np.ones((100, 1), dtype=np.int8)
    x = np.full(100, 16, dtype=np.int8)
    res = Crossbar(w, CrossbarConfig(256, 1, weight_encoding="differential", policy="always")).mvm(x)
    assert int(res.values[0]) == 63 * 16
    assert res.clipped_mask.tolist() == [True]
    assert (res.failed_columns, res.failed_slices) == (1, 1)
    assert res.speculative_converts == 3 * 3  # 3 device columns x 3 speculative slices
    assert res.recovery_converts == 4  # the 4 one-bit slices of the failed 4b slice only
    assert res.adc_converts == 13
    assert (res.saturations_accepted, res.clipped_converts) == (1, 1)
    assert (res.crossbar_cycles, res.speculative_slices, res.recovery_slices) == (11, 3, 8)

    column = Crossbar(w, CrossbarConfig(256, 1, weight_encoding="differential", recovery="column")).mvm(x)
    assert int(column.values[0]) == 1008 and column.recovery_converts == 8

    off = Crossbar(w, CrossbarConfig(256, 1, weight_encoding="differential", policy="off")).mvm(x)
    assert int(off.values[0]) == 1008
    assert (off.adc_converts, off.crossbar_cycles, off.saturations_accepted) == (24, 8, 1)

    lucky = Crossbar(w, CrossbarConfig(256, 1, weight_encoding="differential", policy="on_failure"))
    quiet = lucky.mvm(np.zeros(100, dtype=np.int8))
    assert (quiet.crossbar_cycles, quiet.recovery_slices, quiet.adc_converts) == (3, 0, 9)
    both = lucky.mvm(np.stack([np.zeros(100, dtype=np.int8), x]))
    assert both.cycles.tolist() == [3, 11] and both.crossbar_cycles == 11
    assert (both.mvms, both.recovery_mvms) == (2, 1)


def test_hand_computed_center_offset_moves_the_sum_to_the_digital_side():
    """Same case with Center+Offset: the center is 1, offsets are 0, phi * sum(x) = 1600 exactly."""
    w = np.ones((100, 1), dtype=np.int8)
    x = np.full(100, 16, dtype=np.int8)
    xbar = Crossbar(w, CrossbarConfig(256, 1, weight_encoding="center_offset"))
    assert xbar.centers.tolist() == [1]
    res = xbar.mvm(x)
    assert int(res.values[0]) == 1600
    assert res.failed_columns == 0 and res.adc_converts == 9 and res.crossbar_cycles == 11


def _brute_centers(matrix, ranges):
    m = matrix.astype(np.int64)
    cands = np.arange(m.min(), m.max() + 1)
    cands = cands[np.lexsort((cands, np.abs(cands)))]
    out = []
    for j in range(m.shape[1]):
        costs = [
            sum(2.0**low * float(s.sum()) ** 4 for (_, low), s in zip(ranges, weight_slices(m[:, j] - c, ranges), strict=False))
            for c in cands
        ]
        out.append(cands[int(np.argmin(costs))])
    return np.array(out)


@pytest.mark.parametrize("slicing", [(4, 2, 2), (2, 2, 2, 2), 1, (3, 3, 2)])
def test_centers_solve_eq_4_2(slicing):
    rng = np.random.default_rng(5)
    ranges = CrossbarConfig(8, 8, weight_slice_bits=slicing).weight_slice_ranges
    for _ in range(3):
        w = _laplace_matrix(rng, int(rng.integers(1, 60)), 6, mean=float(rng.normal(0, 10)))
        assert np.array_equal(optimal_centers(w, ranges), _brute_centers(w, ranges))


def test_center_offset_balances_a_biased_filter():
    """RAELLA 4.1.1: a mostly-negative filter saturates under differential encoding, not under Center+Offset."""
    rng = np.random.default_rng(11)
    w = _laplace_matrix(rng, 250, 16, scale=12.0, mean=-12.0)
    x = _relu_inputs(rng, 200, 250)
    diff = Crossbar(w, CrossbarConfig(256, 16, weight_encoding="differential")).mvm(x)
    co = Crossbar(w, CrossbarConfig(256, 16, weight_encoding="center_offset")).mvm(x)
    assert co.failed_slices < diff.failed_slices / 2
    assert co.clipped_converts <= diff.clipped_converts


def test_weight_slice_ranges_and_config_defaults():
    cfg = CrossbarConfig(256, 256)
    assert cfg.adc_range == (-64, 63)
    assert cfg.speculative_slice_ranges == ((7, 4), (3, 2), (1, 0))
    assert [r[:2] for r in cfg.recovery_slice_ranges] == [(b, b) for b in range(7, -1, -1)]
    assert cfg.weight_slice_ranges == ((7, 4), (3, 2), (1, 0))
    assert (cfg.speculative_cycles, cfg.recovery_cycles, cfg.max_cycles) == (3, 8, 11)
    assert CrossbarConfig(8, 8, weight_slice_bits=3).weight_slice_bits == (3, 3, 2)
    assert CrossbarConfig(8, 8, policy="off").max_cycles == 8
    assert Crossbar(np.zeros((4, 5), dtype=np.int8), cfg).physical_columns == 15


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"adc_bits": 0}, "adc_bits"),
        ({"input_slices": (4, 2, 1)}, "input_slices"),
        ({"weight_slice_bits": (4, 4, 1)}, "weight_slice_bits"),
        ({"weight_encoding": "isaac"}, "weight_encoding"),
        ({"policy": "sometimes"}, "policy"),
        ({"recovery": "row"}, "recovery"),
        ({"rows": -1}, "rows"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    args = {"rows": 8, "cols": 8, **kwargs}
    with pytest.raises(InputError, match=field) as info:
        CrossbarConfig(**args)
    assert "\n" not in str(info.value)


def test_matrix_and_input_validation():
    cfg = CrossbarConfig(8, 4)
    with pytest.raises(ValueError, match="does not fit"):
        Crossbar(np.zeros((9, 4), dtype=np.int8), cfg)
    xbar = Crossbar(np.zeros((8, 4), dtype=np.int8), cfg)
    with pytest.raises(ValueError, match="shape"):
        xbar.mvm(np.zeros(7, dtype=np.int8))
    with pytest.raises(ValueError, match="two's complement"):
        xbar.mvm(np.full(8, 200, dtype=np.int16))


@pytest.mark.parametrize(
    "small_batch, dense_ratio",
    [(0, 0), (0, 10**9), (10**12, 0)],
    ids=["entry-by-entry", "dense-pairs", "small-batch"],
)
def test_every_recovery_strategy_matches_explicit(monkeypatch, small_batch, dense_ratio):
    """`mvm` picks how it evaluates recovery sums by batch size and failure density; each way is exact."""
    monkeypatch.setattr(Crossbar, "_SMALL_BATCH", small_batch)
    monkeypatch.setattr(Crossbar, "_DENSE_RATIO", dense_ratio)
    rng = np.random.default_rng(17)
    combos = itertools.product(("always", "on_failure"), ("slice", "column"), (3, 5, 7), (1, 2, 3))
    for policy, recovery, adc, rbits in combos:
        rows, cols = int(rng.integers(1, 300)), int(rng.integers(1, 30))
        w = _laplace_matrix(rng, rows, cols)
        signed = bool(rng.integers(2))
        x = rng.integers(-128, 128, (25, rows)) if signed else _relu_inputs(rng, 25, rows, scale=25.0)
        cfg = CrossbarConfig(
            512, 32, adc_bits=adc, recovery_slice_bits=rbits, policy=policy, recovery=recovery,
            weight_slice_bits=((4, 2, 2), 2, (3, 3, 2))[int(rng.integers(3))],
        )
        xbar = Crossbar(w, cfg)
        fast, slow = xbar.mvm(x.astype(np.int8)), mvm_explicit(xbar, x.astype(np.int8))
        where = (policy, recovery, adc, rbits, signed)
        assert np.array_equal(fast.values, slow.values), where
        assert fast.counters() == slow.counters(), where
        assert np.array_equal(fast.cycles, slow.cycles), where
        assert np.array_equal(fast.clipped_mask, slow.clipped_mask), where


def test_centers_solve_eq_4_2_for_tall_matrices():
    """Past ~650 rows the 4th powers exceed 2**53 and are no longer exact; the result still matches."""
    rng = np.random.default_rng(8)
    ranges = CrossbarConfig(8, 8).weight_slice_ranges
    w = _laplace_matrix(rng, 1200, 2, scale=30.0, mean=5.0)
    assert np.array_equal(optimal_centers(w, ranges), _brute_centers(w, ranges))
