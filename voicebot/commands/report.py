"""``voicebot report``: the monthly KPI report (satisfaction, resolved without staff, immediate
resolution, transfers, calls that still reach staff; per channel, with the previous month).

JSON is the canonical form; HTML (inline SVG charts, no JavaScript) and CSV render from it.
The record store is opened read-only. Definitions: ``voicebot/report/definitions.py``, docs/report.md.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from voicebot.errors import VoicebotError

FORMATS = ("json", "html", "csv")
_SUFFIXES = {".json": "json", ".html": "html", ".htm": "html", ".csv": "csv"}


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="monthly KPI report (JSON, HTML with charts, or CSV)")
    p.add_argument("--month", required=True, metavar="YYYY-MM",
                   help="the month, in local time (Europe/Copenhagen)")
    p.add_argument("--tenant", metavar="T", help="only this tenant's conversations (default: all)")
    p.add_argument("--format", metavar="FMT", help="html, json or csv (default: from --out's suffix, else json)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="rows in the top intents and unrecognized phrasings (default 10)")
    p.add_argument("--include-test-calls", action="store_true",
                   help="count test calls too (records with a test reference, from `voicebot call`)")
    p.set_defaults(func=run)


def output_format(fmt: str | None, out: str | None) -> str:
    if fmt is not None:
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            raise VoicebotError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    return _SUFFIXES.get(Path(out).suffix.lower(), "json") if out else "json"


def render(report: dict, fmt: str) -> str:
    if fmt == "html":
        from voicebot.report.render_html import render_html

        return render_html(report)
    if fmt == "csv":
        from voicebot.report.render_csv import render_csv

        return render_csv(report)
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def run(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.knowledge.departments import HUMAN
    from voicebot.knowledge.platform import platform_directory
    from voicebot.report import build_report, parse_month
    from voicebot.report.definitions import HUMAN_TARGET
    from voicebot.store.base import StoreError
    from voicebot.store.readonly import open_readonly, read_source

    month = parse_month(args.month)
    fmt = output_format(args.format, args.out)
    if args.top < 1:
        raise VoicebotError(f"--top: must be at least 1, got {args.top}")
    settings = load_settings(args.config)
    directory = platform_directory(settings)  # every tenant's departments: transfers are named
    # outcomes name the dialplan target without its "dept-" prefix (store.recorder.transfer_outcome)
    departments = {d.target.removeprefix("dept-"): d.name for d in directory.departments.values()}
    human = directory.departments.get(HUMAN)
    human_target = human.target.removeprefix("dept-") if human else HUMAN_TARGET
    try:
        db = open_readonly(read_source(settings))  # SQLite or PostgreSQL (store/readonly.py)
    except StoreError as exc:
        raise VoicebotError(str(exc)) from None
    try:
        report = build_report(db, month, tenant=args.tenant, include_tests=args.include_test_calls,
                              top=args.top, departments=departments, human_target=human_target)
    except (sqlite3.Error, StoreError) as exc:
        raise VoicebotError(f"cannot read the record store: {exc}") from None
    finally:
        db.close()
    text = render(report, fmt)
    if not args.out:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise VoicebotError(f"--out: cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"{fmt} report for {month} written to {args.out}", file=sys.stderr)
    return 0
