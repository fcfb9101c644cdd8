"""SIP and SDP on the wire: parse and build messages, digest authentication. Pure functions.

Only what a test caller / test agent needs against Asterisk over UDP (RFC 3261 subset):
requests and responses with headers and a body, compact header names, RFC 2617/7616 MD5 digest
with and without qop=auth, and a one-stream audio SDP.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
            "c": "content-type", "k": "supported"}


@dataclass
class SipMessage:
    start: str  # "INVITE sip:x@y SIP/2.0" or "SIP/2.0 200 OK"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    # ---- start line ----------------------------------------------------------------------------
    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.start.split()[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        return self.cseq[1] if self.is_response else self.start.split()[0]

    @property
    def uri(self) -> str:
        return self.start.split()[1]

    # ---- headers ---------------------------------------------------------------------------------
    def get(self, name: str, default: str = "") -> str:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def set(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()] + [(name, value)]

    @property
    def call_id(self) -> str:
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        num, _, method = self.get("cseq").partition(" ")
        return int(num or 0), method.strip()

    @property
    def branch(self) -> str:
        m = re.search(r";\s*branch=([^;\s,]+)", self.get("via"))
        return m.group(1) if m else ""

    def encode(self) -> bytes:
        body = self.body.encode()
        lines = [self.start] + [f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(data: bytes) -> SipMessage | None:
    """Parse one UDP datagram; None when it is not SIP (e.g. a keep-alive)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    if not lines or not ("SIP/2.0" in lines[0]):
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
            continue
        k, sep, v = line.partition(":")
        if sep:
            k = k.strip()
            headers.append((_COMPACT.get(k.lower(), k) if len(k) == 1 else k, v.strip()))
    return SipMessage(lines[0], headers, body)


def tag_of(header: str) -> str:
    m = re.search(r";\s*tag=([^;\s>]+)", header)
    return m.group(1) if m else ""


def uri_of(header: str) -> str:
    """The URI inside a From/To/Contact value: ``"Bob" <sip:b@h>;tag=1`` → ``sip:b@h``."""
    m = re.search(r"<([^>]+)>", header)
    return m.group(1) if m else header.split(";")[0].strip()


def new_tag() -> str:
    return os.urandom(6).hex()


def new_branch() -> str:
    return "z9hG4bK" + os.urandom(8).hex()


# ---- digest authentication --------------------------------------------------------------------


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def parse_challenge(value: str) -> dict[str, str]:
    """``Digest realm="asterisk",nonce="abc",qop="auth"`` → dict."""
    _, _, params = value.partition(" ")
    return {k.lower(): v for k, v in re.findall(r'(\w+)\s*=\s*"?([^",]*)"?', params)}


def digest_authorization(challenge: dict[str, str], method: str, uri: str, user: str,
                         password: str, nc: int = 1, cnonce: str | None = None) -> str:
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"', "algorithm=MD5"]
    if "auth" in challenge.get("qop", "").split(","):
        cnonce = cnonce or os.urandom(8).hex()
        response = _md5(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


# ---- SDP ------------------------------------------------------------------------------------------

DTMF_PT = 101


def audio_sdp(host: str, port: int, session_id: int = 1) -> str:
    """Offer/answer for one PCMU audio stream with RFC 4733 telephone events."""
    return "\r\n".join([
        "v=0", f"o=- {session_id} {session_id} IN IP4 {host}", "s=kk-voicebot", f"c=IN IP4 {host}", "t=0 0",
        f"m=audio {port} RTP/AVP 0 {DTMF_PT}", "a=rtpmap:0 PCMU/8000",
        f"a=rtpmap:{DTMF_PT} telephone-event/8000", f"a=fmtp:{DTMF_PT} 0-16", "a=ptime:20", "a=sendrecv", "",
    ])


def sdp_audio_address(sdp: str) -> tuple[str, int] | None:
    """The (host, port) of the first audio stream, or None."""
    host = None
    port = None
    for line in sdp.splitlines():
        if line.startswith("c=IN IP4 "):
            host = host or line.split()[2]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    return (host, port) if host and port else None
