"""Fetch one file over HTTP(S) with a progress bar and a streaming sha256 check.

The file is written to ``DEST.part`` and renamed only after its checksum matched, so an
interrupted or corrupt download never looks installed; on a mismatch the partial file is removed.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from voicebot.errors import ModelError

CHUNK = 1 << 20
TIMEOUT_S = 60


def download(url: str, dest: Path, sha256: str | None, *, size: int | None = None,
             label: str = "", progress: bool = True) -> str:
    """Download ``url`` to ``dest``; return the file's sha256 (checked when ``sha256`` is given)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "kk-voicebot-models"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or size
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=label or dest.name, disable=not progress, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        raise ModelError(f"{label or dest.name}: download from {url} failed: {exc}") from None
    got = digest.hexdigest()
    if sha256 and got.lower() != sha256.lower():
        part.unlink(missing_ok=True)
        raise ModelError(f"{label or dest.name}: checksum mismatch for {url}: expected sha256 "
                         f"{sha256}, got {got}; the partial file was removed")
    if size is not None and part.stat().st_size != size:
        n = part.stat().st_size
        part.unlink(missing_ok=True)
        raise ModelError(f"{label or dest.name}: expected {size} bytes from {url}, got {n}; "
                         "the partial file was removed")
    shutil.move(part, dest)
    return got


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
