"""Per-layer dataflow tables for Algorithm 1: which input pixel completes each
output window, when an input pixel is last used, and the parallel output groups.

Pixels are indexed column by column (index = column * height + row), the order in
which Dazzi's Algorithm 2 stores them (pointer_in.x runs down a column).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerGeometry:
    """Static tables of one compute layer."""

    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel: int
    stride: int
    padding: int
    need: np.ndarray
    """need[j]: index of the last input pixel output j's window needs."""
    last_use: np.ndarray
    """last_use[k]: last output index whose window contains input k (-1: none)."""
    group_start: np.ndarray
    """First output index of each parallel group (groups stay inside one column)."""
    group_end: np.ndarray
    """One past the last output index of each group."""
    group_need: np.ndarray
    """Last input index each group needs (max of need over the group)."""
    group_rows: np.ndarray
    """New kernel rows (F pixels each) read from SRAM for each group."""

    @property
    def n_in(self) -> int:
        """Input pixels per image."""
        return self.in_h * self.in_w

    @property
    def n_out(self) -> int:
        """Output pixels per image."""
        return self.out_h * self.out_w

    @property
    def n_groups(self) -> int:
        """Parallel groups per image."""
        return len(self.group_start)


def build_geometry(in_h: int, in_w: int, kernel: int, stride: int, padding: int, rate: int) -> LayerGeometry:
    """Tables for a (kernel x kernel, stride, padding) window computing `rate` outputs at once."""
    out_h = (in_h + 2 * padding - kernel) // stride + 1
    out_w = (in_w + 2 * padding - kernel) // stride + 1
    rows = np.arange(out_h)
    cols = np.arange(out_w)
    last_r = np.minimum(rows * stride - padding + kernel - 1, in_h - 1)
    last_c = np.minimum(cols * stride - padding + kernel - 1, in_w - 1)
    need = (last_c[:, None] * in_h + last_r[None, :]).reshape(-1)

    def last_out(pos: np.ndarray, n_out: int) -> np.ndarray:
        hi = np.minimum((pos + padding) // stride, n_out - 1)
        lo = -((kernel - 1 - pos - padding) // stride)  # ceil((pos + padding - kernel + 1) / stride)
        return np.where(hi >= np.maximum(lo, 0), hi, -1)

    lr = last_out(np.arange(in_h), out_h)
    lc = last_out(np.arange(in_w), out_w)
    valid = (lc[:, None] >= 0) & (lr[None, :] >= 0)
    last_use = np.where(valid, lc[:, None] * out_h + lr[None, :], -1).reshape(-1)

    starts, ends, gneed, grows = [], [], [], []
    for c in range(out_w):
        prev_hi = -1
        for r0 in range(0, out_h, rate):
            r1 = min(r0 + rate, out_h)
            j0, j1 = c * out_h + r0, c * out_h + r1
            lo = max(0, r0 * stride - padding)
            hi = min(in_h - 1, (r1 - 1) * stride - padding + kernel - 1)
            starts.append(j0)
            ends.append(j1)
            gneed.append(int(need[j0:j1].max()))
            grows.append(max(0, hi - max(lo, prev_hi + 1) + 1))
            prev_hi = hi
    return LayerGeometry(
        in_h, in_w, out_h, out_w, kernel, stride, padding, need.astype(np.int64), last_use.astype(np.int64),
        np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64),
        np.array(gneed, dtype=np.int64), np.array(grows, dtype=np.int64),
    )
