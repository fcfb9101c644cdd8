"""Step scripts for ``voicebot call --script``: what a test caller does, in order, as YAML.

    - wait_bot: true                      # the greeting: the bot spoke, then ~0.8 s of quiet
    - say: "Hvornår har genbrugspladsen åbent?"
    - wait_bot: true
    - dtmf: "1"
    - play: svar.wav                      # relative to this file; any rate, 16-bit
    - wait: 2.5
    - hangup: true                        # without it: wait for the bot to hang up (or --timeout)

Files are validated like settings, so errors name file, line and key. The INVITE carries
``X-Voicebot-Ref`` (an id the bot stores with its record of the call, so the caller can fetch
the outcome afterwards) and ``X-Voicebot-Asr-Script`` (what the caller will say, for the bot's
declared test recognizer in call-flow tests; real recognizers ignore it).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voicebot.config import _Validator, load_yaml
from voicebot.errors import ConfigError, VoicebotError
from voicebot.sip.caller import RATE, CallReport, CallScript, LiveCall, place_call
from voicebot.speech.asr.script import HEADER
from voicebot.speech.asr.script import encode_script as encode_asr_script
from voicebot.speech.audio import read_wav, resample

REF_HEADER = "X-Voicebot-Ref"
ASR_SCRIPT_HEADER = HEADER
# the whole ASR header line: keeps the INVITE well inside one UDP datagram next to SDP and auth
MAX_HEADER_BYTES = 1300
WAIT_BOT_GAP_S = 0.8  # quiet after the bot's speech that ends its turn (as the classic caller)
DTMF_KEYS = "0123456789*#ABCD"
KINDS = ("say", "play", "dtmf", "wait_bot", "wait", "hangup")

Tts = Callable[[str], np.ndarray]  # text -> 8 kHz int16 samples


@dataclasses.dataclass
class Step:
    """One script entry; exactly one field is set."""

    say: str | None = None
    play: str | None = None
    dtmf: str | int | None = None  # int only to explain that keys must be quoted
    wait_bot: bool | None = None
    wait: float | None = None
    hangup: bool | None = None

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def value(self) -> str | float | bool:
        return getattr(self, self.kind)

    @property
    def is_speech(self) -> bool:
        return self.kind in ("say", "play")

    def validate(self) -> None:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            got = f", got {' and '.join(given)}" if given else ""
            raise ValueError(f"a step needs exactly one of {', '.join(KINDS)}{got}")
        kind = given[0]
        if kind == "say" and not self.say.strip():
            raise ValueError("say: nothing to say")
        if kind == "play" and not self.play.strip():
            raise ValueError("play: expected a WAV file path")
        if kind == "dtmf":
            if isinstance(self.dtmf, int):
                raise ValueError(f'dtmf: write the keys in quotes, e.g. dtmf: "{self.dtmf}"')
            if not self.dtmf or any(c.upper() not in DTMF_KEYS for c in self.dtmf):
                raise ValueError(f"dtmf: keys must be 0-9, *, #, A-D; got {self.dtmf!r}")
        if kind in ("wait_bot", "hangup") and self.value is not True:
            raise ValueError(f"{kind}: write `{kind}: true`")
        if kind == "wait" and not 0 <= self.wait <= 3600:
            raise ValueError("wait: must be 0-3600 seconds")


def load_script(path: str | Path) -> list[Step]:
    """Read and validate a step script; ``play`` paths come back absolute (relative ones are
    relative to the script file)."""
    data, where = load_yaml(path)
    if not isinstance(data, list):
        raise ConfigError("expected a list of steps", file=str(path), line=1)
    if not data:
        raise ConfigError("the script has no steps", file=str(path), line=1)
    validator = _Validator(where)
    steps = [validator.build(Step, entry, f"[{i}]") for i, entry in enumerate(data)]
    base = Path(path).resolve().parent
    for i, step in enumerate(steps):
        if step.play is not None:
            wav = base / Path(step.play).expanduser()
            if not wav.is_file():
                raise validator.error(f"[{i}].play", f"file not found: {wav}")
            step.play = str(wav)
        if step.hangup and i < len(steps) - 1:
            raise validator.error(f"[{i + 1}]", "steps after `hangup` would never run")
    return steps


# ---- INVITE headers ----------------------------------------------------------------------------


def new_ref() -> str:
    return uuid.uuid4().hex


def asr_script(steps: list[Step]) -> list[str | None]:
    """One entry per speech step: the ``say`` text, or None for a recording (text unknown)."""
    return [s.say if s.kind == "say" else None for s in steps if s.is_speech]


def call_headers(steps: list[Step], ref: str, source: str | None = None) -> list[tuple[str, str]]:
    """The INVITE's extra headers; ConfigError when the speech texts do not fit one UDP INVITE."""
    headers = [(REF_HEADER, ref)]
    entries = asr_script(steps)
    if entries:
        value = encode_asr_script(entries)
        size = len(f"{ASR_SCRIPT_HEADER}: {value}\r\n")
        if size > MAX_HEADER_BYTES:
            raise ConfigError(f"the say texts are too long for one UDP INVITE: the {ASR_SCRIPT_HEADER} "
                              f"header would be {size} bytes (limit {MAX_HEADER_BYTES}, about "
                              f"{MAX_HEADER_BYTES * 3 // 4 - 20} bytes of UTF-8 JSON); shorten them or "
                              "split the script", file=source)
        headers.append((ASR_SCRIPT_HEADER, value))
    return headers


# ---- running ------------------------------------------------------------------------------------


def render(steps: list[Step], tts: Tts) -> list[np.ndarray | None]:
    """The 8 kHz audio of each speech step (None for the others), made before dialling so that
    synthesis time never shows up in the call's timings."""
    out: list[np.ndarray | None] = []
    for step in steps:
        if step.say is not None:
            out.append(tts(step.say))
        elif step.play is not None:
            try:
                samples, rate = read_wav(step.play)
            except (OSError, ValueError, EOFError) as exc:
                raise VoicebotError(f"cannot read {step.play}: {exc}") from None
            out.append(resample(samples, rate, RATE))
        else:
            out.append(None)
    return out


def espeak_tts(text: str) -> np.ndarray:
    """Danish espeak-ng at 8 kHz, as ``voicebot call --say``."""
    from voicebot.speech.tts.espeak import EspeakTTS

    out = EspeakTTS().synthesize(text)
    return resample(out.samples, out.rate, RATE)


async def run_steps(steps: list[Step], audio: list[np.ndarray | None], call: LiveCall) -> None:
    """Run the steps in order, recording each in ``call.report.steps``; then (no ``hangup`` step)
    wait for the bot to hang up. The caller of this bounds it with the call's timeout."""
    previous_start = consumed = 0.0
    for step, samples in zip(steps, audio):
        if call.ended:
            break
        start = call.now_ms()
        entry: dict = {"step": step.kind, "value": step.value, "start_ms": int(start), "end_ms": None,
                       "completed": False}
        call.report.steps.append(entry)
        done = True
        if samples is not None:
            speech = await call.say(samples)
            entry["speech_ms"] = [int(speech[0]), int(speech[1])]
        elif step.dtmf is not None:
            await call.press(str(step.dtmf))
        elif step.wait_bot:
            # the bot's turn is what it says after the previous step began, after the caller's
            # last speech ended (a barged-in greeting is not the answer) and after the turn an
            # earlier wait_bot already waited for
            since = max(previous_start, call.spoke_until_ms or 0.0, consumed)
            done = await call.wait_bot(since, WAIT_BOT_GAP_S)
            consumed = call.now_ms()
        elif step.wait is not None:
            await call.sleep(step.wait)
        elif step.hangup:
            await call.hangup()
        entry["end_ms"] = int(call.now_ms())
        entry["completed"] = done and (step.kind == "hangup" or not call.ended)
        previous_start = start
    if not call.ended:
        await call.dialog.ended.wait()


async def run_script(steps: list[Step], audio: list[np.ndarray | None], number: str, user: str,
                     password: str, *, ref: str, server: tuple[str, int] = ("127.0.0.1", 5060),
                     host: str = "127.0.0.1", timeout: float = 60.0, source: str | None = None,
                     caller_id: str | None = None) -> CallReport:
    """Dial ``number`` with the script's headers and run it; ``timeout`` bounds the whole call.
    ``caller_id`` is sent as P-Asserted-Identity, as a contact-centre platform's trunk does (the
    softphone endpoint trusts it), e.g. to call from a mobile number that can receive an SMS."""
    headers = call_headers(steps, ref, source)
    if caller_id:
        headers.append(("P-Asserted-Identity", f"<sip:{caller_id}@{server[0]}>"))
    script = CallScript(number, max_seconds=timeout, headers=headers)
    return await place_call(script, user, password, server, host,
                            drive=lambda call: run_steps(steps, audio, call))
