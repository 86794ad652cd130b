"""RAELLA-style bit-sliced analog crossbar arithmetic with speculation and recovery.

Model (Andrulis, RAELLA thesis 2023; section numbers refer to it) in four modules:
this one holds `Crossbar` with its fast `mvm`, `MvmResult` and `COUNTERS`
(`CrossbarConfig` lives in `cimsim.functional.crossbar_config`, importable from here); `cimsim.functional.centers` the weight encoding (Center+Offset centers
`optimal_centers`, `weight_slices`, the float64 packing `_Packing`);
`cimsim.functional.crossbar_recovery` the recovery sums of single failed entries
(`_EntryRecovery`, a mixin of `Crossbar`); `cimsim.functional.crossbar_reference`
the slow, literal `mvm_explicit`. `optimal_centers` and `weight_slices` are
importable from here as before.

**Weights** (4.1, 4.2; details in the `cimsim.functional.centers` docstring). A
column ``j`` of the int8 matrix is stored as a digital center ``phi_j`` plus
signed offsets ``w_ij - phi_j`` in 2T2R pairs; ``weight_encoding="center_offset"``
picks ``phi_j`` by Eq. 4.2, ``"differential"`` uses ``phi = 0``, ``"offset"`` (ISAAC's
unsigned weights) ``phi = -128``. The 8-bit offset
magnitude is cut into weight slices (default ``weight_slice_bits=(4, 2, 2)``),
one device column each, so a crossbar of ``cols`` logical columns uses
``cols * len(weight_slice_bits)`` device columns (RAELLA 5.1: 2-8 columns per filter).

**Inputs** (4.3). int8 inputs are two's complement: the sign bit has weight
``-2**(input_bits-1)``, so the slice that holds it is a signed number of its
width (a 4b MSB slice is in [-8, 7]; a 1b sign slice in {-1, 0}), which
assumes a bipolar DAC for negative inputs; ReLU activations are >= 0, so this is
plain unsigned slicing for them. ``input_signed=False`` takes unsigned magnitudes
(0..255): RAELLA's positive / negative passes (6.1), `cimsim.functional.encoding`.

**ADC** (3.1, 4.3). Each (device column, input slice) analog sum is converted by
a signed ``adc_bits`` ADC capturing the LSBs, range ``[-2**(b-1), 2**(b-1)-1]``
(default [-64, 63]); larger sums are clipped. A conversion *saturates* when its
output equals a bound, exactly how the hardware detects it (4.3: "If an ADC output
equals either of these bounds, an error is detected").

**Speculation and recovery** (3.4, 4.3, 5.1). ``policy="always"``/``"on_failure"``:
the speculative input slices (default 4b, 2b, 2b, high-order first) are applied
and every device column is converted; a saturated conversion marks the column's
success flag for that slice as failed and its value is discarded. Each
speculative slice is then *resliced* into ``recovery_slice_bits``-bit recovery
slices (default 1b: 4 + 2 + 2 = 8 recovery slices) and applied again; the ADC
converts only the columns that failed. With ``recovery="slice"`` (default; 4.3.2:
"2-4 recovery converts depending on which speculative slice failed") a column
re-converts only the recovery slices of the speculative slices it failed; with
``recovery="column"`` a column that failed any speculative slice discards all its
speculative results and converts all 8 recovery slices. Saturation in recovery
is accepted: the clipped value is used and counted. ``policy="off"`` is RAELLA
without speculation: the 8 recovery slices alone, every column converted.

Crossbar cycles per MVM (input slices applied): ``off`` 8; ``always`` 3 + 8 = 11
(RAELLA's policy: all columns share the crossbar, 4.3.1); ``on_failure`` 3, or 11
if any device column of that MVM failed.

The result equals the exact ``x @ matrix`` whenever no accepted (recovery or
``off``) conversion was clipped; ``clipped_mask`` marks the outputs where one was.

Implementation: analog sums are float products of small integers, exact while
every partial sum stays below 2**24 (float32) or 2**53 (float64). `mvm` takes
one product of the speculative input slices (looked up from the inputs' low
bytes) with the sliced weights, the exact ``x @ matrix`` for the values, and
recovery sums only for the failed entries: the last recovery slice of a
speculative slice follows from the others and the speculative sum, the others
come from one product over the (slice, vector) pairs that need them or, when
failures are sparse, one dot product per entry with the recovery slices packed
into a float64 word (`_Packing`; `cimsim.functional.crossbar_recovery`); small
batches evaluate every recovery sum.
`mvm_explicit` (in `cimsim.functional.crossbar_reference`) takes one product
of the 8 input bit-planes with the sliced weights and forms every slice sum
from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cimsim.functional.centers import encoding_centers, weight_slices
from cimsim.functional.centers import optimal_centers as optimal_centers  # re-exported (module docstring)
from cimsim.functional.crossbar_config import ENCODINGS as ENCODINGS  # re-exported
from cimsim.functional.crossbar_config import POLICIES as POLICIES
from cimsim.functional.crossbar_config import RECOVERY_MODES as RECOVERY_MODES
from cimsim.functional.crossbar_config import WEIGHT_MAGNITUDE_BITS as WEIGHT_MAGNITUDE_BITS
from cimsim.functional.crossbar_config import CrossbarConfig as CrossbarConfig
from cimsim.functional.crossbar_config import slice_ranges as slice_ranges
from cimsim.functional.crossbar_recovery import _EntryRecovery

COUNTERS = (
    "speculative_slices",
    "recovery_slices",
    "failed_columns",
    "failed_slices",
    "adc_converts",
    "speculative_converts",
    "recovery_converts",
    "saturations_accepted",
    "clipped_converts",
    "column_mvms",
    "mvms",
    "recovery_mvms",
)
"""Integer counters of an `MvmResult` (summed over its vectors)."""


@dataclass(frozen=True, eq=False)
class MvmResult:
    """Result of `Crossbar.mvm` for one vector or a batch of ``n`` vectors.

    ``values``: int32 (cols,) or (n, cols), assembled from ADC outputs.
    ``crossbar_cycles``: input slices applied for one MVM (off 8, always 11,
    on_failure 3 or 11); for a batch, the max over vectors, i.e. the cycles when
    the vectors are applied together (kernel replicas of one group); ``cycles``
    has the per-vector counts (sum it for back-to-back MVMs).
    Counters (sums over vectors): ``speculative_slices`` / ``recovery_slices``
    applied; ``failed_columns`` device columns that failed >= 1 speculative
    slice; ``failed_slices`` failed (device column, speculative slice) sums;
    ``adc_converts`` = ``speculative_converts + recovery_converts``;
    ``saturations_accepted`` accepted conversions whose output sat at an ADC
    bound; ``clipped_converts`` those whose analog sum was truly out of range
    (the result is then not exact); ``column_mvms`` = vectors x device columns.
    ``mvms`` = vectors; ``recovery_mvms`` vectors with >= 1 failed column
    (they need the recovery slices; 0 with policy off).
    ``clipped_mask`` bool like ``values``: outputs to which a clipped conversion
    contributed (everywhere else ``values`` is exact).
    """

    values: np.ndarray
    crossbar_cycles: int
    speculative_slices: int
    recovery_slices: int
    failed_columns: int
    adc_converts: int
    saturations_accepted: int
    failed_slices: int = 0
    speculative_converts: int = 0
    recovery_converts: int = 0
    clipped_converts: int = 0
    column_mvms: int = 0
    mvms: int = 0
    recovery_mvms: int = 0
    cycles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    clipped_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def counters(self) -> dict[str, int]:
        """The integer counters as a dict (names in `COUNTERS`)."""
        return {name: int(getattr(self, name)) for name in COUNTERS}


def _input_slice_table(ranges, input_bits: int, signed: bool = True) -> np.ndarray:
    """T[i, u]: value of input slice ``ranges[i] = (high, low, ...)`` of the input whose
    low byte is ``u`` (two's complement: the slice holding bit ``input_bits - 1`` is signed;
    ``signed=False``: every slice is unsigned)."""
    u = np.arange(256, dtype=np.int64)
    x = np.where(u >= 128, u - 256, u) if signed else u
    out = np.empty((len(ranges), 256), dtype=np.int64)
    for i, rng in enumerate(ranges):
        high, low = rng[0], rng[1]
        top = signed and high == input_bits - 1
        out[i] = x >> low if top else (x >> low) & ((1 << (high - low + 1)) - 1)
    return out


class Crossbar(_EntryRecovery):
    """One crossbar programmed with an int8 ``matrix`` (rows <= config.rows, cols <= config.cols)."""

    _SPARSE_CHUNK = 1 << 16
    """Elements gathered at once when recovery sums are computed entry by entry."""
    _DENSE_RATIO = 12
    """Recovery sums go dense when (recovery slices to evaluate) * device columns <= entries * this."""
    _SMALL_BATCH = 1 << 21
    """Batches with at most this many recovery multiply-adds (n * recovery slices * device
    columns * rows) evaluate every recovery sum at once."""

    def __init__(self, matrix: np.ndarray, config: CrossbarConfig):
        matrix = np.asarray(matrix)
        if matrix.ndim != 2:
            raise ValueError(f"crossbar matrix must be 2-D, got shape {matrix.shape}")
        if not np.issubdtype(matrix.dtype, np.integer) or (
            matrix.size and (matrix.min() < -128 or matrix.max() > 127)
        ):
            raise ValueError(f"crossbar matrix must hold int8 values, got {matrix.dtype}")
        rows, cols = matrix.shape
        if rows > config.rows or cols > config.cols:
            raise ValueError(
                f"matrix {rows} x {cols} does not fit a {config.rows} x {config.cols} crossbar"
            )
        self.config = config
        self.matrix = matrix.astype(np.int8)
        self.rows, self.cols = rows, cols
        wranges = config.weight_slice_ranges
        self.centers = encoding_centers(self.matrix, wranges, config.weight_encoding)
        offsets = self.matrix.astype(np.int16) - self.centers[None, :]
        self.offset_slices = np.stack(weight_slices(offsets, wranges))  # (K, rows, cols)
        k = len(wranges)
        self.physical_columns = k * cols
        # device columns ordered slice-major: index s * cols + j
        self._wsl = np.ascontiguousarray(self.offset_slices.transpose(1, 0, 2).reshape(rows, k * cols)).astype(
            np.float32
        )
        self._wdig = np.array([1 << low for _, low in wranges], dtype=np.int64)
        self._centers64 = self.centers.astype(np.int64)

        ib = config.input_bits
        sign = np.ones(ib)
        if config.input_signed:
            sign[0] = -1.0  # two's-complement sign bit

        def slice_matrix(ranges):
            a = np.zeros((len(ranges), ib), dtype=np.float32)
            d = np.zeros(len(ranges), dtype=np.float32)
            for i, rng in enumerate(ranges):
                high, low = rng[0], rng[1]
                for b in range(low, high + 1):
                    a[i, ib - 1 - b] = sign[ib - 1 - b] * 2.0 ** (b - low)
                d[i] = 2.0**low
            return a, d

        spec = config.speculative_slice_ranges
        rec = config.recovery_slice_ranges
        self._a_spec, self._d_spec = slice_matrix(spec)
        self._a_rec, self._d_rec = slice_matrix(rec)
        self._rec_identity = len(rec) == ib  # 1-bit recovery slices
        self._owner = np.array([o for _, _, o in rec], dtype=np.intp)
        self._owner_onehot = np.zeros((len(spec), len(rec)), dtype=np.float32)
        self._owner_onehot[self._owner, np.arange(len(rec))] = 1.0
        self._chunks = self._owner_onehot.sum(axis=1).astype(np.int64)  # recovery slices per spec slice
        self._chunk_start = np.cumsum(self._chunks) - self._chunks  # first recovery slice of each
        self._d_rec_int = self._d_rec.astype(np.int64)

        # ---- fast path (`mvm`): input slices by table look-up of the inputs' low bytes,
        # float32 products wherever every sum stays exact (below 2**24), else float64
        wmax = [(1 << (high - low + 1)) - 1 for high, low in wranges]
        spec_in = _input_slice_table(spec, ib, config.input_signed)  # (n_spec, 256) slice values by low byte
        rec_in = _input_slice_table(rec, ib, config.input_signed)
        smax, rmax = int(np.abs(spec_in).max()), int(np.abs(rec_in).max())

        def exact_type(bound: int):
            return np.float32 if bound < (1 << 24) else np.float64

        self._spec_table = spec_in.astype(exact_type(rows * max(wmax) * smax))
        self._rec_table = rec_in.astype(exact_type(rows * max(wmax) * rmax))
        self._wsl_spec = self._wsl.astype(self._spec_table.dtype)
        self._wsl_rec = self._wsl.astype(self._rec_table.dtype)
        # float32 products are exact while rows * max|input| * 128 < 2**24
        in_max = (1 << (ib - 1)) if config.input_signed else (1 << ib) - 1
        self._exact = self.matrix.astype(exact_type(rows * in_max * 128))
        self._rec_to_spec = np.zeros((len(spec), len(rec)))  # S_s = sum_q 2**(low_q - low_s) * R_q
        self._rec_to_spec[self._owner, np.arange(len(rec))] = self._d_rec_int >> np.array([spec[o][1] for o in self._owner])
        # recovery of single failed entries (`cimsim.functional.crossbar_recovery`)
        self._init_entry_recovery(spec, rec_in, rows * max(wmax) * rmax)

    def _check_input(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(x)
        single = x.ndim == 1
        x2 = x[None, :] if single else x
        if x2.ndim != 2 or x2.shape[1] != self.rows:
            raise ValueError(f"input must have shape ({self.rows},) or (n, {self.rows}), got {x.shape}")
        if not np.issubdtype(x2.dtype, np.integer):
            raise ValueError(f"input must be an integer array, got {x2.dtype}")
        half = 1 << (self.config.input_bits - 1)
        if not self.config.input_signed:
            if x2.size and (x2.min() < 0 or x2.max() >= 2 * half):
                raise ValueError(f"input values must fit {self.config.input_bits}-bit unsigned")
        elif x2.size and not (x2.dtype == np.int8 and half == 128) and (x2.min() < -half or x2.max() >= half):
            raise ValueError(f"input values must fit {self.config.input_bits}-bit two's complement")
        return x2, single

    @staticmethod
    def _low_bytes(x2: np.ndarray) -> np.ndarray:
        if x2.dtype == np.int8:
            return x2.view(np.uint8)
        return (x2 & 0xFF).astype(np.uint8)

    def _slice_sums(self, table: np.ndarray, weights: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """Analog sums (slices, n, device columns) of every input slice of ``table`` (exact floats)."""
        ns, n = table.shape[0], xb.shape[0]
        xs = np.take(table, xb, axis=1).reshape(ns * n, self.rows)
        return (xs @ weights).reshape(ns, n, self.physical_columns)

    def mvm(self, x: np.ndarray) -> MvmResult:
        """Matrix-vector product of int8 ``x`` (rows,) or (n, rows) through the sliced analog path.

        Fast path: the shift-and-add of ADC outputs equals the exact product plus,
        for every accepted conversion that clipped, (clipped - analog) times its
        digital weight. Evaluated: the exact product, the speculative sums (one
        product of the input slices with the sliced weights), and the recovery
        sums only of the (vector, speculative slice, device column) entries that
        need them (``policy="off"``: every recovery sum). `mvm_explicit`
        assembles every conversion and gives identical results.
        """
        cfg = self.config
        x2, single = self._check_input(x)
        n, kc, cols = x2.shape[0], self.physical_columns, self.cols
        lo, hi = cfg.adc_range
        xb = self._low_bytes(x2)
        n_rec, n_spec = len(self._d_rec), len(self._d_spec)

        if cfg.policy == "off":
            r_an = self._slice_sums(self._rec_table, self._wsl_rec, xb)  # (n_rec, n, kc)
            sat = int(np.count_nonzero(r_an >= hi)) + int(np.count_nonzero(r_an <= lo))
            idx = np.flatnonzero((r_an > hi) | (r_an < lo))
            cq, cv, ck = np.unravel_index(idx, r_an.shape)
            analog = r_an.reshape(-1)[idx].astype(np.int64)
            spec_conv, rec_conv = 0, n * n_rec * kc
            failed_cols = failed_slices = 0
            spec_slices, rec_slices = 0, n * n_rec
            cycles = np.full(n, n_rec, dtype=np.int64)
            recovery_mvms = 0
        else:
            small = n * n_rec * kc * self.rows <= self._SMALL_BATCH
            if small:  # every recovery sum in one product; the speculative sums follow from them
                r_an = self._slice_sums(self._rec_table, self._wsl_rec, xb)  # (n_rec, n, kc)
                s_an = (self._rec_to_spec @ r_an.reshape(n_rec, n * kc)).reshape(n_spec, n, kc)
            else:
                s_an = self._slice_sums(self._spec_table, self._wsl_spec, xb)  # (n_spec, n, kc)
            fail = (s_an <= lo) | (s_an >= hi)
            failed_slices = int(np.count_nonzero(fail))
            sat = failed_cols = rec_conv = 0
            cv = cq = ck = analog = np.zeros(0, dtype=np.intp)
            vec_failed = np.zeros(n, dtype=bool)
            if failed_slices:
                failed_any = fail.any(axis=0)  # (n, kc)
                failed_cols = int(np.count_nonzero(failed_any))
                vec_failed = failed_any.any(axis=1)
                if cfg.recovery == "slice":
                    idx = np.flatnonzero(fail)
                    es, ev, ek = np.unravel_index(idx, fail.shape)
                    spec_sums = s_an.reshape(-1)[idx]
                else:
                    fv, fk = np.divmod(np.flatnonzero(failed_any), kc)
                    es = np.repeat(np.arange(n_spec), len(fv))
                    ev, ek = np.tile(fv, n_spec), np.tile(fk, n_spec)
                    spec_sums = s_an[es, ev, ek]
                rec_conv = int(self._chunks[es].sum())
                if small:  # pick the needed recovery sums
                    reps = self._chunks[es]
                    first = np.repeat(np.cumsum(reps) - reps, reps)
                    av, ak = np.repeat(ev, reps), np.repeat(ek, reps)
                    aq = np.repeat(self._chunk_start[es], reps) + (np.arange(rec_conv) - first)
                    vals = r_an[aq, av, ak]
                    sat = int(np.count_nonzero(vals >= hi)) + int(np.count_nonzero(vals <= lo))
                    hit = np.flatnonzero((vals > hi) | (vals < lo))
                    if len(hit):
                        analog = vals[hit].astype(np.int64)
                        cq, ck, cv = aq[hit], ak[hit], av[hit]
                else:
                    r = self._recovery_sums(es, ev, ek, spec_sums, xb)  # unused columns hold 0
                    sat = int(np.count_nonzero(r >= hi)) + int(np.count_nonzero(r <= lo))
                    e, j = np.divmod(np.flatnonzero((r > hi) | (r < lo)), r.shape[1])
                    if len(e):
                        analog = r[e, j]
                        cq, ck, cv = self._rec_q[es[e], j], ek[e], ev[e]
            spec_conv = n * n_spec * kc
            recovery_mvms = int(np.count_nonzero(vec_failed))
            if cfg.policy == "always":
                cycles = np.full(n, n_spec + n_rec, dtype=np.int64)
            else:
                cycles = n_spec + n_rec * vec_failed.astype(np.int64)
            spec_slices, rec_slices = n * n_spec, int(cycles.sum()) - n * n_spec

        values = np.rint(x2.astype(self._exact.dtype) @ self._exact).astype(np.int64)
        clipped_mask = np.zeros((n, cols), dtype=bool)
        if len(cv):
            delta = (np.clip(analog, lo, hi) - analog) * self._d_rec_int[cq] * self._wdig[ck // cols]
            np.add.at(values, (cv, ck % cols), delta)
            clipped_mask[cv, ck % cols] = True
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
            saturations_accepted=sat,
            failed_slices=failed_slices,
            speculative_converts=spec_conv,
            recovery_converts=rec_conv,
            clipped_converts=len(cv),
            column_mvms=n * kc,
            mvms=n,
            recovery_mvms=recovery_mvms,
            cycles=cycles,
            clipped_mask=clipped_mask,
        )
