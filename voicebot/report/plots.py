"""The report's charts as inline SVG text (matplotlib, Agg canvas, no pyplot state).

Text stays text in the SVG (``svg.fonttype: none``) so the charts are small and searchable;
mathtext is off, so a ``$`` in an intent or department name is printed as is. Each chart's
element ids get the chart's name as prefix, so several SVGs on one page never share an id.
"""

from __future__ import annotations

import functools
import io
import re
import textwrap
from collections.abc import Callable

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from voicebot.report.definitions import BY_KEY, CHANNELS

COLORS = {"voice": "#1f5f8b", "chat": "#e08a1e", "total": "#555555"}


def _svg(fig: Figure, name: str) -> str:
    FigureCanvasAgg(fig)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"voicebot-report-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE for inline use
    # matplotlib numbers ids per file (figure_1, axes_1...): prefix them, so ids stay unique in the page
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    return re.sub(r'(href="#|url\(#)([^")]+)', rf"\1{name}-\2", text)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _chart(fn: Callable[..., str]) -> Callable[..., str]:
    """Run a chart function with the report's style (read when texts are made, so around it all)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> str:
        with matplotlib.rc_context({"text.parse_math": False, "font.size": 9}):
            return fn(*args, **kwargs)
    return wrapper


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_axis_off()


@_chart
def headline_rates(report: dict) -> str:
    """The Tabel 3 rates per channel, this month."""
    keys = [k["key"] for k in report["definitions"] if k["headline"] and k["kind"] == "rate"]
    fig = _figure(7, 3)
    ax = fig.add_subplot()
    width = 0.8 / 3
    for i, scope in enumerate((*CHANNELS, "total")):
        values = [(report["kpis"][scope][k] or 0) * 100 for k in keys]
        ax.bar([x + (i - 1) * width for x in range(len(keys))], values, width, label=scope,
               color=COLORS[scope])
    ax.set_xticks(range(len(keys)), [textwrap.fill(BY_KEY[k].name_da, 22) for k in keys])
    ax.set_ylabel("% of ended conversations")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return _svg(fig, "rates")


@_chart
def stacked_bars(rows: list[dict], label_key: str, name: str, title: str) -> str:
    """Horizontal bars, voice and chat stacked, one per row (largest at the top)."""
    fig = _figure(7, max(1.6, 0.32 * len(rows) + 0.8))
    ax = fig.add_subplot()
    if not rows:
        _no_data(ax)
        return _svg(fig, name)
    labels = [str(r.get("department") or r[label_key]) for r in rows][::-1]
    left = [0] * len(rows)
    for channel in CHANNELS:
        values = [r[channel] for r in rows][::-1]
        ax.barh(labels, values, left=left, label=channel, color=COLORS[channel])
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False, ncols=2, loc="lower right")
    return _svg(fig, name)


@_chart
def volume_heatmap(volume: dict, scope: str = "total") -> str:
    """Conversations by weekday x hour (local time)."""
    fig = _figure(7.5, 2.8)
    ax = fig.add_subplot()
    grid = volume[scope]
    image = ax.imshow(grid, aspect="auto", cmap="Blues", vmin=0)
    ax.set_yticks(range(len(volume["weekdays"])), volume["weekdays"])
    ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    ax.set_xlabel("hour (Europe/Copenhagen)")
    top = max((max(row) for row in grid), default=0)
    for d, row in enumerate(grid):
        for h, n in enumerate(row):
            if n:
                ax.text(h, d, str(n), ha="center", va="center", fontsize=6,
                        color="white" if n > top / 2 else "black")
    fig.colorbar(image, ax=ax, label="conversations")
    return _svg(fig, f"volume-{scope}")


@_chart
def survey_bars(survey: dict) -> str:
    """How many answered 1..5, per channel."""
    fig = _figure(6, 2.6)
    ax = fig.add_subplot()
    if not any(sum(survey[c].values()) for c in CHANNELS):
        _no_data(ax, "no survey answers")
        return _svg(fig, "survey")
    width = 0.4
    for i, channel in enumerate(CHANNELS):
        ax.bar([n + (i - 0.5) * width for n in range(1, 6)], [survey[channel][str(n)] for n in range(1, 6)],
               width, label=channel, color=COLORS[channel])
    ax.set_xticks(range(1, 6), [str(n) for n in range(1, 6)])
    ax.set_xlabel("survey answer (1 = very dissatisfied, 5 = very satisfied)")
    ax.set_ylabel("conversations")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False)
    return _svg(fig, "survey")
