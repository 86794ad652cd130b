"""The `functional` section of a run's summary from its datapath (`cimsim.hw.datapath`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cimsim.functional.crossbar import COUNTERS
from cimsim.functional.options import options_summary

if TYPE_CHECKING:
    from cimsim.hw.datapath import Datapath


def datapath_summary(dp: Datapath) -> dict[str, Any]:
    """Counters per layer and overall, speculation success, converts, reference match."""
    layers: dict[str, dict[str, Any]] = {}
    total = dict.fromkeys(COUNTERS, 0)
    for name, c in dp.counters.items():
        layers[name] = dict(c)
        for k, v in c.items():
            total[k] += v
        layers[name]["speculation_success"] = speculation_success(c)
        layers[name]["adc_converts_per_column"] = converts_per_column(c)
    out: dict[str, Any] = {
        "enabled": True,
        "policy": dp.policy,
        "reference_match": dp.mismatches == 0 and dp.outputs_checked > 0,
        "images_checked": dp.outputs_checked,
        "output_values": dp.output_values,
        "mismatching_values": dp.mismatches,
        "max_abs_error": dp.max_abs_error,
        "saturations_accepted": total["saturations_accepted"],
        "speculation_success": speculation_success(total),
        "adc_converts_per_column": converts_per_column(total),
        "recovery_only_converts_per_column": 8,
        "totals": total,
        "layers": layers,
    }
    if dp.pcm:
        out["crossbar"] = "pcm_pwm"
        out["recovery_only_converts_per_column"] = 1
    if dp.noisy:  # the mismatch statistics above are the result, not a failure
        out["noise"] = noise_summary(dp)
    if dp.agreement is not None:
        out["onnx_agreement"] = dp.agreement.summary()
    if dp.accuracy is not None:
        out["accuracy"] = dp.accuracy.summary()
    out.update(options_summary(dp))
    return out


def noise_summary(dp: Datapath) -> dict[str, Any]:
    """The noise model's parameters and the reference agreement it left (noisy runs only)."""
    mism = dp.mismatches / dp.output_values if dp.output_values else None
    return {"mismatch_fraction": None if mism is None else round(mism, 6),
            "mean_abs_error": None if not dp.output_values else round(dp.abs_error_sum / dp.output_values, 6),
            "max_abs_error": dp.max_abs_error,
            "relative_rms_error": None if not dp.sq_ref_sum else round(float(np.sqrt(dp.sq_error_sum / dp.sq_ref_sum)), 6),
            "top1_agreement": None if not dp.outputs_checked else round(dp.top1_agree / dp.outputs_checked, 6),
            **dp.noise_params}


def speculation_success(c: dict[str, int]) -> float | None:
    """Fraction of speculative column conversions that did not saturate."""
    conv = c.get("speculative_converts", 0)
    return None if not conv else round(1 - c.get("failed_slices", 0) / conv, 5)


def converts_per_column(c: dict[str, int]) -> float | None:
    cols = c.get("column_mvms", 0)
    return None if not cols else round(c.get("adc_converts", 0) / cols, 4)


__all__ = ["converts_per_column", "datapath_summary", "noise_summary", "speculation_success"]
