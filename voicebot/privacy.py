"""Personal data that must never reach a record or a log: CPR numbers, other long numbers, callers.

``redact`` is applied by the store to every text it writes (a last line of defence, whatever the
channel did) and may be applied to log lines. It has to catch a CPR number however it arrived:
typed (``010190-1234``), grouped (``01 01 90 12 34``) or spoken and transcribed by ASR as digits
or Danish number words (``nul en nul en halvfems tolv fireogtredive``). Small numbers in ordinary
sentences ("3 børn", "klokken 14") are kept: only runs of 8 or more digits are removed.

Callers are identified in records only by a keyed hash (``caller_hash``) and the last two digits,
so ops can tell repeat callers apart without the store holding a phone number.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

CPR = "[CPR]"
NUMBER = "[NUMMER]"
SALT_ENV = "VOICEBOT_RECORD_SALT"
SALT_FILE = Path("var") / "record-salt"

# ---------------------------------------------------------------------------------------------
# Danish number words, as an ASR transcribes spoken digits and pairs ("nul en", "halvfems")

_UNITS = {"en": 1, "én": 1, "et": 1, "ét": 1, "to": 2, "tre": 3, "fire": 4, "fem": 5, "seks": 6,
          "syv": 7, "otte": 8, "ni": 9}
_SMALL = {"nul": 0, **_UNITS, "ti": 10, "elleve": 11, "tolv": 12, "tretten": 13, "fjorten": 14,
          "femten": 15, "seksten": 16, "sytten": 17, "atten": 18, "nitten": 19}
_TENS = {"tyve": 20, "tredive": 30, "tredve": 30, "fyrre": 40, "fyrretyve": 40, "halvtreds": 50,
         "halvtredsindstyve": 50, "tres": 60, "tresindstyve": 60, "halvfjerds": 70,
         "halvfjerdsindstyve": 70, "firs": 80, "firsindstyve": 80, "halvfems": 90,
         "halvfemsindstyve": 90}
_WORDS = {**_SMALL, **_TENS}


def _alt(words) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


# "fireogtredive", "fire og tredive", "fire-og-tredive" = 34
_COMPOUND = rf"(?P<cu>{_alt(_UNITS)})\s*-?\s*og\s*-?\s*(?P<ct>{_alt(_TENS)})"
_TOKEN = re.compile(
    rf"(?<![\w+])(?P<digits>\+?\d+)(?!\w)"
    rf"|\b(?:{_COMPOUND}|(?P<word>{_alt(_WORDS)}))\b",
    re.IGNORECASE)
# what may stand between the parts of one number: spaces, a dash (typed or said: "streg"), or
# punctuation then a space ("tolv, fire"); not "og", "til" or a bare dot/comma ("1 til 5", "1.500")
_SEPARATOR = re.compile(r"\s*[-–]\s*|\s*[,;:.]?\s+|\s+(?:binde)?streg\s+", re.IGNORECASE)


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    digits: str


def _digits(match: re.Match[str]) -> str:
    if match.group("digits"):
        return match.group("digits").lstrip("+")
    if match.group("cu"):
        return str(_UNITS[match.group("cu").lower()] + _TENS[match.group("ct").lower()])
    value = _WORDS[match.group("word").lower()]
    return str(value)


def _runs(text: str) -> list[list[_Token]]:
    """Number tokens grouped into runs that read as one number (separated only by spaces/dashes)."""
    runs: list[list[_Token]] = []
    for m in _TOKEN.finditer(text):
        token = _Token(m.start(), m.end(), _digits(m))
        if runs and _SEPARATOR.fullmatch(text[runs[-1][-1].end:m.start()]):
            runs[-1].append(token)
        else:
            runs.append([token])
    return runs


def is_cpr(digits: str) -> bool:
    """Ten digits whose first six are a date (day 61-91 too: substitute numbers add 60 to the day)."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    day, month = int(digits[:2]), int(digits[2:4])
    return (1 <= day <= 31 or 61 <= day <= 91) and 1 <= month <= 12


def _spans(run: list[_Token]) -> list[tuple[int, int, str]]:
    """Where to cut in one run: CPR numbers first, then any rest of 8 or more digits."""
    spans: list[tuple[int, int, str]] = []
    rest: list[_Token] = []

    def flush() -> None:
        if sum(len(t.digits) for t in rest) >= 8:
            spans.append((rest[0].start, rest[-1].end, NUMBER))
        rest.clear()

    i = 0
    while i < len(run):
        j, acc = i, ""
        while j < len(run) and len(acc) < 10:
            acc += run[j].digits
            j += 1
        if is_cpr(acc):
            flush()
            spans.append((run[i].start, run[j - 1].end, CPR))
            i = j
        else:
            rest.append(run[i])
            i += 1
    flush()
    return spans


def redact(text: str, *, keep_numbers: bool = False) -> str:
    """``text`` with CPR numbers replaced by ``[CPR]`` and other runs of 8+ digits (phone, card,
    account numbers) by ``[NUMMER]``. ``keep_numbers`` removes only CPR numbers (for an SMS text
    that legitimately carries a phone number)."""
    if not text:
        return text
    spans = [s for run in _runs(text) if sum(len(t.digits) for t in run) >= 8 for s in _spans(run)]
    if keep_numbers:
        spans = [s for s in spans if s[2] == CPR]
    for start, end, label in sorted(spans, reverse=True):
        text = text[:start] + label + text[end:]
    return text


# ---------------------------------------------------------------------------------------------
# caller ids

# Danish mobile series. Source: the Danish numbering plan as summarized in Wikipedia's
# "Telephone numbers in Denmark" (mobile: 20-31, 40-42, 50-53, 60-61, 71, 81, 91-93; everything
# else is landline, service or spare). The 2016 plan also moved a few 3-digit blocks inside
# landline series to mobile (e.g. 431x); those are not listed here, so such a caller is simply not
# offered an SMS - the safe side of the mistake. Numbers are portable between operators but stay
# in their series, so the prefix still tells mobile from landline.
MOBILE_PREFIXES = ("2", "30", "31", "40", "41", "42", "50", "51", "52", "53", "60", "61", "71", "81",
                   "91", "92", "93")


def _danish_national(number: str) -> str | None:
    """The 8-digit national number of a Danish caller id (+45/0045/45 prefixes removed)."""
    raw = re.sub(r"[\s\-().]", "", number or "")
    if raw.startswith("+"):
        if not raw.startswith("+45"):
            return None
        raw = raw[3:]
    elif raw.startswith("0045"):
        raw = raw[4:]
    elif len(raw) == 10 and raw.startswith("45"):
        raw = raw[2:]
    return raw if len(raw) == 8 and raw.isdigit() else None


def danish_mobile(number: str) -> str | None:
    """``+45XXXXXXXX`` when ``number`` is a Danish mobile number (an SMS can reach it), else None."""
    national = _danish_national(number)
    if national is None or not national.startswith(MOBILE_PREFIXES):
        return None
    return "+45" + national


def normalize_number(number: str) -> str:
    """One spelling per number, so ``+45 20 12 34 56`` and ``20123456`` hash alike."""
    national = _danish_national(number)
    if national is not None:
        return "+45" + national
    text = (number or "").strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    return digits


def caller_hash(number: str, salt: bytes) -> str:
    """A keyed hash of the caller id: stable per caller, useless without the salt."""
    normalized = normalize_number(number).encode()
    return hmac.new(salt, normalized, hashlib.sha256).hexdigest()[:16]


def caller_tail(number: str) -> str:
    """The last two digits, which staff may use to find a call a citizen asks about."""
    return re.sub(r"\D", "", number or "")[-2:]


def record_salt(root: Path | None = None) -> bytes:
    """The key for ``caller_hash``: ``$VOICEBOT_RECORD_SALT``, else ``var/record-salt`` under the
    project root, made (32 random bytes, mode 0600) the first time it is needed."""
    env = os.environ.get(SALT_ENV)
    if env:
        return env.encode()
    if root is None:
        from voicebot.config import PROJECT_ROOT
        root = PROJECT_ROOT
    path = root / SALT_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # write a private temporary file, then link it into place: atomic, and never a half-written salt
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first: use theirs
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()
