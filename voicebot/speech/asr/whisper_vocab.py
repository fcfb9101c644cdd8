"""Run a Whisper model whose output vocabulary was trimmed (voicebot/models/whisper_trim.py).

faster-whisper tokenizes with the original tokenizer.json, so it speaks the original token ids;
the trimmed CTranslate2 model knows only its own, shorter list. ``TrimmedWhisper`` sits between
them: ids going in (prompts, suppressed tokens, the texts closed questions score) are mapped to
the model's ids, ids coming out are mapped back. A token the model lacks is spelled with its
single characters, which every trimmed model keeps, so no text is ever refused.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from voicebot.errors import EngineError
from voicebot.models.whisper_trim import TOKEN_IDS_FILE


@dataclasses.dataclass
class Result:
    """What faster-whisper reads of ctranslate2's WhisperGenerationResult, in original ids."""

    sequences: list
    sequences_ids: list
    scores: list
    no_speech_prob: float
    logits: list


class TrimmedWhisper:
    """A ctranslate2.models.Whisper with a trimmed vocabulary, speaking the original ids."""

    def __init__(self, model, kept: Sequence[int], tokenizer) -> None:
        self._model = model
        self._old = list(kept)                                   # new id -> original id
        self._new = {old: new for new, old in enumerate(self._old)}  # original id -> new id
        self._tokenizer = tokenizer                              # the original tokenizers.Tokenizer
        self._spelled: dict[int, list[int]] = {}

    def __getattr__(self, name):  # encode, detect_language, is_multilingual, n_mels, ...
        return getattr(self._model, name)

    def to_model(self, ids: Sequence[int]) -> list[int]:
        out: list[int] = []
        for i in ids:
            new = self._new.get(i)
            out.extend([new] if new is not None else self._spell(i))
        return out

    def generate(self, features, prompts, *args, suppress_tokens=None, **kwargs):
        if kwargs.get("asynchronous"):
            raise EngineError("asynchronous generation is not supported on a trimmed vocabulary")
        if suppress_tokens is not None:  # -1 (the default set) stays: config.json has new ids
            kwargs["suppress_tokens"] = [i if i < 0 else self._new[i] for i in suppress_tokens
                                         if i < 0 or i in self._new]
        results = self._model.generate(features, [self.to_model(p) for p in prompts], *args, **kwargs)
        return [Result(r.sequences, [[self._old[i] for i in seq] for seq in r.sequences_ids],
                       r.scores, r.no_speech_prob, getattr(r, "logits", [])) for r in results]

    def align(self, features, start_sequence, text_tokens, num_frames, *args, **kwargs):
        return self._model.align(features, self.to_model(start_sequence),
                                 [self.to_model(t) for t in text_tokens], num_frames, *args, **kwargs)

    def _spell(self, old: int) -> list[int]:
        """A token the model lacks, as its single byte-level characters (all kept)."""
        if old not in self._spelled:
            piece = self._tokenizer.id_to_token(old)
            ids = [self._tokenizer.token_to_id(ch) for ch in piece or ""]
            if not piece or any(i is None or i not in self._new for i in ids):
                raise EngineError(f"token {old} ({piece!r}) cannot be spelled with the trimmed "
                                  "vocabulary: rebuild it (`voicebot models install --force`)")
            self._spelled[old] = [self._new[i] for i in ids]
        return self._spelled[old]


def token_ids(directory: Path) -> list[int] | None:
    """The kept original ids of a trimmed model directory; None for a full model."""
    path = Path(directory) / TOKEN_IDS_FILE
    if not path.exists():
        return None
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"{path}: unreadable ({exc}); rebuild the model") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise EngineError(f"{path}: expected a list of token ids; rebuild the model")
    return ids


def use_trimmed_vocabulary(whisper_models: Iterable, directory: Path) -> bool:
    """Wrap the faster_whisper.WhisperModels loaded from ``directory`` if its vocabulary is trimmed."""
    kept = token_ids(directory)
    if kept is None:
        return False
    for model in whisper_models:
        model.model = TrimmedWhisper(model.model, kept, model.hf_tokenizer)
    return True
