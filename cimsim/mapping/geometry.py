"""Per-layer dataflow tables for Algorithm 1: the parallel output groups, which
input pixels each group needs, when an input pixel is last used, and when outputs
can leave the core in stream order.

Pixels are indexed column by column (index = column * height + row), the order in
which Dazzi's Algorithm 2 stores them (pointer_in.x runs down a column). A group is
the set of outputs the kernel replicas compute in one MVM: `rate` consecutive outputs
of one column (Method 1, dw = 1) or a block `rate / dw` rows high and `dw` columns wide
(Method 2). Groups are computed stripe by stripe (dw output columns), top to bottom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerGeometry:
    """Static tables of one compute layer (all arrays are indexed by group, or by input pixel)."""

    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel: tuple[int, int]
    """(rows, columns) of the window."""
    stride: tuple[int, int]
    """(along H, along W)."""
    padding: tuple[int, int]
    """Zero rows above and below, zero columns left and right."""
    dw: int
    slot_columns: int
    """Input columns the circular SRAM buffer holds (Fw, or Fw + (dw - 1) * stride_w for Method 2)."""
    group_count: np.ndarray
    """Outputs in each group."""
    group_done: np.ndarray
    """Outputs of the image computed once the group is done (cumulative count)."""
    group_need: np.ndarray
    """Newest input pixel the group's windows need."""
    group_first_input: np.ndarray
    """Oldest input pixel the group's windows need."""
    group_released: np.ndarray
    """Outputs of the image that can leave in stream (column) order once the group is done."""
    group_out_need: np.ndarray
    """One past the largest stream index among the group's outputs (residual pixels needed)."""
    group_rows: tuple[tuple[int, ...], ...]
    """Input rows newly read from SRAM by each group (rows outside the image are padding)."""
    group_cols: np.ndarray
    """(first, last) input column of each group's windows (may lie outside the image: padding)."""
    group_origin: np.ndarray
    """(row, column) of each group's first (top-left) output."""
    group_shape: np.ndarray
    """(rows, columns) of outputs each group covers."""
    last_group: np.ndarray
    """last_group[k]: last group whose windows contain input pixel k (-1: none)."""

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
        return len(self.group_count)


Pair = int | tuple[int, int]
"""A size along H and W: one int for both, or (along H, along W)."""


def pair(value: Pair) -> tuple[int, int]:
    """`value` as (along H, along W)."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def build_geometry(in_h: int, in_w: int, kernel: Pair, stride: Pair, padding: Pair, rate: int,
                   dw: int = 1) -> LayerGeometry:
    """Tables for a (kernel, stride, padding) window computing `rate` outputs at once; each of
    the three is one int (square) or (along H, along W)."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    out_h = (in_h + 2 * ph - kh) // sh + 1
    out_w = (in_w + 2 * pw - kw) // sw + 1
    dw = max(1, min(dw, rate, out_w))
    block_rows = -(-rate // dw)
    last_group = np.full((in_w, in_h), -1, dtype=np.int64)
    count: list[int] = []
    done: list[int] = []
    need: list[int] = []
    first_in: list[int] = []
    released: list[int] = []
    out_need: list[int] = []
    rows: list[tuple[int, ...]] = []
    cols: list[tuple[int, int]] = []
    origin: list[tuple[int, int]] = []
    shape: list[tuple[int, int]] = []
    total = 0
    for c0 in range(0, out_w, dw):
        c1 = min(c0 + dw, out_w)
        col_lo, col_hi = c0 * sw - pw, (c1 - 1) * sw - pw + kw - 1
        prev_hi = None
        for r0 in range(0, out_h, block_rows):
            r1 = min(r0 + block_rows, out_h)
            row_lo, row_hi = r0 * sh - ph, (r1 - 1) * sh - ph + kh - 1
            g = len(count)
            total += (r1 - r0) * (c1 - c0)
            count.append((r1 - r0) * (c1 - c0))
            done.append(total)
            need.append(min(col_hi, in_w - 1) * in_h + min(row_hi, in_h - 1))
            first_in.append(max(col_lo, 0) * in_h + max(row_lo, 0))
            released.append(c1 * out_h if r1 == out_h else c0 * out_h + r1)
            out_need.append((c1 - 1) * out_h + r1)
            start = row_lo if prev_hi is None else max(row_lo, prev_hi + 1)
            rows.append(tuple(range(start, row_hi + 1)))
            cols.append((col_lo, col_hi))
            origin.append((r0, c0))
            shape.append((r1 - r0, c1 - c0))
            prev_hi = row_hi
            last_group[max(col_lo, 0):col_hi + 1, max(row_lo, 0):row_hi + 1] = g
    def arr(x: list[int]) -> np.ndarray:
        return np.array(x, dtype=np.int64)

    return LayerGeometry(
        in_h, in_w, out_h, out_w, (kh, kw), (sh, sw), (ph, pw), dw, kw + (dw - 1) * sw,
        arr(count), arr(done), arr(need), arr(first_in), arr(released), arr(out_need), tuple(rows),
        np.array(cols, dtype=np.int64).reshape(-1, 2), np.array(origin, dtype=np.int64).reshape(-1, 2),
        np.array(shape, dtype=np.int64).reshape(-1, 2),
        last_group.reshape(-1),
    )
