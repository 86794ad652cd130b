"""Recovery sums of single failed entries, for the fast `Crossbar.mvm`.

When speculation fails, `Crossbar.mvm` needs the recovery-slice sums of only the
failed (speculative slice, vector, device column) entries (all of a failed column's
with ``recovery="column"``). The last recovery slice of a speculative slice follows
from the others and the speculative sum (``S = sum_j 2**(low_j - low) * R_j``, the
last weight is 1), so only the others are evaluated: densely, one float product over
the (slice, vector) pairs that need any, or entry by entry with those recovery slices
packed into one float64 word (`cimsim.functional.centers._Packing` layout);
`_recovery_sums` picks by failure density (`Crossbar._DENSE_RATIO`). Small batches
(`Crossbar._SMALL_BATCH`) do not come here: `mvm` evaluates every recovery sum.

`_EntryRecovery` is a mixin of `Crossbar`: it reads the `Crossbar` attributes
``rows``, ``physical_columns``, ``_chunks``, ``_chunk_start``, ``_d_rec_int``,
``_rec_table``, ``_wsl``, ``_wsl_rec`` and the class constants ``_DENSE_RATIO`` and
``_SPARSE_CHUNK``.
"""

from __future__ import annotations

import numpy as np

from cimsim.functional.centers import _EXACT_BITS, _digit_bits


class _EntryRecovery:
    """`Crossbar` mixin: tables and evaluation of single-entry recovery sums (module docstring)."""

    # provided by `Crossbar`
    rows: int
    physical_columns: int
    _chunks: np.ndarray
    _chunk_start: np.ndarray
    _rec_table: np.ndarray
    _d_rec_int: np.ndarray
    _wsl: np.ndarray
    _wsl_rec: np.ndarray
    _DENSE_RATIO: float
    _SPARSE_CHUNK: int

    def _init_entry_recovery(self, spec, rec_in: np.ndarray, bound: int) -> None:
        """Build the recovery tables. ``spec``: the speculative slice ranges; ``rec_in``:
        the recovery input slice values by low byte (`crossbar._input_slice_table`);
        ``bound``: the largest magnitude of a recovery sum. Recovery slices other than
        the last of their speculative slice are packed ``_rec_width`` bits each,
        ``_rec_per`` per word."""
        n_spec, cmax = len(spec), int(self._chunks.max())
        ncomp = cmax - 1
        q0, cnt = self._chunk_start, self._chunks
        self._rec_flat = self._rec_table.ravel()  # [recovery slice * 256 + low byte]
        self._rec_q = np.empty((n_spec, cmax), dtype=np.intp)  # recovery slice of each digit
        self._rec_dd = np.zeros((n_spec, ncomp), dtype=np.int64)  # its weight within S
        for s in range(n_spec):
            self._rec_q[s] = q0[s]
            self._rec_q[s, cmax - 1] = q0[s] + cnt[s] - 1
            for j in range(cnt[s] - 1):
                self._rec_q[s, j] = q0[s] + j
                self._rec_dd[s, j] = self._d_rec_int[q0[s] + j] >> spec[s][1]
        self._rec_width = width = _digit_bits(bound)
        self._rec_per = per = max(1, _EXACT_BITS // width)
        groups = -(-ncomp // per)
        packed = np.zeros((groups, n_spec, 256), dtype=np.int64)
        for s in range(n_spec):
            for j in range(cnt[s] - 1):
                packed[j // per, s] += rec_in[q0[s] + j] << (width * (j % per))
        self._rec_packed = packed.astype(np.float64).reshape(groups, n_spec * 256)
        self._wsl_t64 = np.ascontiguousarray(self._wsl.T, dtype=np.float64)  # (device columns, rows)

    def _recovery_sums(
        self, es: np.ndarray, ev: np.ndarray, ek: np.ndarray, spec_sums: np.ndarray, xb: np.ndarray
    ) -> np.ndarray:
        """Recovery-slice sums (entries, max recovery slices per speculative slice) int64 of
        the entries (speculative slice ``es``, vector ``ev``, device column ``ek``), sorted by
        (es, ev). Column ``j < chunk - 1`` holds recovery slice ``j`` of the entry's chunk, the
        last column its last one (``_rec_q`` maps them); unused columns hold 0."""
        f, rows, kc = len(es), self.rows, self.physical_columns
        ncomp = self._rec_dd.shape[1]
        out = np.zeros((f, ncomp + 1), dtype=np.int64)
        last = out[:, ncomp]
        last[:] = spec_sums
        if not ncomp or not f:
            return out
        comp = out[:, :ncomp]
        # (slice, vector) pairs: entries are sorted by them
        key = es * xb.shape[0] + ev
        new = np.empty(f, dtype=bool)
        new[0] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        start = np.flatnonzero(new)
        pe = np.cumsum(new) - 1  # pair of each entry
        ps, pv = es[start], ev[start]
        nq = self._chunks[ps] - 1  # recovery slices to evaluate per pair
        n_eval = int(nq.sum())
        groups = self._rec_packed.shape[0]
        if n_eval * kc <= self._DENSE_RATIO * f * groups:
            rstart = np.cumsum(nq) - nq
            q = np.repeat(self._chunk_start[ps] - rstart, nq) + np.arange(n_eval)
            xs = np.take(self._rec_flat, q[:, None] * 256 + xb[np.repeat(pv, nq)])
            dense = xs @ self._wsl_rec  # (n_eval, kc)
            first, need = rstart[pe], nq[pe]
            for j in range(ncomp):
                has = j < need
                comp[has, j] = dense[first[has] + j, ek[has]]
        else:
            width, per = self._rec_width, self._rec_per
            step = max(1, self._SPARSE_CHUNK // max(rows, 1))
            for g in range(groups):
                digits = min(per, ncomp - g * per)
                xs = np.take(self._rec_packed[g], ps[:, None] * 256 + xb[pv])  # (pairs, rows)
                packed = np.empty(f)
                for a in range(0, f, step):
                    b = min(f, a + step)
                    packed[a:b] = np.einsum("ij,ij->i", xs[pe[a:b]], self._wsl_t64[ek[a:b]])
                t = packed.astype(np.int64)
                t += sum(1 << (width * p + width - 1) for p in range(digits))
                for p in range(digits):
                    col = comp[:, g * per + p]
                    np.right_shift(t, width * p, out=col)
                    col &= (1 << width) - 1
                    col -= 1 << (width - 1)
        dd = self._rec_dd[es]
        for j in range(ncomp):
            last -= dd[:, j] * comp[:, j]
        return out
