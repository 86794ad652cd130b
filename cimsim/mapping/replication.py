"""Kernel replication on a crossbar (Dazzi 2021 section 2.2, Eqs. 2-4).

Pure arithmetic: the rows of a collective kernel matrix are the distinct input
pixels (x channels) that the replicas' windows cover together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaShape:
    """Shape of a collective kernel matrix of `replicas` kernel copies."""

    replicas: int
    method: int
    """1: outputs along one direction (a column); 2: a block `dw` outputs wide."""
    dw: int
    rows: int
    cols: int

    @property
    def aspect_ratio(self) -> float:
        """Rows over columns of the collective kernel matrix."""
        return self.rows / self.cols

    def utilisation(self, kernel_rows: int, kernel_cols: int, xbar_rows: int, xbar_cols: int) -> float:
        """Device utilisation u of Eq. 4: replicas x devices per kernel / devices of the array."""
        return self.replicas * kernel_rows * kernel_cols / (xbar_rows * xbar_cols)


def window_pixels(kernel: int, stride: int, height: int, width: int) -> int:
    """Distinct input pixels covered by a `height` x `width` block of output windows."""
    pixels: set[tuple[int, int]] = set()
    for i in range(height):
        for j in range(width):
            for a in range(kernel):
                for b in range(kernel):
                    pixels.add((i * stride + a, j * stride + b))
    return len(pixels)


def collective_shape(c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int],
                     replicas: int, dw: int = 1) -> ReplicaShape:
    """Rows and columns of `replicas` kernel copies laid out `dw` outputs wide.

    `dw == 1` is Method 1 (Dazzi 2.2.1): each extra replica adds kernel x c_in rows
    when stride 1. `dw > 1` is Method 2 (2.2.2): the outputs fill a block of
    ceil(replicas / dw) rows by dw columns (the last row may be partial). `kernel` and
    `stride` are one int (square) or (along H, along W).
    """
    (kh, kw), (sh, sw) = _pair(kernel), _pair(stride)
    if replicas < 1 or dw < 1 or min(kh, kw, sh, sw) < 1:
        raise ValueError("replicas, dw, kernel and stride must be positive")
    dw = min(dw, replicas)
    full_rows, rest = divmod(replicas, dw)
    pixels: set[tuple[int, int]] = set()
    outputs = [(i, j) for i in range(full_rows) for j in range(dw)] + [(full_rows, j) for j in range(rest)]
    for i, j in outputs:
        for a in range(kh):
            for b in range(kw):
                pixels.add((i * sh + a, j * sw + b))
    return ReplicaShape(replicas, 1 if dw == 1 else 2, dw, len(pixels) * c_in, replicas * c_out)


def aspect_ratio_method1(c_in: int, c_out: int, kernel: int, replicas: int) -> float:
    """Closed form of Eq. 2 (stride 1): F^2 * Cin/Cout * (1 + (n-1)/F) / n."""
    return kernel**2 * c_in / c_out * (1 + (replicas - 1) / kernel) / replicas


def fits(shape: ReplicaShape, xbar_rows: int, xbar_cols: int) -> bool:
    """Whether a collective kernel matrix fits one `xbar_rows` x `xbar_cols` crossbar."""
    return shape.rows <= xbar_rows and shape.cols <= xbar_cols


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def best_shape(c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int], replicas: int,
               xbar_rows: int, xbar_cols: int) -> ReplicaShape | None:
    """The layout of `replicas` kernel copies that fits one crossbar, or None.

    Method 1 (dW = 1) if it fits; else Method 2 with the smallest dW in
    2..replicas that fits (the block closest to a column, Dazzi 2.2.3; among
    equal dW the fewest rows); else None. The columns (replicas x c_out) do not
    depend on dW, so a shape too wide never fits.
    """
    if xbar_rows < 1 or xbar_cols < 1:
        raise ValueError("xbar_rows and xbar_cols must be positive")
    method1 = collective_shape(c_in, c_out, kernel, stride, replicas, 1)
    if fits(method1, xbar_rows, xbar_cols):
        return method1
    candidates = [collective_shape(c_in, c_out, kernel, stride, replicas, dw) for dw in range(2, replicas + 1)]
    fitting = [s for s in candidates if fits(s, xbar_rows, xbar_cols)]
    if not fitting:
        return None
    return min(fitting, key=lambda s: (s.dw, s.rows))
