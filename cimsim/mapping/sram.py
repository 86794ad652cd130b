"""Input SRAM layouts (Dazzi 2021 section 2.3): words per pixel and per kernel row.

A layout places the H x F input pixels a core keeps (Algorithm 2) into words of
`word_bits`. Pixels are ordered by kernel row (row x, then column c of the F
columns), as the three methods of the paper do.
"""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("iwap", "klip", "plip")


@dataclass(frozen=True)
class SramLayout:
    """Word usage of one layout."""

    method: str
    words: int
    """Words occupied by the H x F pixels."""
    write_cycles: tuple[int, int]
    """(min, max) words touched by storing one pixel."""
    read_cycles: tuple[int, int]
    """(min, max) words touched by reading one kernel row of F pixels."""
    used_bits: int

    @property
    def empty_fraction(self) -> float:
        """Fraction of the occupied words' bits that hold no pixel data."""
        return 1.0 - self.used_bits / max(1, self.words * self._word_bits)

    _word_bits: int = 0


def _span(start_bit: int, nbits: int, word_bits: int) -> int:
    return (start_bit + nbits - 1) // word_bits - start_bit // word_bits + 1


def layout(method: str, pixel_bits: int, height: int, kernel: int, word_bits: int) -> SramLayout:
    """Words, write and read cycles of `method` for H x F pixels of `pixel_bits`."""
    if method not in METHODS:
        raise ValueError(f"unknown SRAM method {method!r}")
    writes: list[int] = []
    reads: list[int] = []
    row_bits = kernel * pixel_bits
    if method == "iwap":
        for x in range(height):
            row_start = x * row_bits
            reads.append(_span(row_start, row_bits, word_bits))
            writes.extend(_span(row_start + c * pixel_bits, pixel_bits, word_bits) for c in range(kernel))
        words = -(-height * row_bits // word_bits)
    elif method == "klip":
        row_words = -(-row_bits // word_bits)
        reads = [row_words] * height
        writes = [_span(c * pixel_bits, pixel_bits, word_bits) for c in range(kernel)]
        words = height * row_words
    else:
        pixel_words = -(-pixel_bits // word_bits)
        reads = [kernel * pixel_words]
        writes = [pixel_words]
        words = height * kernel * pixel_words
    return SramLayout(
        method, words, (min(writes), max(writes)), (min(reads), max(reads)),
        height * kernel * pixel_bits, word_bits,
    )


def auto_method(pixel_bits: int, word_bits: int) -> str:
    """Dazzi 3.1.2's choice: IWAP for pixels smaller than a word, else PLIP."""
    return "iwap" if pixel_bits < word_bits else "plip"
