"""The report as one self-contained HTML page: tables, definitions and inline SVG charts.

No JavaScript and no external resources (fonts, styles, images): the file can be mailed or
archived and read anywhere. Every text from the data is HTML-escaped; the unrecognized phrasings
are the store's redacted texts, nothing else.
"""

from __future__ import annotations

from html import escape

from voicebot.report import plots
from voicebot.report.definitions import BY_KEY, SCOPES

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 62em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
small, .note { color: #555; }
dt { font-weight: bold; margin-top: 0.5em; } dd { margin-left: 1.5em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
"""


def fmt(value, kind: str, change: bool = False) -> str:
    """A value for people; ``change``: a signed difference (rates in percentage points)."""
    if value is None:
        return "–"
    sign = "+" if change else ""
    if kind == "rate":
        return f"{value * 100:{sign}.1f} {'pp' if change else '%'}"
    if kind == "mean":
        return f"{value:{sign}.2f}"
    return f"{value:{sign}d}"


def _kpi_table(report: dict, headline_only: bool) -> str:
    prev = report["previous"]
    head = "".join(f"<th>{escape(s)}</th>" for s in SCOPES)
    rows = []
    for d in report["definitions"]:
        if headline_only and not d["headline"]:
            continue
        cells = []
        for s in SCOPES:
            value = report["kpis"][s][d["key"]]
            before = prev["kpis"][s][d["key"]]
            delta = report["change"][s][d["key"]]
            cells.append(f'<td class="n">{escape(fmt(value, d["kind"]))}<br><small>'
                         f'{escape(prev["month"])}: {escape(fmt(before, d["kind"]))}, '
                         f'change {escape(fmt(delta, d["kind"], change=True))}</small></td>')
        rows.append(f'<tr><th>{escape(d["name"])} <small>({escape(d["name_da"])})</small></th>'
                    + "".join(cells) + "</tr>")
    return f"<table><tr><th>KPI</th>{head}</tr>{''.join(rows)}</table>"


def _definitions(report: dict) -> str:
    items = "".join(f'<dt>{escape(d["name"])} ({escape(d["name_da"])}) <small><code>{escape(d["key"])}</code>'
                    f'</small></dt><dd>{escape(d["definition"])}</dd>' for d in report["definitions"])
    sections = "".join(f"<dt><code>{escape(k)}</code></dt><dd>{escape(v)}</dd>"
                       for k, v in report["section_definitions"].items())
    return f"<dl>{items}{sections}</dl>"


def _count_table(rows: list[dict], key: str, heading: str, extra: str | None = None) -> str:
    if not rows:
        return '<p class="note">None this month.</p>'
    head = f"<th>{escape(heading)}</th>" + (f"<th>{escape(extra.title())}</th>" if extra else "")
    head += "".join(f"<th>{escape(s)}</th>" for s in SCOPES)
    body = []
    for r in rows:
        cells = f"<td>{escape(str(r[key]))}</td>"
        if extra:
            cells += f"<td>{escape(str(r.get(extra) or '–'))}</td>"
        cells += "".join(f'<td class="n">{r[s]}</td>' for s in SCOPES)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _survey_table(survey: dict) -> str:
    head = "".join(f"<th>{n}</th>" for n in range(1, 6))
    body = "".join(f"<tr><th>{escape(s)}</th>" + "".join(f'<td class="n">{survey[s][str(n)]}</td>'
                                                           for n in range(1, 6)) + "</tr>" for s in SCOPES)
    return f"<table><tr><th>Channel</th>{head}</tr>{body}</table>"


def _volume_table(volume: dict, scope: str) -> str:
    head = "".join(f"<th>{h:02d}</th>" for h in volume["hours"])
    body = "".join(f"<tr><th>{escape(day)}</th>" + "".join(f'<td class="n">{n or ""}</td>' for n in row)
                   + "</tr>" for day, row in zip(volume["weekdays"], volume[scope]))
    return f"<table><tr><th>{escape(scope)}</th>{head}</tr>{body}</table>"


def _calls_by_day_table(table: dict) -> str:
    names = (("calls", "Calls"), ("transferred", "Transferred"), ("answered_by_staff", "Answered by staff"))
    head = "".join(f"<th>{escape(label)}</th>" for _, label in names)
    body = "".join(f"<tr><td>{escape(r['date'])}</td>" + "".join(f'<td class="n">{r[k]}</td>' for k, _ in names)
                   + "</tr>" for r in table["days"])
    total = "".join(f'<td class="n"><b>{table["total"][k]}</b></td>' for k, _ in names)
    return f"<table><tr><th>Day</th>{head}</tr>{body}<tr><th>Total</th>{total}</tr></table>"


def _figure(svg: str, caption: str) -> str:
    return f'<figure role="img" aria-label="{escape(caption)}">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def render_html(report: dict) -> str:
    month, tz = report["month"], report["timezone"]
    tenant = report["tenant"] or "all tenants"
    period = report["period"]
    sd = report["section_definitions"]
    satisfaction = BY_KEY["survey_mean"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Voicebot KPI report {escape(month)} ({escape(tenant)})</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Voicebot KPI report {escape(month)}</h1>",
        f'<p>Tenant: <b>{escape(tenant)}</b>. Channels: {escape(", ".join(report["channels"]))}. '
        f"All times are local time ({escape(tz)}): the month runs from {escape(period['start_local'])} "
        f"to {escape(period['end_local'])} (UTC {escape(period['start_utc'])} to {escape(period['end_utc'])}); "
        f"a conversation belongs to the month it started in. Test calls are {escape(report['test_calls'])}. "
        f"Compared with the previous month, {escape(report['previous']['month'])}. "
        f"Generated {escape(report['generated_at'])}.</p>",
        '<h2>Key figures (business case, "Tabel 3")</h2>',
        _kpi_table(report, headline_only=True),
        _figure(plots.headline_rates(report), "Tabel 3 rates per channel, " + month),
        f"<p>{escape(satisfaction.name)} ({escape(satisfaction.name_da)}): see the survey section.</p>",
        "<h2>All KPIs per channel, with the previous month</h2>",
        _kpi_table(report, headline_only=False),
        "<h2>Definitions</h2>",
        _definitions(report),
        "<h2>Transfers per department</h2>",
        f'<p class="note">{escape(sd["transfers_by_department"])}</p>',
        _count_table(report["transfers_by_department"], "target", "Target", extra="department"),
        _figure(plots.stacked_bars(report["transfers_by_department"], "target", "transfers", "transfers"),
                "Transfers per department"),
        "<h2>Top intents</h2>",
        f'<p class="note">{escape(sd["top_intents"])}</p>',
        _count_table(report["top_intents"], "intent", "Intent"),
        _figure(plots.stacked_bars(report["top_intents"], "intent", "intents", "conversations"), "Top intents"),
        "<h2>Top unrecognized phrasings</h2>",
        f'<p class="note">{escape(sd["top_unrecognized"])}</p>',
        _count_table(report["top_unrecognized"], "text", "Phrasing (redacted)"),
        f"<h2>Volume by weekday and hour ({escape(tz)})</h2>",
        f'<p class="note">{escape(sd["volume"])}</p>',
        _figure(plots.volume_heatmap(report["volume"]), f"Conversations by weekday and hour, {tz}"),
        *(_volume_table(report["volume"], s) for s in SCOPES),
        "<h2>Phone calls per day: transfers and calls answered by staff</h2>",
        f'<p class="note">{escape(sd["calls_by_day"])}</p>',
        _calls_by_day_table(report["calls_by_day"]),
        "<h2>Survey answers per channel</h2>",
        f'<p class="note">{escape(sd["survey"])} Mean: '
        + ", ".join(f"{escape(c)} {escape(fmt(report['kpis'][c]['survey_mean'], 'mean'))}" for c in SCOPES)
        + ".</p>",
        _survey_table(report["survey"]),
        _figure(plots.survey_bars(report["survey"]), "Survey answers 1-5 per channel"),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
