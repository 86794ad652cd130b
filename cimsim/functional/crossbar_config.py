"""The configuration of a functional crossbar (`CrossbarConfig`) and its vocabularies; the
arithmetic it configures is `cimsim.functional.crossbar` (whose docstring describes the model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimsim.errors import InputError

POLICIES = ("off", "always", "on_failure")
"""`CrossbarConfig.policy` values."""
ENCODINGS = ("differential", "center_offset", "offset")
"""`CrossbarConfig.weight_encoding` values."""
RECOVERY_MODES = ("slice", "column")
"""`CrossbarConfig.recovery` values."""
WEIGHT_MAGNITUDE_BITS = 8
"""Bits of an offset magnitude |w - phi| (<= 255 for int8 w and phi)."""


def slice_ranges(total_bits: int, widths: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Bit ranges (high, low) of slices of the given widths, high-order first."""
    out, high = [], total_bits - 1
    for width in widths:
        out.append((high, high - width + 1))
        high -= width
    return tuple(out)


@dataclass(frozen=True)
class CrossbarConfig:
    """Geometry, ADC, slicing, encoding and speculation policy of a crossbar (module docstring).

    ``rows`` x ``cols`` is the logical weight matrix capacity; each logical column
    occupies ``len(weight_slice_bits)`` device columns. ``weight_slice_bits`` is a
    tuple of widths (high-order first, summing to 8) or an int (uniform widths).
    Invalid values raise `InputError` naming the field.
    """

    rows: int
    cols: int
    adc_bits: int = 7
    input_bits: int = 8
    input_slices: tuple[int, ...] = (4, 2, 2)
    recovery_slice_bits: int = 1
    weight_encoding: str = "center_offset"
    policy: str = "always"
    weight_slice_bits: tuple[int, ...] | int = (4, 2, 2)
    recovery: str = "slice"
    input_signed: bool = True
    """Inputs are ``input_bits``-bit two's complement (True) or unsigned magnitudes
    ``0 .. 2**input_bits - 1`` (False: a pass of `cimsim.functional.encoding`'s split-sign inputs)."""

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> InputError:
            return InputError(f"crossbar config: {name} = {getattr(self, name)!r}: {problem}")

        for name in ("rows", "cols", "adc_bits", "input_bits", "recovery_slice_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise bad(name, "expected a positive integer")
        if not 2 <= self.adc_bits <= 24:
            raise bad("adc_bits", "expected 2..24")
        if self.input_bits > 8:
            raise bad("input_bits", "expected 1..8 (int8 inputs)")
        object.__setattr__(self, "input_slices", tuple(int(b) for b in self.input_slices))
        if not self.input_slices or min(self.input_slices) < 1 or sum(self.input_slices) != self.input_bits:
            raise bad("input_slices", f"expected positive widths summing to input_bits = {self.input_bits}")
        wsb = self.weight_slice_bits
        if isinstance(wsb, (int, np.integer)) and not isinstance(wsb, bool):
            if not 1 <= wsb <= WEIGHT_MAGNITUDE_BITS:
                raise bad("weight_slice_bits", "expected 1..8 bits per slice")
            full, rest = divmod(WEIGHT_MAGNITUDE_BITS, int(wsb))
            widths: tuple[int, ...] = (int(wsb),) * full + ((rest,) if rest else ())
        else:
            widths = tuple(int(b) for b in wsb)  # type: ignore[union-attr]  # a sequence of widths
        object.__setattr__(self, "weight_slice_bits", widths)
        if not widths or min(widths) < 1 or sum(widths) != WEIGHT_MAGNITUDE_BITS:
            raise bad("weight_slice_bits", f"expected positive widths summing to {WEIGHT_MAGNITUDE_BITS}")
        if self.weight_encoding not in ENCODINGS:
            raise bad("weight_encoding", f"expected one of {', '.join(ENCODINGS)}")
        if self.policy not in POLICIES:
            raise bad("policy", f"expected one of {', '.join(POLICIES)}")
        if self.recovery not in RECOVERY_MODES:
            raise bad("recovery", f"expected one of {', '.join(RECOVERY_MODES)}")

    @property
    def adc_range(self) -> tuple[int, int]:
        """Signed ADC output range (min, max), e.g. (-64, 63) for 7 bits."""
        return -(1 << (self.adc_bits - 1)), (1 << (self.adc_bits - 1)) - 1

    @property
    def speculative_slice_ranges(self) -> tuple[tuple[int, int], ...]:
        """(high, low) input bits of each speculative slice."""
        return slice_ranges(self.input_bits, self.input_slices)

    @property
    def recovery_slice_ranges(self) -> tuple[tuple[int, int, int], ...]:
        """(high, low, owning speculative slice) of each recovery slice, high-order first."""
        out = []
        for s, (high, low) in enumerate(self.speculative_slice_ranges):
            h = high
            while h >= low:
                lo = max(low, h - self.recovery_slice_bits + 1)
                out.append((h, lo, s))
                h = lo - 1
        return tuple(out)

    @property
    def weight_slice_ranges(self) -> tuple[tuple[int, int], ...]:
        """(high, low) offset-magnitude bits of each weight slice (device column)."""
        widths: tuple[int, ...] = self.weight_slice_bits  # type: ignore[assignment]  # a tuple after __post_init__
        return slice_ranges(WEIGHT_MAGNITUDE_BITS, widths)

    @property
    def speculative_cycles(self) -> int:
        """Crossbar cycles of the speculative slices (3 by default)."""
        return len(self.input_slices)

    @property
    def recovery_cycles(self) -> int:
        """Crossbar cycles of the recovery slices (8 by default)."""
        return len(self.recovery_slice_ranges)

    @property
    def max_cycles(self) -> int:
        """Crossbar cycles of one MVM in the worst case (11 speculating, 8 with policy off)."""
        return self.recovery_cycles + (0 if self.policy == "off" else self.speculative_cycles)

    @property
    def base_cycles(self) -> int:
        """Crossbar cycles of an MVM that needs no data-dependent recovery: every recovery
        slice (off), speculative plus recovery slices (always), the speculative slices
        alone (on_failure); a longer MVM ran recovery cycles."""
        if self.policy == "on_failure":
            return self.speculative_cycles
        return self.max_cycles


__all__ = ["ENCODINGS", "POLICIES", "RECOVERY_MODES", "WEIGHT_MAGNITUDE_BITS", "CrossbarConfig", "slice_ranges"]
