"""Build ``whisper-base-da``: whisper-base with its output vocabulary cut to what Danish needs.

Why: every token step of Whisper's decoder multiplies the hidden state with the whole
51,865 x 512 output matrix, more than half of the decoder's weights; on a 2-core CPU a step is
bound by streaming those weights, not by arithmetic. Danish transcripts use a fraction of the
multilingual vocabulary, so the matrix keeps only the rows below and a step reads ~40 % fewer
bytes (docs/speech.md: generation ~25 % faster, WER unchanged within noise on nst-da).

Kept, as original token ids (``token_ids.json``, in order; the new model's id i is that list's
i-th entry):
- every token of the Danish word list (Debian's ``wdanish``, ~313,000 word forms), each word
  tokenized as " ord", " Ord" and "ord";
- the tokens of the project's own texts (the knowledge articles and the default configuration,
  as they are at build time: `voicebot models install whisper-base-da --force` rebuilds);
- numbers 0-999 and punctuation; every single-character token, so any text stays spellable;
- the FREQUENT lowest ids (GPT-2's earliest merges: the commonest pieces of any language);
- the empty token just before them, by which CTranslate2 recognizes a multilingual model, and
  every special token (<|endoftext|> and after), in their original order, because CTranslate2
  finds language and timestamp tokens by their position between them.

The new directory keeps the original tokenizer.json: faster-whisper encodes and decodes with the
original ids, and voicebot/speech/asr/whisper_vocab.py maps ids at the CTranslate2 boundary.
Nothing is downloaded: the sources are the installed whisper-base and the word list.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from voicebot.config import PROJECT_ROOT
from voicebot.errors import ModelError
from voicebot.models.ct2_file import read_model, write_model
from voicebot.models.install import MARKER

TRIM_VERSION = 1              # bump when the rule changes: installed models are then rebuilt
BASE_MODEL = "whisper-base"
WORDLIST = Path("/usr/share/dict/danish")  # Debian package wdanish (make setup installs it)
FREQUENT = 5000
TOKEN_IDS_FILE = "token_ids.json"
EMBEDDINGS = "decoder/embeddings/weight"  # the output projection is an alias of it
PROJECT_TEXTS = ("knowledge", "voicebot/defaults.yaml")
WORD = re.compile(r"[^\W_]+(?:[-.'][^\W_]+)*")


def source_stamp() -> dict:
    """What a built model was made from; a different stamp means it must be rebuilt."""
    return {"trim": TRIM_VERSION, "frequent": FREQUENT, "base": _base_stamp(),
            "wordlist": {"path": str(WORDLIST), "size": _wordlist_size()}}


def build(directory: Path) -> dict[str, str]:
    """Write the trimmed model into ``directory``; return {file: note}."""
    from tokenizers import Tokenizer

    from voicebot.models import install

    entry = _base_entry()
    install(entry, progress=False)  # a no-op when it is installed
    base = entry.directory

    tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))
    vocabulary = (base / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    if vocabulary and vocabulary[-1] == "":
        vocabulary.pop()
    keep = kept_ids(tokenizer, len(vocabulary), _words(WORDLIST) + _project_words())

    model = read_model(base / "model.bin")
    table = model.variable(EMBEDDINGS)
    if table.value.shape[0] != len(vocabulary):
        raise ModelError(f"{base}: {EMBEDDINGS} has {table.value.shape[0]} rows for "
                         f"{len(vocabulary)} tokens")
    others = [v.name for v in model.variables
              if v.name != EMBEDDINGS and v.value.ndim and v.value.shape[0] == len(vocabulary)]
    if others:
        raise ModelError(f"{base}: {', '.join(others)} is vocabulary-sized too; this builder only "
                         "knows Whisper's output projection tied to the embeddings")
    table.value = table.value[np.asarray(keep)]

    directory.mkdir(parents=True, exist_ok=True)
    write_model(model, directory / "model.bin.tmp")
    (directory / "vocabulary.txt").write_text("".join(vocabulary[i] + "\n" for i in keep),
                                              encoding="utf-8")
    config = json.loads((base / "config.json").read_text())
    new_id = {old: new for new, old in enumerate(keep)}
    for key in ("lang_ids", "suppress_ids", "suppress_ids_begin"):
        if key in config:
            config[key] = [new_id[i] for i in config[key] if i in new_id]
    (directory / "config.json").write_text(json.dumps(config))
    (directory / TOKEN_IDS_FILE).write_text(json.dumps(keep))
    for name in ("tokenizer.json", "preprocessor_config.json"):
        if (base / name).exists():
            shutil.copyfile(base / name, directory / name)
    os.replace(directory / "model.bin.tmp", directory / "model.bin")
    _check_loads(directory)
    size = (directory / "model.bin").stat().st_size
    return {"model.bin": f"{size / 1e6:.1f} MB", TOKEN_IDS_FILE: f"{len(keep)} of {len(vocabulary)} tokens"}


def kept_ids(tokenizer, vocabulary_size: int, words: Iterable[str]) -> list[int]:
    """The original ids the trimmed model keeps, ascending (specials last, in their order)."""
    eot = tokenizer.token_to_id("<|endoftext|>")
    if eot is None:
        raise ModelError("the tokenizer has no <|endoftext|>: not a Whisper tokenizer")
    ids: set[int] = set(range(min(FREQUENT, eot)))
    texts: list[str] = []
    for word in dict.fromkeys(words):
        texts += [" " + word, " " + word[:1].upper() + word[1:], word]
    texts += [f" {n}" for n in range(1000)] + [str(n) for n in range(1000)]
    texts += list(",.?!:;-'\"()%/") + [" -", " (", " \"", "...", " kr."]
    for start in range(0, len(texts), 20000):
        for encoding in tokenizer.encode_batch(texts[start:start + 20000], add_special_tokens=False):
            ids.update(encoding.ids)
    # single characters keep any text spellable; the empty token (id 50256) is how CTranslate2
    # tells a multilingual model (whisper.cc: vocabulary.to_id("") != unk)
    ids.update(i for i in range(eot) if len(tokenizer.id_to_token(i) or "x") <= 1)
    return sorted(i for i in ids if i < eot) + list(range(eot, vocabulary_size))


def _words(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _no_wordlist(exc) from None
    return [w for w in (line.strip() for line in text.splitlines()) if w]


def _project_words() -> list[str]:
    words: list[str] = []
    for name in PROJECT_TEXTS:
        root = PROJECT_ROOT / name
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.suffix in (".md", ".yaml", ".yml", ".txt") and path.is_file():
                words += WORD.findall(path.read_text(encoding="utf-8", errors="replace"))
    return words


def _base_entry():
    from voicebot.models import load_manifest

    entries = load_manifest()
    if BASE_MODEL not in entries:
        raise ModelError(f"{BASE_MODEL} is not in models/manifest.yaml")
    return entries[BASE_MODEL]


def _base_stamp() -> str:
    """The base model's install marker, hashed: a reinstalled whisper-base means a rebuild."""
    try:
        return hashlib.sha256((_base_entry().directory / MARKER).read_bytes()).hexdigest()[:16]
    except OSError:
        raise ModelError(f"{BASE_MODEL} is not installed") from None


def _wordlist_size() -> int:
    try:
        return WORDLIST.stat().st_size
    except OSError as exc:
        raise _no_wordlist(exc) from None


def _no_wordlist(exc: OSError) -> ModelError:
    return ModelError(f"the Danish word list {WORDLIST} is missing ({exc.strerror}): "
                      "apt-get install wdanish (make setup does)")


def _check_loads(directory: Path) -> None:
    """CTranslate2 loads the result and decodes a second of silence with it."""
    import ctranslate2

    try:
        model = ctranslate2.models.Whisper(str(directory), device="cpu", compute_type="int8")
        features = ctranslate2.StorageView.from_array(np.zeros((1, model.n_mels, 100), np.float32))
        model.detect_language(features)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"the trimmed model in {directory} does not load: {exc}") from None
