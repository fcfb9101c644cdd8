"""Measurements on what a caller heard: when a known prompt stopped, where speech starts.

Used by the real-call tests and by ``voicebot bench call``.
"""

from __future__ import annotations

import numpy as np

from voicebot.sip.caller import CallReport
def prompt_stop_ms(report: CallReport, prompt: np.ndarray, rate: int = 8000) -> float | None:
    """When the caller stopped hearing ``prompt`` (ms after the answer), or None if it played out.

    Matches the received audio against the prompt frame by frame (after aligning the two by
    cross-correlation), so a reply that follows at once is not mistaken for the prompt.
    """
    rec = report.recording.astype(np.float64)
    ref = prompt.astype(np.float64)
    n = rate // 50
    probe = ref[: rate]  # the first second of the prompt
    window = rec[: 3 * rate + len(probe)]
    offset = int(np.argmax(np.correlate(window, probe, "valid")))
    frames = len(ref) // n
    loud = [float(np.sum(ref[k * n:(k + 1) * n] ** 2)) >= n * 100.0 ** 2 for k in range(frames)]
    bad, last_match = 0, 0
    for k in range(frames):
        got = rec[offset + k * n: offset + (k + 1) * n]
        if len(got) < n:  # the recording ends while the prompt goes on: it stopped, if loud is left
            return _end_of(report, offset // n + last_match, n, rate) if sum(loud[k:]) >= 3 else None
        if not loud[k]:  # a quiet frame of the prompt matches anything quiet
            continue
        want = ref[k * n:(k + 1) * n]
        if float(np.sum((got - want) ** 2)) / float(np.sum(want ** 2)) > 0.5:
            bad += 1
        else:
            bad, last_match = 0, k
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
