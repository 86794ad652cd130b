"""Center+Offset weight encoding: weight slicing and the per-column centers of RAELLA Eq. 4.2.

Model (Andrulis, RAELLA thesis 2023, 4.1, 4.2; the rest of the crossbar model is in
the `cimsim.functional.crossbar` docstring). A column ``j`` of the int8 matrix (one
*weight filter* in a crossbar) is stored as a digital *center* ``phi_j`` plus signed
offsets ``o_ij = w_ij - phi_j`` held in a 2T2R pair (positive / negative device; the
column current is the difference, 4.1.4). ``weight_encoding="center_offset"`` picks
``phi_j`` per column by Eq. 4.2 (`optimal_centers`: argmin over integer phi of
``sum_k 2**l_k * (sum_i D_k(w_i - phi))**4``, ties to the smallest |phi|);
``"differential"`` is RAELLA's Zero+Offset baseline (``phi = 0``, positive weights on
the positive device, negative on the negative one); ``"offset"`` is ISAAC's unsigned
arithmetic (RAELLA 4.1, 7.1: "unsigned weights"): ``phi = -128`` for every column, so each
device holds the unsigned ``w + 128`` (0..255, dense high-order bits for small weights) and
the digital side subtracts ``128 * sum_i x_i``. The offset magnitude (8 bits) is
cut into *weight slices*, one physical device column each, high-order first; default
``weight_slice_bits=(4, 2, 2)``: "most layers use the 4b-2b-2b setup" (4.2, Fig. 4-4;
7.1). Slice ``k`` covering bits ``h..l`` stores ``sign(o) * ((|o| >> l) & (2**(h-l+1) - 1))``
(`weight_slices`). The digital side adds ``phi_j * sum_i x_i`` (Eq. 4.1) and shift-adds
the slices by ``2**l``.

Also here: `_Packing`, bounded signed integers packed into float64 words so that
one exact matrix product yields several integer sums. `optimal_centers` packs its
per-slice tables with it; `Crossbar.mvm` packs recovery slices the same way
(`_EXACT_BITS`, `_digit_bits`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_EXACT_BITS = 52
"""Packed float64 sums are kept below 2**52 in magnitude (every partial sum is then exact)."""


def _digit_bits(bound: int) -> int:
    """Width of a balanced signed bit field holding every integer in [-bound, bound]."""
    return int(bound).bit_length() + 1


class _Packing:
    """Bounded signed integers ("digits") packed into float64 words at fixed bit offsets.

    Digit ``i`` holds integers in ``[-bounds[i], bounds[i]]`` in a field of
    ``_digit_bits(bounds[i])`` bits; consecutive digits share a word while their
    fields fit in ``_EXACT_BITS`` bits. A float64 product of small integers whose
    every partial sum stays below 2**53 in magnitude is exact whatever the
    summation order, so one matrix product against packed operands yields
    several bounded integer sums, unpacked exactly afterwards.
    """

    def __init__(self, bounds) -> None:
        self.n = len(bounds)
        self.groups: list[list[int]] = []
        self.offsets: list[int] = []
        self.bits: list[int] = []
        used = _EXACT_BITS + 1
        for i, bound in enumerate(bounds):
            width = _digit_bits(bound)
            if used + width > _EXACT_BITS:
                self.groups.append([])
                used = 0
            self.groups[-1].append(i)
            self.offsets.append(used)
            self.bits.append(width)
            used += width
        # adding bias makes every field non-negative: field i then holds digit + 2**(bits - 1)
        self.bias = [sum(1 << (self.offsets[i] + self.bits[i] - 1) for i in g) for g in self.groups]

    @property
    def words(self) -> int:
        return len(self.groups)

    def pack(self, parts: np.ndarray) -> np.ndarray:
        """(digits, ..., cols) integers -> (..., words * cols) float64, word-major."""
        parts = np.asarray(parts).astype(np.int64)
        words = [sum(parts[i] << self.offsets[i] for i in g) for g in self.groups]
        return np.concatenate(words, axis=-1).astype(np.float64)

    def unpack(self, p: np.ndarray, cols: int) -> np.ndarray:
        """(..., words * cols) exact packed sums (float64) -> (..., digits, cols) int64."""
        lead = p.shape[:-1]
        p = p.reshape((*lead, self.words, cols))
        out = np.empty((*lead, self.n, cols), dtype=np.int64)
        for g, idx in enumerate(self.groups):
            t = p[..., g, :].astype(np.int64)
            t += self.bias[g]
            for pos, i in enumerate(idx):
                field = out[..., i, :]
                if pos == 0:
                    np.bitwise_and(t, (1 << self.bits[i]) - 1, out=field)
                else:
                    np.right_shift(t, self.offsets[i], out=field)
                    if pos < len(idx) - 1:
                        field &= (1 << self.bits[i]) - 1
                field -= 1 << (self.bits[i] - 1)
        return out


def weight_slices(offsets: np.ndarray, ranges: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    """Signed slice values ``sign(o) * ((|o| >> l) & mask)`` of integer offsets, one array per slice."""
    mag, sign = np.abs(offsets), np.sign(offsets)
    return [sign * ((mag >> low) & ((1 << (high - low + 1)) - 1)) for high, low in ranges]


@lru_cache(maxsize=32)
def _center_tables(ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """G[k, v + 128, phi + 128] = D_k(v - phi) for int8 v and candidate centers phi."""
    v = np.arange(-128, 128, dtype=np.int16)
    diff = v[:, None] - v[None, :]
    return np.stack(weight_slices(diff, ranges)).astype(np.float64)


@lru_cache(maxsize=32)
def _packed_center_table(ranges: tuple[tuple[int, int], ...], rows: int) -> tuple[_Packing, np.ndarray]:
    """`_center_tables` packed for ``rows`` weights: (packing, (256, words * 256) float64)."""
    packing = _Packing([rows * ((1 << (high - low + 1)) - 1) for high, low in ranges])
    table = packing.pack(_center_tables(ranges))
    table.flags.writeable = False
    return packing, table


FIXED_WEIGHT_SLICES = (4, 2, 2)
"""A scenario's fixed weight slicing (``functional.weight_slicing = "fixed"``): RAELLA's 4b-2b-2b."""
OFFSET_WEIGHT_SLICES = (2, 2, 2, 2)
"""The fixed weight slicing with ``weight_encoding="offset"``: ISAAC's four 2b cells (RAELLA 7.1)."""
OFFSET_CENTER = -128
"""The center of every column with ``weight_encoding="offset"`` (ISAAC: devices hold w + 128)."""


def fixed_weight_slices(encoding: str) -> tuple[int, ...]:
    """A scenario's fixed weight slicing under weight encoding ``encoding``."""
    return OFFSET_WEIGHT_SLICES if encoding == "offset" else FIXED_WEIGHT_SLICES


def encoding_centers(matrix: np.ndarray, ranges: tuple[tuple[int, int], ...], encoding: str) -> np.ndarray:
    """Per-column centers (int16 (cols,)) of an int8 ``matrix`` under ``encoding`` (module docstring)."""
    cols = np.asarray(matrix).shape[1]
    if encoding == "center_offset":
        return optimal_centers(matrix, ranges)
    return np.full(cols, OFFSET_CENTER if encoding == "offset" else 0, dtype=np.int16)


def optimal_centers(matrix: np.ndarray, ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Per-column Center+Offset centers by RAELLA Eq. 4.2 (int16 (cols,)).

    ``argmin_phi sum_k 2**l_k * (sum_i D_k(w_i - phi))**4`` over the integers phi
    in [min(matrix), max(matrix)] (a center outside the weights' range makes
    every offset the same sign); ties go to the smallest |phi|, then the
    smallest phi. The inner sums for every candidate come from the column's
    weight histogram times a table of D_k(v - phi), so the cost does not grow
    with the number of rows; the tables of all slices are packed into one
    float64 matrix (`_Packing`), so a single exact product gives every sum.
    """
    m = np.asarray(matrix).astype(np.int64)
    rows, cols = m.shape
    if m.size == 0:
        return np.zeros(cols, dtype=np.int16)
    ranges = tuple((int(high), int(low)) for high, low in ranges)
    lo, hi = int(m.min()), int(m.max())
    span = hi - lo + 1
    hist = np.bincount(
        (np.arange(cols)[None, :] * span + (m - lo)).ravel(), minlength=cols * span
    ).reshape(cols, span).astype(np.float64)
    cands = np.arange(lo, hi + 1)
    cands = cands[np.lexsort((cands, np.abs(cands)))]  # by |phi|, then phi
    packing, table = _packed_center_table(ranges, rows)
    pick = (np.arange(packing.words)[:, None] * 256 + cands[None, :] + 128).ravel()
    sums = packing.unpack(hist @ table[lo + 128 : hi + 129][:, pick], len(cands))  # (cols, K, cands)
    # x**4 by two squarings: exact, hence equal to pow(x, 4), while x**4 < 2**53
    squares = rows * max((1 << (high - low + 1)) - 1 for high, low in ranges) <= 9741
    cost = np.zeros((cols, len(cands)))
    for k, (_, low) in enumerate(ranges):
        s = sums[:, k].astype(np.float64)
        cost += 2.0**low * (np.square(np.square(s)) if squares else s**4)
    best = np.argmin(cost, axis=1)
    return cands[best].astype(np.int16)
