"""The functional datapath's data-dependent action events (`cimsim.sim.probe.Probe.action`): ADC
converts, DAC drives per input slice and crossbar pulses of a crossbar stage's MVMs, from the
values the crossbars saw. A digital stage sends none: `cimsim.hw.activity` charges its work
statically.
"""

from __future__ import annotations

import numpy as np

from cimsim.energy.actions import Action, Component
from cimsim.functional.chip_math import GroupResult, LayerMath
from cimsim.functional.crossbar import CrossbarConfig
from cimsim.sim.probe import Probe


class Slicing:
    """Input slices of a crossbar config, as tables over an int8 input's byte (0..255):
    the pulses a row gets (|slice value| summed over the slices applied), and the slices'
    widths (the DAC drives' bits)."""

    def __init__(self, cfg: CrossbarConfig) -> None:
        self.speculative_cycles = cfg.speculative_cycles
        self.weight_slices = len(cfg.weight_slice_bits)  # type: ignore[arg-type]
        top = cfg.input_bits - 1
        byte = np.arange(256, dtype=np.int64)
        signed = np.where(byte >= 128, byte - 256, byte)

        def table(ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
            out = np.zeros(256, dtype=np.int64)
            for high, low in ranges:
                width = high - low + 1
                v = (signed >> low) & ((1 << width) - 1)
                if high == top and cfg.input_signed:  # the slice holding the sign bit is a signed number
                    v = np.where(v >= 1 << (width - 1), v - (1 << width), v)
                out += np.abs(v)
            return out

        def widths(ranges: tuple[tuple[int, int], ...]) -> dict[int, int]:
            out: dict[int, int] = {}
            for high, low in ranges:
                out[high - low + 1] = out.get(high - low + 1, 0) + 1
            return out

        spec = cfg.speculative_slice_ranges
        rec = tuple((h, lo) for h, lo, _s in cfg.recovery_slice_ranges)
        self.speculative_table, self.recovery_table = table(spec), table(rec)
        self.speculative_widths, self.recovery_widths = widths(spec), widths(rec)


def emit_mvm(probe: Probe, sl: Slicing, policy: str, adc_bits: int, image: int, layer: str, math: LayerMath,
             res: GroupResult, win: np.ndarray) -> None:
    """Action events of windows `win` of `image` through `layer`'s crossbars (`res` their result):
    ADC converts, DAC drives per input slice and crossbar pulses, job by job (a job drives only
    the rows of its channels)."""
    act = probe.action
    rec = res.recovery_converts if policy != "off" else 0
    act(image, layer, Component.ADC, Action.CONVERT, adc_bits, res.adc_converts - rec, False)
    if rec:
        act(image, layer, Component.ADC, Action.CONVERT, adc_bits, rec, True)
    base_widths = sl.recovery_widths if policy == "off" else sl.speculative_widths
    base_table = sl.recovery_table if policy == "off" else sl.speculative_table
    n = win.shape[0]
    base_pulses = rec_pulses = 0
    for job in range(math.jobs):
        u = np.ascontiguousarray(math.job_windows(win, job), dtype=np.int8).view(np.uint8)
        if policy == "off":
            recovered, mask = 0, None
        else:
            mask = (res.job_cycles[job] > sl.speculative_cycles) if policy == "on_failure" else None
            recovered = n if mask is None else int(mask.sum())
        for rs, _cs, xbar in math.job_parts[job]:
            sub = u[:, rs]
            rows = sub.shape[1] if math.jobs == 1 else int(np.count_nonzero(math.row_mask[job, rs]))
            dcols = xbar.physical_columns  # the columns x the layer's weight slices
            hist = np.bincount(sub.ravel(), minlength=256)  # how often each input byte occurs
            base_pulses += int(hist @ base_table) * dcols
            if recovered:
                rec_hist = hist if mask is None else np.bincount(sub[mask].ravel(), minlength=256)
                rec_pulses += int(rec_hist @ sl.recovery_table) * dcols
            for width, k in base_widths.items():
                act(image, layer, Component.DAC, Action.DRIVE, width, k * rows * n, False)
            if recovered:
                for width, k in sl.recovery_widths.items():
                    act(image, layer, Component.DAC, Action.DRIVE, width, k * rows * recovered, True)
    act(image, layer, Component.CROSSBAR, Action.PULSE, 0, base_pulses, False)
    if rec_pulses:
        act(image, layer, Component.CROSSBAR, Action.PULSE, 0, rec_pulses, True)


__all__ = ["Slicing", "emit_mvm"]
