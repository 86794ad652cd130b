""".npz archives read with bounded memory: shapes and sizes checked before any data is read.

`numpy.load` decompresses a whole member before anyone can look at its shape, so a small
zip bomb exhausts memory. `Npz` reads each member's `.npy` header first (shape, dtype),
lets the caller check it, and then reads exactly the bytes that shape needs, at most
`MAX_ARRAY_BYTES` per array (or one image at a time, `iter_rows`). Every problem is an
`InputError` naming the file and the array.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from math import prod
from pathlib import Path
from typing import IO

import numpy as np

from cimsim.errors import InputError

MAX_ARRAY_BYTES = 256 << 20
"""Largest array read at once from an .npz (256 MiB)."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class Npz:
    """The arrays of one .npz archive, by name (without `.npy`), read on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            if not self.path.is_file():
                raise InputError(f"{self.path}: file not found")
            if not zipfile.is_zipfile(self.path):
                raise InputError(f"{self.path}: not an .npz archive (expected a zip of arrays, as numpy.savez "
                                 "writes)")
            self.zip = zipfile.ZipFile(self.path)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"{self.path}: cannot read .npz archive: {_one_line(exc)}") from None
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            name = info.filename.removesuffix(".npy")
            self.members[name] = info

    @property
    def files(self) -> list[str]:
        """Array names."""
        return list(self.members)

    def __contains__(self, name: object) -> bool:
        return name in self.members

    def _open(self, name: str) -> tuple[IO[bytes], tuple[int, ...], np.dtype, bool]:
        """The member's stream positioned at its data, and its shape, dtype and Fortran order."""
        try:
            stream = self.zip.open(self.members[name])
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
            raise InputError(f"{self.path}: cannot read .npz archive: array {name!r}: {_one_line(exc)}") from None
        if dtype.hasobject:
            stream.close()
            raise InputError(f"{self.path}: member {name!r} is not a numpy array of numbers (dtype {dtype})")
        return stream, tuple(int(n) for n in shape), dtype, bool(fortran)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of array `name`, from its header alone."""
        stream, shape, _dtype, _fortran = self._open(name)
        stream.close()
        return shape

    def _read(self, name: str, stream: IO[bytes], count: int, dtype: np.dtype) -> np.ndarray:
        nbytes = count * dtype.itemsize
        try:
            data = stream.read(nbytes)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
            raise InputError(f"{self.path}: cannot read .npz archive: array {name!r}: {_one_line(exc)}") from None
        if len(data) != nbytes:
            raise InputError(f"{self.path}: cannot read .npz archive: array {name!r} is truncated")
        return np.frombuffer(data, dtype=dtype, count=count)

    def read(self, name: str) -> np.ndarray:
        """Array `name`, refused without reading when it is larger than `MAX_ARRAY_BYTES`."""
        stream, shape, dtype, fortran = self._open(name)
        with stream:
            count = prod(shape)
            if count * dtype.itemsize > MAX_ARRAY_BYTES:
                raise InputError(f"{self.path}: array {name!r} has shape {shape}: {count * dtype.itemsize:,} "
                                 f"bytes, at most {MAX_ARRAY_BYTES:,}")
            flat = self._read(name, stream, count, dtype)
        return flat.reshape(shape, order="F" if fortran else "C").copy()

    def iter_rows(self, name: str, rows: int) -> Iterator[np.ndarray]:
        """The first `rows` sub-arrays `a[i]` of a C-ordered array, one at a time."""
        stream, shape, dtype, fortran = self._open(name)
        with stream:
            if fortran and len(shape) > 1:
                raise InputError(f"{self.path}: array {name!r} is stored in Fortran order; save it C-ordered "
                                 "(numpy.ascontiguousarray)")
            row_shape = shape[1:]
            count = prod(row_shape)
            if count * dtype.itemsize > MAX_ARRAY_BYTES:
                raise InputError(f"{self.path}: array {name!r}: one entry of shape {row_shape} is larger than "
                                 f"{MAX_ARRAY_BYTES:,} bytes")
            for _ in range(rows):
                yield self._read(name, stream, count, dtype).reshape(row_shape)

    def close(self) -> None:
        """Close the archive."""
        self.zip.close()
