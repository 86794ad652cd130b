"""The slow, literal crossbar MVM: the executable specification `Crossbar.mvm` is held to.

`mvm_explicit(xbar, x)` evaluates every ADC conversion of
the model in the `cimsim.functional.crossbar` docstring, clips it, flags it and
shift-adds it: one float32 product of the 8 input bit-planes with the sliced weights
(`_bit_plane_sums`), every speculative and recovery slice sum formed from those, and
the center term ``phi_j * sum_i x_i`` added digitally (Eq. 4.1). Its results are
identical to `Crossbar.mvm` (values, counters, cycles, clipped mask).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cimsim.functional.crossbar import MvmResult

if TYPE_CHECKING:
    from cimsim.functional.crossbar import Crossbar


def _bit_plane_sums(xbar: Crossbar, x2: np.ndarray) -> np.ndarray:
    """Column sums of every input bit-plane (n, input_bits, device columns), float32, exact."""
    n, ib = x2.shape[0], xbar.config.input_bits
    u = x2.view(np.uint8) if x2.dtype == np.int8 else (x2.astype(np.int16) & 255).astype(np.uint8)
    planes = np.unpackbits(u[:, None, :], axis=1)[:, 8 - ib :, :]  # MSB first
    p = planes.reshape(n * ib, xbar.rows).astype(np.float32) @ xbar._wsl
    return p.reshape(n, ib, xbar.physical_columns)


def mvm_explicit(xbar: Crossbar, x: np.ndarray) -> MvmResult:
    """Same as `Crossbar.mvm`, computed the slow, literal way: every conversion is
    evaluated, clipped, flagged and shift-added (the executable specification
    the tests hold `mvm` to)."""
    cfg = xbar.config
    x2, single = xbar._check_input(x)
    n, kc = x2.shape[0], xbar.physical_columns
    lo, hi = cfg.adc_range
    p = _bit_plane_sums(xbar, x2)

    if xbar._rec_identity:
        r_an = p.copy()
        if cfg.input_signed:
            r_an[:, 0] = -r_an[:, 0]
    else:
        r_an = np.matmul(xbar._a_rec, p)
    rec_sat = (r_an <= lo) | (r_an >= hi)
    rec_clip = (r_an < lo) | (r_an > hi)
    rec_val = np.clip(r_an, lo, hi) * xbar._d_rec[None, :, None]
    n_rec = len(xbar._d_rec)
    n_spec = len(xbar._d_spec)

    if cfg.policy == "off":
        colval = rec_val.sum(axis=1)
        used_sat, used_clip = rec_sat, rec_clip
        spec_conv, rec_conv = 0, n * n_rec * kc
        failed_cols = failed_slices = 0
        spec_slices, rec_slices = 0, n * n_rec
        cycles = np.full(n, n_rec, dtype=np.int64)
        recovery_mvms = 0
    else:
        s_an = np.matmul(xbar._a_spec, p)
        fail = (s_an <= lo) | (s_an >= hi)
        spec_val = np.clip(s_an, lo, hi) * xbar._d_spec[None, :, None]
        failed_any = fail.any(axis=1)  # (n, kc)
        if cfg.recovery == "slice":
            rsum = np.matmul(xbar._owner_onehot, rec_val)
            colval = np.where(fail, rsum, spec_val).sum(axis=1)
            active = fail[:, xbar._owner, :]
            rec_conv = int((fail.sum(axis=(0, 2)) * xbar._chunks).sum())
        else:
            colval = np.where(failed_any, rec_val.sum(axis=1), spec_val.sum(axis=1))
            active = failed_any[:, None, :]
            rec_conv = int(failed_any.sum()) * n_rec
        used_sat, used_clip = rec_sat & active, rec_clip & active
        spec_conv = n * n_spec * kc
        failed_cols, failed_slices = int(failed_any.sum()), int(fail.sum())
        recovery_mvms = int(failed_any.any(axis=1).sum())
        if cfg.policy == "always":
            cycles = np.full(n, n_spec + n_rec, dtype=np.int64)
        else:
            cycles = n_spec + n_rec * failed_any.any(axis=1).astype(np.int64)
        spec_slices, rec_slices = n * n_spec, int(cycles.sum()) - n * n_spec

    k = len(xbar._wdig)
    cv = np.rint(colval).astype(np.int64).reshape(n, k, xbar.cols)
    values = (cv * xbar._wdig[None, :, None]).sum(axis=1)
    values += xbar._centers64[None, :] * x2.astype(np.int64).sum(axis=1, keepdims=True)
    clipped_mask = np.asarray(used_clip.any(axis=1).reshape(n, k, xbar.cols).any(axis=1))
    values = values.astype(np.int32)
    if single:
        values, clipped_mask = values[0], clipped_mask[0]
    return MvmResult(
        values=values,
        crossbar_cycles=int(cycles.max()) if n else 0,
        speculative_slices=spec_slices,
        recovery_slices=rec_slices,
        failed_columns=failed_cols,
        adc_converts=spec_conv + rec_conv,
        saturations_accepted=int(used_sat.sum()),
        failed_slices=failed_slices,
        speculative_converts=spec_conv,
        recovery_converts=rec_conv,
        clipped_converts=int(used_clip.sum()),
        column_mvms=n * kc,
        mvms=n,
        recovery_mvms=recovery_mvms,
        cycles=cycles,
        clipped_mask=clipped_mask,
    )
