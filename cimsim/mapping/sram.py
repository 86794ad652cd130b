"""Input SRAM layouts with real bit addresses (Dazzi 2021 sections 2.3 and 2.4.2).

A core keeps a circular buffer of `columns` pixel columns of its input, each
`height` pixels high (Algorithm 2 keeps H x F pixels, `columns = F`). Pixels are
ordered by kernel row: row x, then column slot c. The three placements of 2.3:

- IWAP packs the pixels back to back: pixel (x, c) starts at bit
  ``(x * columns + c) * pixel_bits``.
- KLIP starts every kernel row on a word boundary (row stride
  ``ceil(columns * pixel_bits / word_bits)`` words) and packs the pixels of a row
  back to back inside it.
- PLIP gives every pixel its own ``ceil(pixel_bits / word_bits)`` words
  (Algorithm 2: ``delta_kernel = columns * pixel_words`` words between rows,
  ``delta_pix[c] = c * pixel_words``).

Padding is handled as Algorithm 2 chooses ("preemptively storing zero pixels"):
one zero pixel is stored after the data and every padded window position reads
it. It sits at the first word boundary after the data for KLIP and PLIP (whole
words, like their other pixels) and right after the last data bit for IWAP.

Addresses are *bit* addresses; the word of a bit is ``address // word_bits``.
`AddressGenerator` produces the store and read addresses of Algorithm 2 for an
image streamed column by column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

METHODS = ("iwap", "klip", "plip")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Table1Metrics:
    """The metrics of Dazzi Table 1 for one method storing H x F pixels.

    `memory_kb` counts the bits from address 0 to the end of the last stored
    pixel (the empty tail of the last word is not counted), in kB of 1000 bytes;
    `empty_pct` = 100 * (1 - pixel bits / those bits); `read_cycles`: distinct
    words of one kernel row of F pixels, (min, max) over the rows; `write_cycles`:
    words touched by one pixel, (min, max) over the pixels.
    """

    memory_kb: float
    empty_pct: float
    read_cycles: tuple[int, int]
    write_cycles: tuple[int, int]
    memory_bits: int = 0
    """Bits from address 0 to the end of the last stored pixel."""
    used_bits: int = 0
    """Bits holding pixel data."""

    def as_dict(self) -> dict[str, object]:
        """JSON-able dict, memory rounded to 3 decimals and % empty to 1 as the paper prints them."""
        return {
            "memory_kb": round(self.memory_kb, 3),
            "empty_pct": round(self.empty_pct, 1),
            "read_cycles": list(self.read_cycles),
            "write_cycles": list(self.write_cycles),
            "memory_bits": self.memory_bits,
            "used_bits": self.used_bits,
        }


def format_range(r: tuple[int, int]) -> str:
    """'[min, max]' as Table 1 prints a range, or the single number when min == max."""
    return str(r[0]) if r[0] == r[1] else f"[{r[0]}, {r[1]}]"


@dataclass(frozen=True)
class SramLayout:
    """Placement of a circular buffer of `height` x `columns` pixels in `word_bits`-bit words."""

    method: str
    pixel_bits: int
    height: int
    columns: int
    """Pixel columns of the circular buffer (F for Method 1, Algorithm 2)."""
    word_bits: int

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown SRAM method {self.method!r} (one of {', '.join(METHODS)})")
        _check_positive(pixel_bits=self.pixel_bits, height=self.height, columns=self.columns,
                        word_bits=self.word_bits)

    # --- geometry -------------------------------------------------------------

    @property
    def pixel_words(self) -> int:
        """Words a pixel needs on its own: ceil(pixel_bits / word_bits)."""
        return _ceil_div(self.pixel_bits, self.word_bits)

    @property
    def pixel_stride_bits(self) -> int:
        """Bits between pixels (x, c) and (x, c + 1)."""
        return self.pixel_words * self.word_bits if self.method == "plip" else self.pixel_bits

    @property
    def row_stride_bits(self) -> int:
        """Bits between pixels (x, c) and (x + 1, c) (Algorithm 2's delta_kernel, in bits)."""
        if self.method == "iwap":
            return self.columns * self.pixel_bits
        if self.method == "klip":
            return _ceil_div(self.columns * self.pixel_bits, self.word_bits) * self.word_bits
        return self.columns * self.pixel_words * self.word_bits

    @property
    def delta_pix_bits(self) -> tuple[int, ...]:
        """Algorithm 2's delta_pix in bits: the start of column slot c within a kernel row."""
        return tuple(c * self.pixel_stride_bits for c in range(self.columns))

    def address(self, x: int, c: int) -> int:
        """First bit of pixel row `x` (0..height-1) in column slot `c` (0..columns-1)."""
        if not (0 <= x < self.height and 0 <= c < self.columns):
            raise IndexError(f"pixel ({x}, {c}) outside the {self.height} x {self.columns} buffer")
        return x * self.row_stride_bits + c * self.pixel_stride_bits

    @property
    def used_bits(self) -> int:
        """Bits of pixel data: height x columns x pixel_bits."""
        return self.height * self.columns * self.pixel_bits

    @property
    def data_end_bits(self) -> int:
        """One past the last bit of the last data pixel."""
        return self.address(self.height - 1, self.columns - 1) + self.pixel_bits

    @property
    def words(self) -> int:
        """Whole words occupied by the height x columns data pixels (without the zero pixel)."""
        return _ceil_div(self.data_end_bits, self.word_bits)

    @property
    def zero_address(self) -> int:
        """Bit address of the pre-stored zero pixel every padded window position reads."""
        if self.method == "iwap":
            return self.used_bits
        return self.words * self.word_bits

    @property
    def total_words(self) -> int:
        """Whole words including the zero pixel."""
        return _ceil_div(self.zero_address + self.pixel_bits, self.word_bits)

    # --- cycles ---------------------------------------------------------------

    def _word_range(self, address: int) -> range:
        return range(address // self.word_bits, (address + self.pixel_bits - 1) // self.word_bits + 1)

    def write_words(self, x: int, c: int) -> int:
        """Words touched by storing pixel (x, c) (a shared word is written with a mask)."""
        return len(self._word_range(self.address(x, c)))

    def read_words(self, x: int, slots: Sequence[int | None]) -> int:
        """Distinct words touched reading the pixels of kernel row `x` at column `slots`.

        ``None`` is a padded position: it reads the zero pixel.
        """
        words: set[int] = set()
        for c in slots:
            words.update(self._word_range(self.zero_address if c is None else self.address(x, c)))
        return len(words)

    @cached_property
    def _pixel_read_table(self) -> np.ndarray:
        table = np.array([[self.read_words(x, (c,)) for c in range(self.columns)] for x in range(self.height)],
                         dtype=np.int64)
        table.setflags(write=False)
        return table

    def pixel_read_table(self) -> np.ndarray:
        """Words touched reading one stored pixel (`read_res`), shape (height, columns) (read-only)."""
        return self._pixel_read_table

    def pixel_read_words(self) -> int:
        """Most words touched reading one stored pixel."""
        return int(self._pixel_read_table.max())

    @cached_property
    def _write_table(self) -> np.ndarray:
        table = np.array([[self.write_words(x, c) for c in range(self.columns)] for x in range(self.height)],
                         dtype=np.int64)
        table.setflags(write=False)
        return table

    def write_table(self) -> np.ndarray:
        """write_words of every slot, shape (height, columns) (read-only)."""
        return self._write_table

    @property
    def write_cycles(self) -> tuple[int, int]:
        """(min, max) words touched by storing one pixel."""
        t = self._write_table
        return int(t.min()), int(t.max())

    @cached_property
    def read_cycles(self) -> tuple[int, int]:
        """(min, max) over the rows of the distinct words of one full row of `columns` pixels."""
        reads = [self.read_words(x, range(self.columns)) for x in range(self.height)]
        return min(reads), max(reads)

    @property
    def empty_fraction(self) -> float:
        """Fraction of the bits up to the end of the last data pixel that hold no pixel data."""
        return 1.0 - self.used_bits / self.data_end_bits

    def window_read_cycles(self, kernel: int) -> tuple[int, int]:
        """(min, max) distinct words of `kernel` cyclically consecutive slots of one row, over
        rows and first slots (the reads of one kernel row; all slots when kernel == columns)."""
        _check_positive(kernel=kernel)
        if kernel > self.columns:
            raise ValueError(f"kernel {kernel} wider than the {self.columns}-column buffer")
        starts = range(1) if kernel == self.columns else range(self.columns)
        reads = [self.read_words(x, [(s + i) % self.columns for i in range(kernel)])
                 for x in range(self.height) for s in starts]
        return min(reads), max(reads)

    def metrics(self, kernel: int) -> Table1Metrics:
        """Table 1 metrics of this layout with kernel rows of `kernel` pixels.

        With ``columns == kernel`` (Algorithm 2's H x F buffer) these are exactly
        Table 1's metrics over H x F pixels. A wider buffer (Method 2 keeps
        F + (dW - 1) x stride columns) counts its memory over all its pixels and
        reads `kernel` cyclically consecutive slots, as a window does.
        """
        memory_bits = self.data_end_bits
        return Table1Metrics(
            memory_kb=memory_bits / 8 / 1000,
            empty_pct=100.0 * (1.0 - self.used_bits / memory_bits),
            read_cycles=self.read_cycles if kernel == self.columns else self.window_read_cycles(kernel),
            write_cycles=self.write_cycles,
            memory_bits=memory_bits,
            used_bits=self.used_bits,
        )


def make_layout(method: str, pixel_bits: int, height: int, columns: int, word_bits: int) -> SramLayout:
    """The `method` layout of a `height` x `columns` circular buffer of `pixel_bits`-bit pixels."""
    return SramLayout(method, pixel_bits, height, columns, word_bits)


def layout(method: str, pixel_bits: int, height: int, kernel: int, word_bits: int) -> SramLayout:
    """The layout of Algorithm 2's H x F buffer (`columns = kernel`), as the mapper uses it."""
    return make_layout(method, pixel_bits, height, kernel, word_bits)


def table1(method: str, channels: int, height: int, word_bits: int, kernel: int = 3, bits: int = 8) -> Table1Metrics:
    """One cell row of Dazzi Table 1: `method` storing H x F pixels of `channels` x `bits` bits."""
    return make_layout(method, channels * bits, height, kernel, word_bits).metrics(kernel)


def auto_method(pixel_bits: int, word_bits: int) -> str:
    """Dazzi 3.1.2's choice: IWAP for pixels smaller than a word, else PLIP."""
    return "iwap" if pixel_bits < word_bits else "plip"


class AddressGenerator:
    """Algorithm 2's store and read addresses for an image streamed column by column.

    The buffer holds `layout.columns` columns; input column g (counted across
    images: image b's column j is g = b * width + j) is stored in slot
    ``g % columns`` (line 4's mod), overwriting the column `columns` before it.
    Reads return a kernel row's pixels in logical column order (line 10's
    permutation); positions outside the image (padding) read the zero pixel.
    """

    def __init__(self, layout: SramLayout, height: int, width: int, kernel: int, padding: int) -> None:
        _check_positive(height=height, width=width, kernel=kernel)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        if height > layout.height:
            raise ValueError(f"image height {height} exceeds the layout's {layout.height} rows")
        if kernel > layout.columns:
            raise ValueError(f"kernel {kernel} needs at least {kernel} buffer columns, the layout has {layout.columns}")
        self.layout = layout
        self.height = height
        self.width = width
        self.kernel = kernel
        self.padding = padding

    def slot(self, global_column: int) -> int:
        """Buffer slot of input column `global_column` (Algorithm 2 line 4)."""
        return global_column % self.layout.columns

    def store_addresses(self, global_column: int, x: int) -> int:
        """Bit address where pixel row `x` of input column `global_column` is written."""
        if global_column < 0:
            raise ValueError(f"global_column must be >= 0, got {global_column}")
        if not 0 <= x < self.height:
            raise IndexError(f"pixel row {x} outside the image height {self.height}")
        return self.layout.address(x, self.slot(global_column))

    def read_slots(self, x: int, window_first_column: int, image: int = 0) -> list[int | None]:
        """Slots of kernel row `x` of the window starting at image column `window_first_column`; None = padding."""
        if x < 0 or x >= self.height:
            return [None] * self.kernel
        slots: list[int | None] = []
        for j in range(window_first_column, window_first_column + self.kernel):
            slots.append(self.slot(image * self.width + j) if 0 <= j < self.width else None)
        return slots

    def read_addresses(self, x: int, window_first_column: int, image: int = 0) -> list[int]:
        """The F bit addresses of kernel row `x` for the window whose first input column is
        `window_first_column` (negative or >= width: padding), in logical column order.

        `image` selects which image of a back-to-back stream the column belongs to.
        """
        lay = self.layout
        return [lay.zero_address if s is None else lay.address(x, s)
                for s in self.read_slots(x, window_first_column, image)]
