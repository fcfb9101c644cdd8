"""Structured logs: one line per event, ``key=value`` pairs, the call's channel id when known.

Use ``log.info("call answered", extra={"channel": chan_id, "number": "33663366"})``: every
``extra`` field is printed as ``key=value``.
"""

from __future__ import annotations

import logging
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        ms = int(record.msecs)
        fields = [f"{ts}.{ms:03d}", record.levelname.lower(), record.name, repr(record.getMessage())]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                fields.append(f"{key}={_quote(value)}")
        line = " ".join(fields)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value: object) -> str:
    text = str(value)
    return repr(text) if (not text or any(c in text for c in " =\"'\n")) else text


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "panoramisk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
