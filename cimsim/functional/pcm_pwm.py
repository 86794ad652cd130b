"""Dazzi et al. 2021's crossbar: differential PCM pairs driven by PWM read pulses, one pass per MVM.

Dazzi 2021 section 3.2: each weight is a differential pair of PCM devices; a pulse-width
modulator turns each 8-bit signed input into a read pulse (0.2 V read, average device
conductance 2.5 uS); the column currents are integrated and converted by an ADC. Model:

* **Weights.** int8 ``w`` is the pair ``G+ = max(w, 0) / 128 * G_max``, ``G- = max(-w, 0) /
  128 * G_max``, so the column current is proportional to ``sum_i x_i w_i`` (G_max cancels;
  Dazzi's 2.5 uS average is ~ mean |w| / 128 of a 25 uS G_max for our Laplacian weights).
* **Inputs.** The sign of ``x`` selects the read-voltage polarity, ``|x|`` (<= 128) the pulse
  width in PWM steps: one analog pass integrates the whole product (not bit slices). The
  integration window is the longest pulse, 2**(input_bits-1) = 128 steps, whatever the data,
  so an MVM takes ``ceil(128 / functional.pwm_steps_per_cycle)`` clock cycles.
* **ADC.** One signed ``adc_bits`` conversion per column and MVM. Its full scale is set to the
  array's largest possible column sum (128 * max_j sum_i |w_ij|): the LSB is ``2**s`` product
  units with ``s = max(0, bits needed - adc_bits)``, so nothing clips without noise and an ADC of
  enough bits (s = 0) makes the MVM exact.
* **PCM device model** (``noise.pcm``; `cimsim.config.schema.NoiseConfig` for the cited
  parameters, external: Nandakumar et al. 2019, Joshi et al. 2020 Nat. Commun. 11:2473, as in IBM
  aihwkit's PCMLikeNoiseModel): each device is programmed to its target with Gaussian error
  (``sigma(g) = pcm_program_sigma * p(g) / p(1)``, ``p(g) = 0.26348 + 1.9650 g - 1.1731 g**2``,
  clipped at 0), drifts as ``(t / t0)**-nu`` (``nu ~ |N(pcm_drift_nu, pcm_drift_nu_sigma)|`` per
  device, ``t = time_since_program_s + t0``, ``t0 = 20 s``) and carries the 1/f read noise
  accumulated by then (relative ``min(Q_s / g**0.65, 0.2) * sqrt(ln((t + t_read) / (2 t_read)))``),
  drawn once per device, as the aihwkit model does for an inference at time t; global drift
  compensation divides by the array's conductance ratio (drifted / programmed).
* **Column noise** (``noise.column_sigma`` = E): RAELLA's ``E * sqrt(N+ + N-)`` on each column
  sum, in product units, before the ADC, drawn per MVM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cimsim.functional.crossbar import MvmResult

T0_S = 20.0
"""Drift reference time t0 (s) of the fit (Joshi et al. 2020 / aihwkit)."""
T_READ_S = 250e-9
"""Read duration of the 1/f noise fit (s) (Joshi et al. 2020 / aihwkit)."""
PROG_POLY = (0.26348, 1.9650, -1.1731)
"""Programming noise standard deviation (uS at G_max = 25 uS) as a polynomial in g = G / G_max."""
INPUT_BITS = 8
"""Bits of the signed PWM input."""


@dataclass(frozen=True)
class PcmConfig:
    """ADC and device parameters of a `PcmPwmCrossbar` (module docstring; fields as in the scenario)."""

    adc_bits: int = 8
    column_sigma: float = 0.0
    pcm: bool = False
    program_sigma: float = 0.0422
    read_sigma: float = 0.0088
    drift_nu: float = 0.05
    drift_nu_sigma: float = 0.008
    time_since_program_s: float = 3600.0
    drift_compensation: bool = True

    @classmethod
    def from_scenario(cls, functional: Any, noise: Any) -> PcmConfig:
        """From a scenario's ``[functional]`` and ``[noise]`` sections."""
        return cls(functional.adc_bits, noise.column_sigma, noise.pcm, noise.pcm_program_sigma,
                   noise.pcm_read_sigma, noise.pcm_drift_nu, noise.pcm_drift_nu_sigma,
                   noise.time_since_program_s, noise.pcm_drift_compensation)

    @property
    def adc_range(self) -> tuple[int, int]:
        """Signed ADC output codes (min, max)."""
        return -(1 << (self.adc_bits - 1)), (1 << (self.adc_bits - 1)) - 1


def mvm_clock_cycles(pwm_steps_per_cycle: int) -> int:
    """Clock cycles of one PWM MVM: the 2**7-step integration window at ``pwm_steps_per_cycle``."""
    return -(-(1 << (INPUT_BITS - 1)) // pwm_steps_per_cycle)


def program(g: np.ndarray, cfg: PcmConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Programmed and inference-time conductances (fractions of G_max) of targets ``g``."""
    p = PROG_POLY
    shape = (p[0] + p[1] * g + p[2] * g * g) / sum(p)
    gp = np.maximum(g + cfg.program_sigma * shape * rng.standard_normal(g.shape), 0.0)
    t = cfg.time_since_program_s + T0_S
    nu = np.abs(cfg.drift_nu + cfg.drift_nu_sigma * rng.standard_normal(g.shape))
    gd = gp * (t / T0_S) ** -nu
    q = np.minimum(cfg.read_sigma / np.maximum(gp**0.65, 1e-3), 0.2)
    sig = q * np.sqrt(np.log((t + T_READ_S) / (2 * T_READ_S)))
    gf = np.maximum(gd + np.abs(gd) * sig * rng.standard_normal(g.shape), 0.0)
    return gp, gf


class PcmPwmCrossbar:
    """One PCM/PWM crossbar programmed with an int8 ``matrix`` (module docstring)."""

    def __init__(self, matrix: np.ndarray, config: PcmConfig, rng: np.random.Generator):
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.integer):
            raise ValueError(f"crossbar matrix must be a 2-D int8 array, got {matrix.dtype} {matrix.shape}")
        self.config, self.rng = config, rng
        self.matrix = matrix.astype(np.int64)
        self.rows, self.cols = matrix.shape
        self.physical_columns = self.cols
        worst = int(np.abs(self.matrix).sum(axis=0).max(initial=0)) << (INPUT_BITS - 1)
        self.adc_shift = max(0, worst.bit_length() + 1 - config.adc_bits)
        """log2 of the ADC's LSB in product units (0: every column sum is converted exactly)."""
        self._abs = np.abs(self.matrix).astype(np.float64)
        self.weights: np.ndarray | None = None
        """Effective weights (product units) of the programmed, drifted devices; None: ideal devices."""
        if config.pcm:
            scale = float(1 << (INPUT_BITS - 1))
            pos, neg = np.maximum(self.matrix, 0) / scale, np.maximum(-self.matrix, 0) / scale
            gp_pos, gf_pos = program(pos, config, rng)
            gp_neg, gf_neg = program(neg, config, rng)
            ratio = 1.0
            if config.drift_compensation and (gp_pos.sum() + gp_neg.sum()) > 0:
                ratio = float((gf_pos.sum() + gf_neg.sum()) / (gp_pos.sum() + gp_neg.sum()))
            self.weights = (gf_pos - gf_neg) * scale / (ratio or 1.0)

    def mvm(self, x: np.ndarray) -> MvmResult:
        """One PWM pass of int8 ``x`` (rows,) or (n, rows): values int32, one crossbar cycle."""
        x = np.asarray(x)
        single = x.ndim == 1
        x2 = x[None, :] if single else x
        if x2.ndim != 2 or x2.shape[1] != self.rows:
            raise ValueError(f"input must have shape ({self.rows},) or (n, {self.rows}), got {x.shape}")
        cfg = self.config
        n = x2.shape[0]
        xi = x2.astype(np.int64)
        if self.weights is None and cfg.column_sigma <= 0:
            analog = (xi @ self.matrix).astype(np.float64)
        else:
            xf = xi.astype(np.float64)
            analog = xf @ (self.weights if self.weights is not None else self.matrix.astype(np.float64))
            if cfg.column_sigma > 0:
                mag = np.abs(xf) @ self._abs
                analog = analog + cfg.column_sigma * np.sqrt(mag) * self.rng.standard_normal(analog.shape)
        lo, hi = cfg.adc_range
        code = np.rint(analog / float(1 << self.adc_shift))
        sat = (code <= lo) | (code >= hi)
        clip = (code < lo) | (code > hi)
        values = (np.clip(code, lo, hi).astype(np.int64) << self.adc_shift)
        values = np.clip(values, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        if single:
            values, clip = values[0], clip[0]
        return MvmResult(
            values=values, crossbar_cycles=1 if n else 0, speculative_slices=0, recovery_slices=0,
            failed_columns=0, adc_converts=n * self.cols, saturations_accepted=int(sat.sum()),
            clipped_converts=int(clip.sum()), column_mvms=n * self.cols, mvms=n,
            cycles=np.ones(n, dtype=np.int64), clipped_mask=np.asarray(clip),
        )
