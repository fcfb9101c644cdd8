"""Which web sites may use the chat API from their pages (``chat.allowed_origins``).

The widget runs on other sites' pages, so the API answers cross-origin requests. With no list
(the default) any site may embed it (``Access-Control-Allow-Origin: *``). With a list, a browser
request from any other site's page is refused (403) and the allowed ones get their own origin
back (with ``Vary: Origin``), so another site cannot put the municipality's bot on its pages.
Browsers always send ``Origin`` on a cross-site fetch, and on a POST; a request without one (the
bot's own /chat page loading, curl, monitoring) is not a cross-site page and passes. This is no
authentication: a script outside a browser can send any Origin (rate limits still apply).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_ORIGIN = re.compile(r"^https?://(\*\.)?[a-z0-9.-]+(:\d{1,5})?$")


def check_patterns(patterns: list[str]) -> None:
    """ValueError naming the first entry that is not ``scheme://host[:port]`` (or ``*.host``)."""
    for p in patterns:
        if not isinstance(p, str) or not _ORIGIN.match(p):
            raise ValueError(f"allowed_origins: {p!r} is not an origin like https://www.kk.dk or "
                             "https://*.kk.dk (scheme and host, no path or trailing slash)")


class OriginPolicy:
    def __init__(self, patterns: list[str]) -> None:
        check_patterns(patterns)
        self.patterns = [p.lower() for p in patterns]

    @property
    def open(self) -> bool:
        return not self.patterns

    def allows(self, origin: str | None, own_host: str = "") -> bool:
        """Whether a request with this ``Origin`` header may use the API (``own_host``: the
        request's Host, so the bot's own /chat page always may)."""
        if self.open or origin is None:
            return True
        origin = origin.lower()
        parts = urlsplit(origin)
        if own_host and parts.netloc == own_host.lower():
            return True
        for pattern in self.patterns:
            if "://*." in pattern:
                scheme, _, suffix = pattern.partition("://*.")
                host_port = parts.netloc
                if parts.scheme == scheme and host_port.endswith("." + suffix):
                    return True
            elif origin == pattern:
                return True
        return False

    def headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of a response to an allowed request."""
        if self.open:
            return {"Access-Control-Allow-Origin": "*"}
        if origin is None:
            return {"Vary": "Origin"}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
