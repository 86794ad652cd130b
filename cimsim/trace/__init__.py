"""HDF5 run traces: the writer (a probe subscriber) and the reader. The only package that imports h5py.

Schema: `traces/README.md` and `cimsim.trace.schema`.
"""

from cimsim.trace.reader import Trace, TraceError, open
from cimsim.trace.schema import SCHEMA_VERSION
from cimsim.trace.writer import TraceWriter

__all__ = ["SCHEMA_VERSION", "Trace", "TraceError", "TraceWriter", "open"]
