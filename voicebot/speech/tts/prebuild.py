"""Pre-synthesize every fixed text the bot says, so a call never waits for synthesis.

``dialogue_texts`` lists every line the phone dialogue may say (the engine's ``known_lines``:
fixed lines, answers, follow-ups, department and menu lines); ``prebuild`` synthesizes each text
once and stores it in every cache (one per call rate) that lacks it.
Texts with a playable recording are not synthesized: the recording plays instead.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from voicebot.errors import EngineError
from voicebot.speech.tts.cache import TTSCache, normalize_text
from voicebot.speech.tts.recordings import RecordingError, load_recording

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SpokenText:
    source: str  # "prompt greeting", "article pas-fornyelse", "article pas-fornyelse followup pris"
    text: str
    recording: Path | None = None


@dataclasses.dataclass
class BuildReport:
    texts: int = 0
    synthesized: int = 0  # texts synthesized now (stored at every rate that lacked them)
    cached: int = 0  # texts already cached at every rate
    recordings: int = 0  # texts that play a recording instead
    failed: list[str] = dataclasses.field(default_factory=list)  # "source: error"
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.texts} texts: {self.synthesized} synthesized, {self.cached} already cached, "
                f"{self.recordings} recordings, {len(self.failed)} failed in {self.seconds:.1f} s")


def prompt_texts(prompts: dict[str, str], recordings: dict[str, Path]) -> list[SpokenText]:
    return [SpokenText(f"prompt {name}", text, recordings.get(name)) for name, text in prompts.items()]


def dedupe(items: Iterable[SpokenText]) -> list[SpokenText]:
    """One item per distinct spoken text (a recording makes a text distinct)."""
    seen: dict[tuple[str, Path | None], SpokenText] = {}
    for item in items:
        if item.text.strip():
            seen.setdefault((normalize_text(item.text), item.recording), item)
    return list(seen.values())


def prebuild(items: Sequence[SpokenText], caches: Sequence[TTSCache], *, jobs: int = 1,
             progress: bool = True) -> BuildReport:
    """Fill ``caches`` with every item's audio; a failing text is reported, not fatal. ``items``
    must be fixed lines (never built from what a caller said): they are written to disk."""
    assert len({id(c.engine) for c in caches}) == 1, "all caches must share one engine"
    start = time.monotonic()
    report = BuildReport(texts=len(items))
    for cache in caches:  # fixed lines by construction: the disk cache may keep them
        cache.declare_known(item.text for item in items)
    rate = caches[0].rate
    pending = []
    for item in items:
        if item.recording is not None and _playable(item.recording, rate):
            report.recordings += 1
        elif all(c.has(item.text) for c in caches):
            report.cached += 1
        else:
            pending.append(item)
    if pending:
        caches[0].engine.prepare()  # a missing SDK or model fails once, here, not per text
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            tqdm(total=len(items), initial=len(items) - len(pending), unit="text",
                 desc="prompts", disable=not progress) as bar:
        for item, error in pool.map(lambda i: (i, _synthesize(i, caches)), pending):
            if error:
                report.failed.append(f"{item.source}: {error}")
            else:
                report.synthesized += 1
            bar.update(1)
    report.seconds = time.monotonic() - start
    return report


def _synthesize(item: SpokenText, caches: Sequence[TTSCache]) -> str | None:
    missing = [c for c in caches if not c.has(item.text)]
    try:
        synthesized = missing[0].engine.synthesize(normalize_text(item.text)) if missing else None
    except EngineError as exc:
        log.warning("synthesis failed", extra={"source": item.source, "error": str(exc)})
        return str(exc)
    for cache in missing:
        cache.store(item.text, synthesized)
    return None


def _playable(path: Path, rate: int) -> bool:
    try:
        load_recording(path, rate)
        return True
    except (OSError, RecordingError) as exc:
        log.warning("recording not playable; its text is synthesized instead",
                    extra={"file": str(path), "error": str(exc)})
        return False


def dialogue_texts(settings, kb) -> list[SpokenText]:
    """Every line the phone dialogue may say with knowledge ``kb`` (fixed lines, answers,
    follow-ups, department and menu lines), each with its recording when one is configured."""
    from voicebot.dialogue.runtime import engine_for
    from voicebot.speech.tts.speech_out import fixed_prompts, prompt_recordings

    prompts = fixed_prompts(settings)
    recorded = {normalize_text(prompts[name]): path
                for name, path in prompt_recordings(settings, prompts).items()}
    recorded |= {normalize_text(a.answer_voice): a.recording for a in kb.articles if a.recording}
    lines = engine_for(settings, kb, None).known_lines()  # no matcher needed to list lines
    return dedupe(SpokenText("dialogue", line, recorded.get(normalize_text(line))) for line in lines)


def prebuild_for_calls(settings, engine, cache: TTSCache) -> BuildReport:
    """Synthesize every line the dialogue ``engine`` may say into the call-rate ``cache`` (what
    ``voicebot serve`` does at start-up and before a knowledge reload switches over)."""
    report = prebuild(dialogue_texts(settings, engine.kb), [cache], jobs=2, progress=False)
    log.info("prompts ready", extra={"summary": report.summary()})
    return report
