"""Placement of cores on the core array."""

from __future__ import annotations


def snake(rows: int, cols: int) -> list[tuple[int, int]]:
    """Array positions in boustrophedon order: row 0 left to right, row 1 right to left, ..."""
    order: list[tuple[int, int]] = []
    for r in range(rows):
        cs = range(cols) if r % 2 == 0 else range(cols - 1, -1, -1)
        order.extend((r, c) for c in cs)
    return order
