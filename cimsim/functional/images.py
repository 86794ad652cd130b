"""The images of a functional run, one at a time as the run consumes them (memory flat in the batch).

`ImageStream(network, batch, seed, path)` gives image `i` on demand: generated from
`(seed, i)` exactly as `make_images(network, 1, seed * 1_000_003 + i)` (so a batch's first
images do not depend on its size), or read from the array `images` of an `.npz`. A file is
checked when the stream is made: its header's shape, at least `batch` images, an integer
dtype and every value of the first `batch` images within int8 (read one image at a time);
images past the batch are never read. The file is then read sequentially as the run asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cimsim.config.schema import Scenario
from cimsim.errors import InputError
from cimsim.functional.npz import Npz
from cimsim.functional.weights import _int_array, check_images_shape, make_images
from cimsim.network.layers import Network

SEED_STRIDE = 1_000_003
"""Image i of a run with seed s is generated from seed s * SEED_STRIDE + i."""


class ImageStream:
    """Image i of the batch, (H, W, C) int8, generated or read when asked for."""

    def __init__(self, network: Network, batch: int, seed: int, path: str | Path | None = None) -> None:
        self.network = network
        self.batch = batch
        self.seed = seed
        self.path = Path(path) if path else None
        self._rows: Iterator[np.ndarray] | None = None
        self._next = 0
        self._npz: Npz | None = None
        if self.path is not None:
            npz = Npz(self.path)
            try:
                shape = check_images_shape(npz, network)
                if shape[0] < batch:
                    raise InputError(f"{self.path}: array 'images' holds {shape[0]} images, run.batch is {batch}")
                for row in npz.iter_rows("images", batch):  # every value checked before the run starts
                    _int_array(self.path, "images", row, np.int8)
            finally:
                npz.close()

    @classmethod
    def of(cls, scenario: Scenario, network: Network, batch: int | None = None) -> ImageStream:
        """The scenario's images (`functional.images` relative to the scenario file, else generated
        from `run.seed`), the first `batch` of them (None: `run.batch`)."""
        cfg = scenario.functional
        base = Path(scenario.source).parent if scenario.source else Path(".")
        return cls(network, scenario.run.batch if batch is None else batch, scenario.run.seed,
                   base / cfg.images if cfg.images else None)

    def __len__(self) -> int:
        return self.batch

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.batch:
            raise IndexError(f"image {i} of a batch of {self.batch}")
        if self.path is None:
            return make_images(self.network, 1, self.seed * SEED_STRIDE + i)[0]
        if self._rows is None or i < self._next:  # (re)start reading the file
            self.close()
            self._npz = Npz(self.path)
            self._rows = self._npz.iter_rows("images", self.batch)
            self._next = 0
        row = None
        while self._next <= i:
            row = next(self._rows)
            self._next += 1
        assert row is not None
        if self._next == self.batch:  # the last image read: the file is not needed until a restart
            self.close()
        return row.astype(np.int8)

    def close(self) -> None:
        """Close the file being read, if any."""
        if self._npz is not None:
            self._npz.close()
        self._npz, self._rows = None, None
