"""The report as one long CSV table: ``section, item, label, channel, value, previous, change``.

One row per number, so a spreadsheet can pivot it. Texts that a spreadsheet would read as a
formula (leading ``=``, ``+``, ``-``, ``@``, tab or CR; a citizen's chat text could be one) get
a leading apostrophe.
"""

from __future__ import annotations

import csv
import io

from voicebot.report.definitions import SCOPES

HEADER = ("section", "item", "label", "channel", "value", "previous", "change")


def _safe(value):
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def rows(report: dict):
    prev, change = report["previous"]["kpis"], report["change"]
    for d in report["definitions"]:
        for s in SCOPES:
            yield ("kpi", d["key"], d["name_da"], s, report["kpis"][s][d["key"]], prev[s][d["key"]],
                   change[s][d["key"]])
    for section, key, label in (("transfers_by_department", "target", "department"),
                                ("top_intents", "intent", None), ("top_unrecognized", "text", None)):
        for r in report[section]:
            for s in SCOPES:
                yield (section, r[key], r.get(label) if label else None, s, r[s], None, None)
    volume = report["volume"]
    for s in SCOPES:
        for day, row in zip(volume["weekdays"], volume[s]):
            for hour, n in zip(volume["hours"], row):
                yield ("volume", f"{day} {hour:02d}", None, s, n, None, None)
    for s in SCOPES:
        for answer, n in report["survey"][s].items():
            yield ("survey", answer, None, s, n, None, None)
    for row in [*report["calls_by_day"]["days"], {"date": "total", **report["calls_by_day"]["total"]}]:
        for name in ("calls", "transferred", "answered_by_staff"):
            yield ("calls_by_day", row["date"], name, "voice", row[name], None, None)


def render_csv(report: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows(report):
        writer.writerow([_safe(v) for v in row])
    return buf.getvalue()
