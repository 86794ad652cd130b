"""Per-layer metrics and tables."""

from cimsim.report.summary import Report, make_report

__all__ = ["Report", "make_report"]
