"""The project's exception tree, in one place.

VoicebotError
├── ConfigError        bad configuration or knowledge file (names file, line, key)
├── ModelError         a model is missing, corrupt or fails its checksum
├── EngineError        an ASR/TTS/VAD engine failed at run time (caller goes to a human)
└── TelephonyError     ARI/AMI/SIP/RTP trouble
    └── AriError       an ARI REST call returned an error status
"""

from __future__ import annotations


class VoicebotError(Exception):
    """Base class of every error the project raises on purpose."""

    #: whether retrying the same operation later may succeed
    retryable: bool = False


class ConfigError(VoicebotError):
    """A configuration problem, located as precisely as we can."""

    def __init__(self, problem: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        parts = [p for p in (where, self.key) if p]
        return (": ".join(parts) + ": " if parts else "") + self.problem


class ModelError(VoicebotError):
    """A model is not installed, or its files are wrong."""


class EngineError(VoicebotError):
    """A speech engine failed; the call should be handed to a human."""

    retryable = True


class TelephonyError(VoicebotError):
    """Trouble talking to Asterisk or the SIP/RTP peer."""

    retryable = True


class AriError(TelephonyError):
    """An ARI REST request failed."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method, self.path, self.status, self.body = method, path, status, body
        super().__init__(f"ARI {method} {path} -> {status}: {body[:200]}")
        self.retryable = status >= 500
