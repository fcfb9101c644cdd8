"""Measurements on what a caller heard: when a known prompt stopped, where speech starts.

Used by the real-call tests and by ``voicebot bench call``.
"""

from __future__ import annotations

import numpy as np

from voicebot.sip.caller import CallReport

MAX_SHIFT = 2  # frames lost or added on the way that prompt_stop_ms still follows


def prompt_stop_ms(report: CallReport, prompt: np.ndarray, rate: int = 8000) -> float | None:
    """When the caller stopped hearing ``prompt`` (ms after the answer), or None if it played out.

    Matches the received audio against the prompt frame by frame (after aligning the two by
    cross-correlation), so a reply that follows at once is not mistaken for the prompt. A frame
    lost or added on the way (inside the PBX, where the caller's sequence numbers cannot show
    it) shifts the rest of the recording by whole frames; the match follows such a shift of up to
    ``MAX_SHIFT`` frames, because the caller still hears the prompt go on.
    """
    rec = report.recording.astype(np.float64)
    ref = prompt.astype(np.float64)
    n = rate // 50
    probe = ref[: rate]  # the first second of the prompt
    window = rec[: 3 * rate + len(probe)]
    offset = int(np.argmax(np.correlate(window, probe, "valid")))
    frames = len(ref) // n
    loud = [float(np.sum(ref[k * n:(k + 1) * n] ** 2)) >= n * 100.0 ** 2 for k in range(frames)]

    def matches(k: int, at: int) -> bool:  # prompt frame k against the recording at ``at``
        got = rec[at + k * n: at + (k + 1) * n]
        want = ref[k * n:(k + 1) * n]
        return len(got) == n and float(np.sum((got - want) ** 2)) / float(np.sum(want ** 2)) <= 0.5

    def realigned(k: int) -> int | None:  # the shifted offset the prompt goes on at, if any
        ahead = [j for j in range(k, frames) if loud[j]][:3]
        if len(ahead) < 3:
            return None
        for shift in sorted(range(-MAX_SHIFT, MAX_SHIFT + 1), key=abs)[1:]:  # nearest first
            at = offset + shift * n
            if at + k * n >= 0 and all(matches(j, at) for j in ahead):
                return at
        return None

    bad, last_match = 0, 0
    for k in range(frames):
        if offset + (k + 1) * n > len(rec):  # the recording ends while the prompt goes on
            return _end_of(report, offset // n + last_match, n, rate) if sum(loud[k:]) >= 3 else None
        if not loud[k]:  # a quiet frame of the prompt matches anything quiet
            continue
        if matches(k, offset):
            bad, last_match = 0, k
            continue
        if (at := realigned(k)) is not None:
            offset, bad, last_match = at, 0, k
            continue
        bad += 1
        if bad == 3:  # three loud frames in a row that are not the prompt: it stopped
            # the end of the last frame that still matched (RTP pauses after the stop, so the
            # next received frame may arrive much later)
            return _end_of(report, offset // n + last_match, n, rate)
    return None


def _end_of(report: CallReport, index: int, n: int, rate: int) -> float:
    """Arrival time of the end of recorded frame ``index`` (ms after the answer)."""
    return report.frame_ms[min(index, len(report.frame_ms) - 1)] + 1000 * n / rate


def voice_onset_ms(samples: np.ndarray, rate: int, threshold_dbfs: float = -40.0) -> float:
    """Where speech starts in a clip: the first 20 ms frame louder than the threshold."""
    n = rate // 50
    frames = samples[: len(samples) // n * n].reshape(-1, n).astype(np.float64)
    level = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) / 32768 + 1e-9)
    return float(np.argmax(level > threshold_dbfs) * 20)


def speech_gaps(frame_ms: list[float], segments: list[tuple[int, int]]) -> list[float]:
    """Inter-arrival times (ms) of consecutive received frames inside the bot's speech.

    ``frame_ms`` are the arrival times of every frame the caller received, ``segments`` the bot's
    speech (``CallReport.bot_segments_ms``). Only pairs of frames that both lie in one segment
    count, so the pauses between the bot's turns are not mistaken for gaps in its voice.
    """
    gaps: list[float] = []
    i, n = 0, len(frame_ms)
    for start, end in segments:
        while i < n and frame_ms[i] < start - 1:  # segment bounds are whole ms
            i += 1
        previous = None
        while i < n and frame_ms[i] < end:
            if previous is not None:
                gaps.append(frame_ms[i] - previous)
            previous = frame_ms[i]
            i += 1
    return gaps


def underruns(gaps: list[float], limit_ms: float = 40.0) -> int:
    """Gaps in the bot's voice a listener hears: a frame that came more than ``limit_ms`` after
    the one before (two 20 ms frames' worth; a phone's jitter buffer hides less)."""
    return sum(1 for g in gaps if g > limit_ms)


def jitter_ms(gaps: list[float], frame_ms: float = 20.0) -> list[float]:
    """Each inter-arrival time's distance from the 20 ms the sender paces at."""
    return [abs(g - frame_ms) for g in gaps]


def speech_end_ms(samples: np.ndarray, rate: int, above_floor_db: float = 10.0) -> float:
    """Where speech ends in a clip: the end of the last 20 ms frame clearly above the clip's own
    noise floor (its 10th-percentile frame level). Relative, because read speech fades out below
    a fixed threshold and recordings differ in level and noise."""
    n = rate // 50
    frames = samples[: len(samples) // n * n].reshape(-1, n).astype(np.float64)
    if not len(frames):
        return 0.0
    level = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) / 32768 + 1e-9)
    threshold = min(-35.0, float(np.percentile(level, 10)) + above_floor_db)
    voiced = np.flatnonzero(level > threshold)
    return float((voiced[-1] + 1) * 20) if len(voiced) else 0.0
