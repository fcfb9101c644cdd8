"""Proposed knowledge changes from the staff pages, as files for an editor to review.

They go to ``knowledge/<tenant>/_proposals/_<timestamp>-<article>.yaml``: the article loader
skips files whose names start with ``_`` (wherever they are), so a proposal never reaches the
live knowledge, the matcher or ``voicebot knowledge check`` until a person copies the example
into the article and the gate accepts it.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import yaml

from voicebot.staff.users import NAME, TENANT

FOLDER = "_proposals"


def propose_example(knowledge_root: Path, tenant: str, article_id: str, example: str, *, user: str,
                    source: dict | None = None, now: dt.datetime | None = None) -> Path:
    """Write a proposal to add ``example`` to ``article_id``; returns the file. ``article_id``
    must already be a known article (the caller checks it against the loaded knowledge)."""
    if not TENANT.fullmatch(tenant) or not NAME.fullmatch(article_id):
        raise ValueError("tenant or article id not a plain name")
    now = now or dt.datetime.now(dt.timezone.utc)
    folder = knowledge_root / tenant / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    body = {"proposal": "add_example", "article": article_id, "example": example, "tenant": tenant,
            "proposed_by": user, "proposed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": source or {}}
    text = ("# Proposed from the staff pages (/staff/review). NOT loaded by the bot: copy the example\n"
            f"# into {article_id}.yaml by hand, run `voicebot knowledge check`, then delete this file.\n"
            + yaml.safe_dump(body, allow_unicode=True, sort_keys=False))
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    for n in range(100):
        path = folder / f"_{stamp}{f'-{n}' if n else ''}-{article_id}.yaml"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    raise OSError(f"{folder}: cannot find a free proposal file name")
