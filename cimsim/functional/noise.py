"""Analog column-sum noise (RAELLA thesis 7.3) on the bit-sliced crossbar, and the crossbar factory.

RAELLA 7.3 models variation and noise as a Gaussian added to every analog column sum: for a
column sum with positive and negative sliced-product sums ``N+`` and ``N-`` the converted
value is drawn from ``N(N+ - N-, (E * sqrt(N+ + N-))**2)`` for a noise level ``E``
(`cimsim.config.schema.NoiseConfig.column_sigma`; the thesis tests up to 12 %), then
rounded and saturated by the ADC. `NoisyCrossbar` is a `Crossbar` whose `mvm` evaluates
every conversion the literal way (as `cimsim.functional.crossbar_reference.mvm_explicit`),
each speculative and recovery conversion with its own independent draw, so speculation
decisions see the noisy sums. ``N+ + N-`` of a (device column, input slice) is
``|input slice| @ |weight slice|``.

Random draws: every crossbar has its own numpy Generator seeded from (run.seed, layer index,
crossbar index) (`crossbar_factory`); draws are consumed in call order, so the same scenario
and seed give the same results (the batched and per_group modes draw in different orders and
give different, equally distributed, noise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from cimsim.functional.crossbar import Crossbar, CrossbarConfig, MvmResult
from cimsim.functional.pcm_pwm import PcmConfig, PcmPwmCrossbar

if TYPE_CHECKING:
    from cimsim.config.schema import Scenario

NOISE_STREAM = 16
"""Second word of every noise Generator's seed (keeps noise streams apart from weights and images)."""


def add_column_noise(sums: np.ndarray, magnitudes: np.ndarray, sigma: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Column sums plus RAELLA's Gaussian noise: ``sums + sigma * sqrt(magnitudes) * N(0, 1)``
    (``magnitudes`` = N+ + N-, same shape as ``sums``; float64, before the ADC rounds)."""
    sums = np.asarray(sums, dtype=np.float64)
    if sigma <= 0:
        return sums
    return sums + sigma * np.sqrt(np.asarray(magnitudes, dtype=np.float64)) * rng.standard_normal(sums.shape)


class NoisyCrossbar(Crossbar):
    """A `Crossbar` whose column sums carry RAELLA 7.3's noise of level ``sigma`` (module docstring)."""

    def __init__(self, matrix: np.ndarray, config: CrossbarConfig, sigma: float, rng: np.random.Generator):
        super().__init__(matrix, config)
        self.sigma = float(sigma)
        self.rng = rng
        self._w64 = self._wsl.astype(np.float64)
        self._wabs = np.abs(self._w64)

    def _noisy(self, table: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """ADC inputs (slices, n, device columns): rounded noisy analog sums of every slice of ``table``."""
        t64 = table.astype(np.float64)
        an = self._slice_sums(t64, self._w64, xb)
        mag = self._slice_sums(np.abs(t64), self._wabs, xb)
        return np.rint(add_column_noise(an, mag, self.sigma, self.rng))

    def mvm(self, x: np.ndarray) -> MvmResult:
        """Like `Crossbar.mvm`, with every conversion noisy (counters count the noisy conversions)."""
        cfg = self.config
        x2, single = self._check_input(x)
        n, kc, cols = x2.shape[0], self.physical_columns, self.cols
        lo, hi = cfg.adc_range
        xb = self._low_bytes(x2)
        n_rec, n_spec = len(self._d_rec), len(self._d_spec)
        r = self._noisy(self._rec_table, xb)  # (n_rec, n, kc)
        rec_sat, rec_clip = (r <= lo) | (r >= hi), (r < lo) | (r > hi)
        rec_val = np.clip(r, lo, hi) * self._d_rec[:, None, None]
        if cfg.policy == "off":
            colval = rec_val.sum(axis=0)
            used_sat, used_clip = rec_sat, rec_clip
            spec_conv, rec_conv = 0, n * n_rec * kc
            failed_cols = failed_slices = recovery_mvms = 0
            cycles: np.ndarray = np.full(n, n_rec, dtype=np.int64)
            spec_slices = 0
        else:
            s = self._noisy(self._spec_table, xb)  # (n_spec, n, kc)
            fail = (s <= lo) | (s >= hi)
            spec_val = np.clip(s, lo, hi) * self._d_spec[:, None, None]
            failed_any: np.ndarray = np.asarray(fail.any(axis=0))  # (n, kc)
            if cfg.recovery == "slice":
                rsum = (self._owner_onehot.astype(np.float64) @ rec_val.reshape(n_rec, -1)).reshape(n_spec, n, kc)
                colval = np.where(fail, rsum, spec_val).sum(axis=0)
                active = fail[self._owner]
                rec_conv = int((fail.sum(axis=(1, 2)) * self._chunks).sum())
            else:
                colval = np.where(failed_any, rec_val.sum(axis=0), spec_val.sum(axis=0))
                active = np.broadcast_to(failed_any[None], r.shape)
                rec_conv = int(failed_any.sum()) * n_rec
            used_sat, used_clip = rec_sat & active, rec_clip & active
            spec_conv = n * n_spec * kc
            failed_cols, failed_slices = int(failed_any.sum()), int(fail.sum())
            vec_failed = failed_any.any(axis=1)
            recovery_mvms = int(vec_failed.sum())
            if cfg.policy == "always":
                cycles = np.full(n, n_spec + n_rec, dtype=np.int64)
            else:
                cycles = np.asarray(n_spec + n_rec * vec_failed.astype(np.int64), dtype=np.int64)
            spec_slices = n * n_spec
        k = len(self._wdig)
        cv = np.rint(colval).astype(np.int64).reshape(n, k, cols)
        values = (cv * self._wdig[None, :, None]).sum(axis=1)
        values += self._centers64[None, :] * x2.astype(np.int64).sum(axis=1, keepdims=True)
        values = np.clip(values, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        clipped_mask = np.asarray(used_clip.any(axis=0).reshape(n, k, cols).any(axis=1))
        if single:
            values, clipped_mask = values[0], clipped_mask[0]
        return MvmResult(
            values=values, crossbar_cycles=int(cycles.max()) if n else 0, speculative_slices=spec_slices,
            recovery_slices=int(cycles.sum()) - spec_slices, failed_columns=failed_cols,
            adc_converts=spec_conv + rec_conv, saturations_accepted=int(used_sat.sum()),
            failed_slices=failed_slices, speculative_converts=spec_conv, recovery_converts=rec_conv,
            clipped_converts=int(used_clip.sum()), column_mvms=n * kc, mvms=n, recovery_mvms=recovery_mvms,
            cycles=cycles, clipped_mask=clipped_mask,
        )


CrossbarFactory = Callable[[np.ndarray, CrossbarConfig], Any]
"""Makes one programmed crossbar (an object with ``mvm(x) -> MvmResult``) from its int8 matrix."""


def crossbar_rngs(seed: int, stream: int, layer_index: int) -> Callable[[], np.random.Generator]:
    """Generator after Generator for the crossbars of layer number ``layer_index``, in the order they
    are made: crossbar k's is seeded (seed, stream, layer_index, k)."""
    count = [0]

    def rng() -> np.random.Generator:
        count[0] += 1
        return np.random.default_rng([seed, stream, layer_index, count[0]])

    return rng


def column_noise_factory(sigma: float, rng: Callable[[], np.random.Generator]) -> CrossbarFactory:
    """`NoisyCrossbar`s of RAELLA's column noise E = ``sigma``, each drawing from the next ``rng()``."""
    return lambda matrix, config: NoisyCrossbar(matrix, config, sigma, rng())


def crossbar_factory(scenario: Scenario, layer_index: int) -> CrossbarFactory | None:
    """The crossbars of layer number ``layer_index`` as the scenario's ``functional.crossbar``
    and ``[noise]`` make them; None: the plain noiseless `Crossbar` (the default)."""
    fcfg, noise = scenario.functional, scenario.noise
    rng = crossbar_rngs(scenario.run.seed, NOISE_STREAM, layer_index)
    if fcfg.crossbar == "pcm_pwm":
        pcfg = PcmConfig.from_scenario(fcfg, noise)
        return lambda matrix, config: PcmPwmCrossbar(matrix, pcfg, rng())
    if noise.column_sigma <= 0:
        return None
    return column_noise_factory(noise.column_sigma, rng)


def noisy(scenario: Scenario) -> bool:
    """Whether the scenario's functional crossbars are noisy (outputs need not match the reference)."""
    noise = scenario.noise
    return noise.column_sigma > 0 or (scenario.functional.crossbar == "pcm_pwm" and noise.pcm)
