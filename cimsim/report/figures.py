"""Pictures written to files, the one home of every plot command's output (`cimsim plot`,
`sweep-plot`, `roofline -o`): matplotlib set up once (Agg), the destination and its format
checked before anything is drawn, and the figure written through `cimsim.io_safety` (beside
the destination, renamed when complete), so the file written is exactly the one named."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cimsim.errors import InputError
from cimsim.io_safety import AtomicOutput, check_destination

DEFAULT_FORMAT = "png"
"""The format of a destination without a suffix (the file keeps the name given)."""


class PlotError(InputError):
    """The picture cannot be drawn or written where asked (exit 2)."""


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend; a one-line error without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'cimsim[plot]'") from None
    matplotlib.use("Agg")
    # a font cache that cannot be saved (disk full) is matplotlib's own business: one line of ours says enough
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import matplotlib.pyplot as plt

    return plt


def picture_format(out: str | Path, inputs: Iterable[str | Path] = (), option: str = "-o") -> str:
    """The format to write `out` in (its suffix; png without one), after checking that `out` may be
    written (`cimsim.io_safety.check_destination`: not a directory, a device or an input) and
    that matplotlib writes that format. Raises a one-line `InputError`; nothing is written."""
    pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    check_destination(out, inputs, what=option)
    fmt = Path(str(out)).suffix.lstrip(".").lower() or DEFAULT_FORMAT
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise PlotError(f"{option} {out}: unknown picture format '.{fmt}' (supported: "
                        f"{', '.join('.' + f for f in sorted(formats))})")
    return fmt


def save_figure(fig: Any, out: str | Path, inputs: Iterable[str | Path] = (), option: str = "-o",
                **savefig: Any) -> Path:
    """Write `fig` to exactly `out` (format by `picture_format`), atomically: an earlier file
    survives any failure (exit 4 for a failed write) and no temporary file remains. Closes `fig`."""
    plt = pyplot()
    inputs = list(inputs)
    try:
        fmt = picture_format(out, inputs, option)
        with AtomicOutput(out, inputs, what=option) as dest:
            fig.savefig(dest.stream, format=fmt, **savefig)
            dest.commit()
    finally:
        plt.close(fig)
    return Path(out)
