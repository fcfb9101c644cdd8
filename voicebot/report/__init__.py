"""The monthly KPI report (``voicebot report``): the business case's "Tabel 3" numbers per channel.

``kpis.build_report`` reads the record store with SQL and returns a plain dict (the JSON form, the
canonical one); ``render_html`` and ``render_csv`` render that dict. Every KPI is defined once,
in ``definitions.KPIS``, and both the JSON and the HTML print those definitions.
"""

from __future__ import annotations

from voicebot.report.kpis import build_report
from voicebot.report.period import Month, parse_month

__all__ = ["Month", "build_report", "parse_month"]
