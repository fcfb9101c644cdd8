"""Scripted test calls: the YAML step format, the INVITE headers, and a real call on 127.0.0.1.

The far end is the project's own ``SipUA`` answering on a free local port with a tiny "bot": it
plays a greeting tone, answers each caller utterance with another tone, and records the RFC 4733
key presses it receives. No Asterisk involved.
"""

from __future__ import annotations

import asyncio
import struct
import time

import numpy as np
import pytest

from voicebot.errors import ConfigError
from voicebot.sip.caller import RATE, CallScript, place_call
from voicebot.sip.message import audio_sdp, sdp_audio_address
from voicebot.sip.script import (ASR_SCRIPT_HEADER, MAX_HEADER_BYTES, REF_HEADER, Step, asr_script,
                                 call_headers, load_script, new_ref, render, run_script)
from voicebot.speech.asr.script import decode_script as decode_asr_script
from voicebot.speech.asr.script import encode_script as encode_asr_script
from voicebot.sip.ua import IncomingCall, SipUA
from voicebot.speech.audio import dbfs, write_wav
from voicebot.telephony import rtp
from voicebot.telephony.rtp import CODECS, RtpEndpoint, RtpSender

PCMU = CODECS["ulaw"]


def tone(seconds: float, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def fake_tts(text: str) -> np.ndarray:
    return tone(0.4)


def write(tmp_path, text: str):
    path = tmp_path / "script.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- the file format ------------------------------------------------------------------------------


def test_script_loads_steps_and_resolves_play_relative_to_the_file(tmp_path):
    write_wav(tmp_path / "svar.wav", tone(0.2, 16000), 16000)
    steps = load_script(write(tmp_path, '- wait_bot: true\n- say: "Hej"\n- play: svar.wav\n'
                                        '- dtmf: "1#"\n- wait: 1.5\n- hangup: true\n'))
    assert [s.kind for s in steps] == ["wait_bot", "say", "play", "dtmf", "wait", "hangup"]
    assert steps[2].play == str(tmp_path / "svar.wav")
    assert steps[4].wait == 1.5
    audio = render(steps, fake_tts)
    assert audio[0] is None and len(audio[1]) == int(0.4 * RATE)
    assert abs(len(audio[2]) - int(0.2 * RATE)) <= 2  # resampled from 16 kHz


@pytest.mark.parametrize("text, where, problem", [
    ('- say: "a"\n- say: "b"\n  dtmf: "1"\n', ":2: [1]:", "exactly one of"),
    ('- say: "a"\n- sya: "b"\n', ":2: [1].sya:", "unknown key"),
    ('- wait: 1\n- dtmf: "1x"\n', ":2: [1].dtmf:", "keys must be"),
    ("- dtmf: 5\n", ":1: [0].dtmf:", 'in quotes, e.g. dtmf: "5"'),
    ("- wait_bot: false\n", ":1: [0].wait_bot:", "wait_bot: true"),
    ("- wait: -1\n", ":1: [0].wait:", "0-3600"),
    ("- wait: soon\n", ":1: [0].wait:", "expected a number"),
    ("- say: hi\n- play: nowhere.wav\n", ":2: [1].play:", "file not found"),
    ("- hangup: true\n- wait: 1\n", ":2: [1]:", "never run"),
    ("say: hi\n", ":1:", "expected a list of steps"),
    ("[]\n", ":1:", "no steps"),
])
def test_script_errors_name_file_line_and_key(tmp_path, text, where, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_script(path)
    message = str(err.value)
    assert message.startswith(f"{path}{where}"), message
    assert problem in message


# ---- the headers -------------------------------------------------------------------------------------


def test_asr_script_round_trips_danish_text_without_padding():
    entries = ["Hvornår åbner genbrugspladsen?", None, "Tak, farvel"]
    value = encode_asr_script(entries)
    assert "=" not in value and "+" not in value and "/" not in value
    assert decode_asr_script(value) == entries
    with pytest.raises(ValueError):
        decode_asr_script(encode_asr_script([]) + "!!")
    with pytest.raises(ValueError):
        decode_asr_script("eyJhIjoxfQ")  # {"a":1}: not a list


def test_headers_carry_ref_and_speech_steps_in_order():
    steps = [Step(wait_bot=True), Step(say="Hej"), Step(dtmf="1"), Step(play="/x.wav"), Step(say="Farvel")]
    ref = new_ref()
    headers = dict(call_headers(steps, ref))
    assert len(ref) == 32 and headers[REF_HEADER] == ref
    assert decode_asr_script(headers[ASR_SCRIPT_HEADER]) == ["Hej", None, "Farvel"] == asr_script(steps)
    assert ASR_SCRIPT_HEADER not in dict(call_headers([Step(dtmf="1")], ref))  # no speech, no header


def test_too_long_script_is_a_clear_error():
    steps = [Step(say="Jeg vil gerne høre om åbningstiderne på genbrugspladsen " * 4) for _ in range(6)]
    with pytest.raises(ConfigError, match=rf"too long for one UDP INVITE.*limit {MAX_HEADER_BYTES}") as err:
        call_headers(steps, new_ref(), source="long.yaml")
    assert str(err.value).startswith("long.yaml: ")


# ---- a scripted call against a local answering UA --------------------------------------------------------


class FarEndpoint(RtpEndpoint):
    """An RTP endpoint that also keeps the RFC 4733 key presses it receives."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.keys: dict[int, str] = {}  # event timestamp -> key

    def datagram_received(self, data: bytes, addr) -> None:
        p = rtp.parse(data)
        if p is not None and p.payload_type == 101 and len(p.payload) >= 4:
            event, flags, _ = struct.unpack("!BBH", p.payload[:4])
            if flags & 0x80:  # end packet (sent three times: keep one per event timestamp)
                self.keys.setdefault(p.timestamp, "0123456789*#ABCD"[event])
        super().datagram_received(data, addr)


class FakeBot:
    """Answers, says a greeting tone, answers each caller utterance with a tone, optionally hangs
    up after its reply number ``hangup_after``. Times are ms since its answer."""

    def __init__(self, greeting_s: float = 0.6, reply_s: float = 0.5, hangup_after: int | None = None) -> None:
        self.greeting_s, self.reply_s, self.hangup_after = greeting_s, reply_s, hangup_after
        self.ua = SipUA("bot", "")
        self.invite_headers: dict[str, str] = {}
        self.dialog = None
        self.endpoint: FarEndpoint | None = None
        self.spoke_ms: list[tuple[int, int]] = []  # what the bot played
        self.heard: list[tuple[float, bool]] = []  # (ms, loud) of the caller's audio
        self.t0 = 0.0
        self.task: asyncio.Task | None = None

    async def start(self) -> FakeBot:
        await self.ua.start()
        self.ua.on_invite = self._on_invite
        return self

    @property
    def keys(self) -> str:
        return "".join(v for _, v in sorted(self.endpoint.keys.items())) if self.endpoint else ""

    def _on_frame(self, samples: np.ndarray) -> None:
        self.heard.append(((time.monotonic() - self.t0) * 1000, dbfs(samples) > -45))

    async def _on_invite(self, incoming: IncomingCall) -> None:
        self.task = asyncio.current_task()
        self.invite_headers = {k: v for k, v in incoming.request.headers if k.lower().startswith("x-")}
        self.ua.server = incoming.addr  # in-dialog requests (our BYE) go back to the caller
        self.dialog = incoming.dialog
        self.endpoint = await FarEndpoint.open("127.0.0.1", PCMU, self._on_frame,
                                               remote=sdp_audio_address(incoming.remote_sdp))
        await incoming.answer(audio_sdp("127.0.0.1", self.endpoint.local_address[1]))
        self.t0 = time.monotonic()
        sender = RtpSender(self.endpoint)
        await self._say(sender, self.greeting_s)
        replies = 0
        while not self.dialog.ended.is_set():
            await self._caller_turn_ended()
            if self.dialog.ended.is_set():
                return
            await self._say(sender, self.reply_s)
            replies += 1
            if replies == self.hangup_after:
                await self.ua.bye(self.dialog)

    async def _say(self, sender: RtpSender, seconds: float) -> None:
        start = (time.monotonic() - self.t0) * 1000
        await sender.play(tone(seconds, hz=660), self.dialog.ended)
        self.spoke_ms.append((int(start), int((time.monotonic() - self.t0) * 1000)))
        self.heard.clear()  # the bot does not listen while it speaks

    async def _caller_turn_ended(self) -> None:
        """Caller audio, then 300 ms of quiet."""
        while not self.dialog.ended.is_set():
            loud = [t for t, is_loud in self.heard if is_loud]
            now = (time.monotonic() - self.t0) * 1000
            if loud and now - loud[-1] >= 300:
                self.heard.clear()
                return
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        self.ua.close()  # cancels the call task
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        if self.endpoint is not None:
            self.endpoint.close()


async def scripted_call(bot: FakeBot, steps: list[Step], timeout: float = 10.0):
    ref = new_ref()
    report = await run_script(steps, render(steps, fake_tts), "33663366", "softphone", "secret", ref=ref,
                              server=("127.0.0.1", bot.ua.port), timeout=timeout)
    return report, ref


@pytest.mark.timeout(30)
async def test_scripted_call_runs_steps_in_order_and_carries_the_headers(tmp_path):
    write_wav(tmp_path / "svar.wav", tone(0.3, 16000), 16000)
    steps = load_script(write(tmp_path, '- wait_bot: true\n- say: "Hvornår åbner I?"\n- wait_bot: true\n'
                                        '- play: svar.wav\n- wait_bot: true\n- dtmf: "12"\n'
                                        '- wait: 0.3\n- hangup: true\n'))
    bot = await FakeBot().start()
    try:
        report, ref = await scripted_call(bot, steps)
        await asyncio.sleep(0.1)
    finally:
        await bot.aclose()
    assert report.answered and not report.timed_out
    assert report.hangup_by == "caller" and bot.dialog.ended_by == "remote"  # the hangup step's BYE
    assert bot.invite_headers[REF_HEADER] == ref
    assert decode_asr_script(bot.invite_headers[ASR_SCRIPT_HEADER]) == ["Hvornår åbner I?", None]

    s = report.steps
    assert [x["step"] for x in s] == [st.kind for st in steps]
    assert all(x["completed"] for x in s), s
    starts = [x["start_ms"] for x in s]
    assert starts == sorted(starts)
    assert all(a["end_ms"] <= b["start_ms"] + 1 for a, b in zip(s, s[1:]))

    # the bot spoke three times: greeting, reply to the say, reply to the play
    segments = report.bot_segments_ms
    assert len(segments) == 3, segments
    assert report.first_audio_ms is not None and report.first_audio_ms < 500
    for wait_step, segment in ((s[0], segments[0]), (s[2], segments[1]), (s[4], segments[2])):
        quiet = wait_step["end_ms"] - segment[1]  # wait_bot returns ~0.8 s after the bot's audio stops
        assert 700 <= quiet <= 1300, (wait_step, segment)
    # each reply came after the caller's speech, which started when the previous wait_bot returned
    assert s[1]["speech_ms"][1] <= segments[1][0] and s[3]["speech_ms"][1] <= segments[2][0]
    # the fake TTS: 0.4 s. The bounds are when the first and last frames were really sent, on the
    # test's event loop: a late loop moves either by a few ms (measured: 398 ms), never by a frame
    assert abs(s[1]["speech_ms"][1] - s[1]["speech_ms"][0] - 400) < 20

    assert bot.keys == "12"
    assert len(report.dtmf_sent_ms) == 2 and s[5]["start_ms"] <= report.dtmf_sent_ms[0]
    assert s[6]["end_ms"] - s[6]["start_ms"] >= 290  # wait: 0.3
    assert report.duration_s * 1000 >= s[7]["start_ms"]


@pytest.mark.timeout(30)
async def test_script_without_hangup_waits_for_the_bot_to_hang_up():
    bot = await FakeBot(hangup_after=1).start()
    try:
        report, _ = await scripted_call(bot, [Step(wait_bot=True), Step(say="Farvel")])
    finally:
        await bot.aclose()
    assert report.answered and report.hangup_by == "bot" and not report.timed_out
    assert all(x["completed"] for x in report.steps)
    assert len(report.bot_segments_ms) == 2
    assert report.duration_s * 1000 >= report.bot_segments_ms[1][1] - 40


@pytest.mark.timeout(30)
async def test_wait_bot_is_bounded_by_the_call_timeout():
    bot = await FakeBot().start()
    try:  # after the greeting, the silent caller never gives the bot a turn
        report, _ = await scripted_call(bot, [Step(wait_bot=True), Step(wait_bot=True), Step(hangup=True)],
                                        timeout=2.5)
    finally:
        await bot.aclose()
    assert report.answered and report.timed_out and report.hangup_by == "caller"
    assert [x["completed"] for x in report.steps] == [True, False]
    assert report.steps[1]["end_ms"] is None
    assert 2.4 <= report.duration_s <= 3.5


@pytest.mark.timeout(30)
async def test_classic_call_script_still_speaks_presses_keys_and_sends_headers():
    """``place_call`` with a plain ``CallScript`` (the integration tests' way) after the refactor."""
    bot = await FakeBot().start()
    try:
        script = CallScript("33663366", audio=tone(0.4), speak_at=1.0, dtmf=[("5", 0.2)], max_seconds=6.0,
                            quiet_hangup_s=1.0, headers=[("X-Test", "yes")])
        report = await place_call(script, "softphone", "secret", ("127.0.0.1", bot.ua.port))
    finally:
        await bot.aclose()
    assert report.answered and report.hangup_by == "caller" and not report.timed_out
    assert bot.invite_headers == {"X-Test": "yes"} and bot.keys == "5"
    assert report.caller_speech_ms is not None and 950 <= report.caller_speech_ms[0] <= 1200
    assert len(report.bot_segments_ms) == 2 and report.steps == []


# ---- the command and the bot's record ---------------------------------------------------------------


def store_settings(tmp_path):
    from voicebot.config import load_settings

    config = tmp_path / "site.yaml"
    config.write_text(f"store:\n  path: {tmp_path / 'voicebot.db'}\n", encoding="utf-8")
    return load_settings(config)


def test_fetch_record_waits_for_the_bot_to_finish_its_record_and_adds_its_sms(tmp_path):
    """Against the real store: the bot (another process in real life) finishes the record 0.5 s
    after the caller starts looking."""
    import threading

    from voicebot.commands.call import fetch_record
    from voicebot.store import Turn, open_store

    settings = store_settings(tmp_path)
    bot_store = open_store(settings)
    cid = bot_store.start_conversation(channel="voice", tenant="kk", ref="abc")
    bot_store.add_turn(cid, Turn(index=0, heard="hvornår åbner I", decision="answer", intent="hours",
                                 said=["Vi åbner klokken 10."]))
    bot_store.queue_sms(cid, "12345678", "Åbningstider: ...", article_id="hours")
    finisher = threading.Timer(0.5, bot_store.finish_conversation, (cid, "resolved"))
    finisher.start()
    try:
        t0 = time.monotonic()
        record = fetch_record(settings, "abc", timeout=5.0)
        waited = time.monotonic() - t0
    finally:
        finisher.join()
        bot_store.close()
    assert 0.4 <= waited < 3.0
    assert record["ended_at"] and record["outcome"] == "resolved" and record["ref"] == "abc"
    assert record["turns"][0]["heard"] == "hvornår åbner I" and record["turns"][0]["intent"] == "hours"
    assert [(m["text"], m["status"], m["article_id"]) for m in record["sms"]] == [
        ("Åbningstider: ...", "queued", "hours")]
    assert all("number" not in m for m in record["sms"])


def test_fetch_record_degrades_to_none_with_a_warning(tmp_path, caplog):
    from voicebot.commands.call import fetch_record
    from voicebot.store import open_store

    settings = store_settings(tmp_path)
    assert fetch_record(settings, "abc", timeout=0.3) is None  # no store here: the bot is elsewhere
    assert not (tmp_path / "voicebot.db").exists()  # and looking did not create one
    open_store(settings).close()
    assert fetch_record(settings, "unknown-ref", timeout=0.3) is None  # a store, but not this call
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert "no record store" in warnings[0] and "no record of this call" in warnings[1]


@pytest.mark.timeout(30)
def test_call_command_runs_a_script_and_prints_json(tmp_path, monkeypatch, capsys):
    """``voicebot call NUMBER --script FILE --json`` end to end, the fake bot in its own thread."""
    import json
    import threading

    from voicebot import cli
    from voicebot.commands import call as call_command

    write_wav(tmp_path / "hej.wav", tone(0.3, 16000), 16000)
    path = write(tmp_path, "- wait_bot: true\n- play: hej.wav\n- wait_bot: true\n- hangup: true\n")
    loop = asyncio.new_event_loop()
    bot = loop.run_until_complete(FakeBot().start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    refs = []
    monkeypatch.setattr(call_command, "fetch_record", lambda settings, ref: refs.append(ref) or {
        "outcome": "answered", "turns": [{"heard": None, "intent": "x", "decision": "y", "said": "z"}],
        "sms": [], "survey": None, "ended_at": "now"})
    try:
        code = cli.main(["call", "33663366", "--script", str(path), "--json", "--timeout", "10",
                         "--server", f"127.0.0.1:{bot.ua.port}", "--password", "secret"])
    finally:
        asyncio.run_coroutine_threadsafe(bot.aclose(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["answered"] and out["ref"] == refs[0] and len(out["ref"]) == 32
    assert bot.invite_headers[REF_HEADER] == out["ref"]
    assert out["hangup_by"] == "caller" and out["outcome"] == "answered" and out["turns"][0]["said"] == "z"
    assert [s["step"] for s in out["steps"]] == ["wait_bot", "play", "wait_bot", "hangup"]
    for key in ("duration_s", "first_audio_ms", "bot_segments_ms", "sms", "survey"):
        assert key in out
    assert len(out["bot_segments_ms"]) == 2


async def test_invite_refuses_header_injection():
    ua = SipUA("softphone", "secret")
    with pytest.raises(ValueError, match="invalid SIP header"):
        await ua.invite("1", "", headers=[(REF_HEADER, "x\r\nVia: evil")])
    with pytest.raises(ValueError, match="invalid SIP header"):
        await ua.invite("1", "", headers=[("X Bad", "x")])
