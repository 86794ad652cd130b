"""Per-layer metrics and tables, and what is made from traces (replayed reports, plots, exports)."""

from cimsim.report.summary import Report, ReportInput, make_report, report_input

__all__ = ["Report", "ReportInput", "make_report", "report_input"]
