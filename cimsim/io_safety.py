"""Output files that are complete or absent: the one home of every file cimsim writes.

`AtomicOutput(dest, inputs)` checks the destination before anything is written (it may not
be a directory, a device or other non-regular file, nor any input of the same command),
writes `<dest>.<pid>.partial` in the destination's directory, and `commit()` flushes,
fsyncs and renames it over `dest` in one `os.replace`. Until then an existing file at
`dest` is untouched; any exception (Ctrl-C and SIGTERM included) removes the partial file.
Files that must change together (`cimsim import`'s three) are finished first and renamed
together by `commit_together`: a failed write in any leaves every destination as it was.

Write failures (disk full, a file-size limit, permission denied) become one `OutputError`
naming the path. Writes go through `GuardedFile`, which records the first `OSError` and
swallows later ones, so a library writing through it (HDF5) never sees a failed write: it
cannot crash in its own error handling, and the owner raises the recorded error at its next
check (`AtomicOutput.check`) or at `commit`.

Signals: the rename runs with SIGINT and SIGTERM blocked, so an interrupt lands either
before it (the old file survives, the partial is removed) or after it. Inside `sealed()`
(the command line) a committed output also ignores those signals from the rename on, so a
finished command is not reported as interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from cimsim.errors import InputError, OutputError

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_seal = threading.local()


def _describe(exc: OSError) -> str:
    return exc.strerror or " ".join(str(exc).split())


@contextlib.contextmanager
def sealed() -> Iterator[None]:
    """Within this block (main thread), a committed output makes SIGINT and SIGTERM ignored:
    what the command wrote is final, so it exits as it completed. The caller restores the
    signal handlers it wants afterwards."""
    previous = getattr(_seal, "on", False)
    _seal.on = True
    try:
        yield
    finally:
        _seal.on = previous


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        try:
            return a.resolve() == b.resolve()
        except (OSError, RuntimeError, ValueError):
            return False


def check_destination(dest: str | Path, inputs: Iterable[str | Path] = (), what: str = "output") -> Path:
    """`dest` resolved through symlinks, after checking it may be written: not a directory,
    not an existing non-regular file (device, FIFO, socket), not one of `inputs`; its
    directory must exist. Raises `InputError` (nothing has been written)."""
    raw = str(dest)
    if not raw or "\x00" in raw:
        raise InputError(f"{what} {raw!r}: not a valid file name")
    path = Path(raw)
    try:
        if path.is_symlink():
            path = Path(os.path.realpath(path))
        st = os.stat(path) if path.exists() else None
    except (OSError, RuntimeError, ValueError) as exc:
        why = _describe(exc) if isinstance(exc, OSError) else " ".join(str(exc).split())
        raise InputError(f"{what} {raw}: {why}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{what} {raw}: is a directory, expected a file name")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {raw}: exists and is not a regular file (a device, pipe or socket); "
                             "refusing to replace it")
    for source in inputs:
        if source and _same_file(path, Path(source)):
            raise InputError(f"{what} {raw}: is an input of this command ({source}); choose another file")
    if not path.parent.is_dir():
        raise InputError(f"{what} {raw}: directory {path.parent} does not exist")
    if len(path.name) + 24 > 255:
        raise InputError(f"{what} {raw}: file name too long")
    return path


def partial_path(dest: Path) -> Path:
    """`<dest>.<pid>.partial`: where `dest` is written until it is complete (one per process)."""
    return dest.with_name(f"{dest.name}.{os.getpid()}.partial")


class GuardedFile:
    """A binary read/write file that records its first `OSError` instead of raising it (and
    then ignores further writes), for writers such as HDF5 that must never see a failure."""

    def __init__(self, raw: object) -> None:
        self._f = raw
        self.error: OSError | None = None

    def _guard(self, name: str, *args: object, default: object = None) -> object:
        if self.error is not None and name != "read":
            return default
        try:
            return getattr(self._f, name)(*args)
        except OSError as exc:
            if self.error is None:
                self.error = exc
            return default

    def write(self, data: bytes) -> int:
        """Write `data` (its length is returned even after a failure)."""
        self._guard("write", data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes."""
        out = self._guard("read", size, default=b"")
        return out if isinstance(out, bytes) else b""

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the file position."""
        out = self._guard("seek", offset, whence, default=offset)
        return out if isinstance(out, int) else offset

    def tell(self) -> int:
        """The file position."""
        out = self._guard("tell", default=0)
        return out if isinstance(out, int) else 0

    def truncate(self, size: int | None = None) -> int:
        """Cut or extend the file to `size` bytes."""
        out = self._guard("truncate", size, default=size or 0)
        return out if isinstance(out, int) else 0

    def flush(self) -> None:
        """Flush Python's buffer to the operating system."""
        self._guard("flush")

    @property
    def closed(self) -> bool:
        """Whether the underlying file is closed."""
        return bool(getattr(self._f, "closed", False))

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


class AtomicOutput:
    """One output file written beside its destination and renamed into place when complete."""

    def __init__(self, dest: str | Path, inputs: Iterable[str | Path] = (), what: str = "output",
                 mkdir: bool = False) -> None:
        if mkdir:
            with contextlib.suppress(OSError, ValueError):
                Path(dest).parent.mkdir(parents=True, exist_ok=True)
        self.shown = str(dest)
        self.dest = check_destination(dest, inputs, what)
        self.partial = partial_path(self.dest)
        self.committed = False
        try:
            fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write {self.shown}: {_describe(exc)}") from None
        self.raw = os.fdopen(fd, "w+b")
        self.stream = GuardedFile(self.raw)
        """The binary file to write; failures are recorded in `stream.error`."""

    def check(self) -> None:
        """Raise the `OutputError` of the first failed write, if one failed."""
        if self.stream.error is not None:
            raise OutputError(f"cannot write {self.shown}: {_describe(self.stream.error)}") from None

    def finish(self) -> None:
        """Flush, fsync and close the partial file (not yet renamed); `OutputError` if any write
        failed. Idempotent."""
        if self.raw.closed:
            return
        self.stream.flush()
        self.check()
        try:
            os.fsync(self.raw.fileno())
            self.raw.close()
        except OSError as exc:
            raise OutputError(f"cannot write {self.shown}: {_describe(exc)}") from None

    def commit(self) -> Path:
        """Flush, fsync, close and rename the partial file over the destination."""
        commit_together([self])
        return self.dest

    def abort(self) -> None:
        """Close and remove the partial file (the destination is left as it was)."""
        if self.committed:
            return
        with contextlib.suppress(OSError, ValueError):
            self.raw.close()
        with contextlib.suppress(OSError):
            self.partial.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None or not self.committed:
            self.abort()


def commit_together(outputs: Sequence[AtomicOutput]) -> list[Path]:
    """Finish every output, then rename them all, with SIGINT and SIGTERM blocked: a set of files
    that must change together (a write failure in any leaves every destination as it was)."""
    for out in outputs:
        out.finish()
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        for out in outputs:
            try:
                os.replace(out.partial, out.dest)
            except OSError as exc:
                raise OutputError(f"cannot write {out.shown}: {_describe(exc)}") from None
            out.committed = True
        if main and getattr(_seal, "on", False):
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    for parent in dict.fromkeys(out.dest.parent for out in outputs):
        with contextlib.suppress(OSError):
            dir_fd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    return [out.dest for out in outputs]


def write_bytes(dest: str | Path, data: bytes, inputs: Iterable[str | Path] = (), what: str = "output") -> Path:
    """Write `data` to `dest` atomically."""
    with AtomicOutput(dest, inputs, what) as out:
        out.stream.write(data)
        return out.commit()
