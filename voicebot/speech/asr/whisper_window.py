"""A shorter Whisper encoder window for short utterances.

faster-whisper pads every utterance to Whisper's 30 s window, so a 2 s phone utterance pays for
30 s of encoder work (~1 s on one core for whisper-base). CTranslate2 encodes shorter inputs, and
padding to the speech plus a few seconds was both faster and slightly more accurate on the real
Danish clips (nst-da, telephone: WER 0.494 -> 0.476, RTF 0.23 -> 0.10 with 5 s of padding).

faster-whisper has no option for this, so its ``pad_or_trim`` is wrapped once; the padding is
per thread (set by the engine around each decode), and other callers get the stock behaviour.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

FULL_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames
_local = threading.local()
_install_lock = threading.Lock()


def _install() -> None:
    import faster_whisper.transcribe as ft

    with _install_lock:
        if getattr(ft.pad_or_trim, "voicebot_window", False):
            return
        original = ft.pad_or_trim

        def pad_or_trim(array, length: int = FULL_WINDOW_FRAMES, *, axis: int = -1):
            pad = getattr(_local, "pad_frames", 0)
            n = array.shape[axis]
            if pad > 0 and length == FULL_WINDOW_FRAMES and n < length:
                length = min(length, -(-(n + pad) // 100) * 100)
            return original(array, length, axis=axis)

        pad_or_trim.voicebot_window = True  # type: ignore[attr-defined]
        ft.pad_or_trim = pad_or_trim


@contextlib.contextmanager
def short_window(pad_s: float) -> Iterator[None]:
    """Within this block (in this thread) encode speech + ``pad_s`` seconds, not 30 s."""
    if pad_s <= 0:
        yield
        return
    _install()
    _local.pad_frames = int(pad_s * 100)
    try:
        yield
    finally:
        _local.pad_frames = 0
