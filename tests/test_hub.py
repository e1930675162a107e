"""Tests for udic.hub: model resolution from packaged dir, cache and a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from udic import hub
from udic.errors import ModelError

NAME = "udic-test-base"


def fake_weights(seed: int, size: int = 4096) -> bytes:
    """Deterministic bytes; hub never parses the file, it only hashes it."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@dataclass
class Model:
    data: bytes
    name: str = NAME

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def id(self) -> str:
        return self.sha[:16]

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.id}.safetensors"

    def record(self, packaged: bool = False) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "filename": self.filename,
            "sha256": self.sha,
            "size": len(self.data),
            "description": "test model",
            "packaged": packaged,
        }


def write_registry(directory: Path, records: list[dict], default: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "registry.json").write_text(json.dumps({"default": default, "models": records}))


@dataclass
class Env:
    tmp: Path
    pkg: Path
    cache: Path
    config_home: Path

    def cache_files(self) -> list[str]:
        return sorted(p.name for p in self.cache.iterdir()) if self.cache.exists() else []


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Isolate every location hub reads: packaged dir, cache, config, env URLs."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    cache = tmp_path / "cache"
    config_home = tmp_path / "config"
    monkeypatch.setattr(hub, "packaged_dir", lambda: pkg)
    monkeypatch.setenv("UDIC_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UDIC_MODEL_URLS", raising=False)
    monkeypatch.delenv("UDIC_CONFIG", raising=False)
    return Env(tmp_path, pkg, cache, config_home)


@dataclass
class Server:
    root: Path
    base: str
    requests: list[str] = field(default_factory=list)
    # path -> "truncate" to send a full Content-Length but only half the body.
    modes: dict[str, str] = field(default_factory=dict)

    def put(self, subdir: str, name: str, data: bytes) -> None:
        d = self.root / subdir
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)

    def url(self, subdir: str) -> str:
        return f"{self.base}/{subdir}/"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real HTTP server on 127.0.0.1 that counts requests and can misbehave on demand."""
    root = tmp_path / "www"
    root.mkdir()
    state = Server(root=root, base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            state.requests.append(self.path)
            target = (root / self.path.lstrip("/")).resolve()
            if root not in target.parents or not target.is_file():
                self.send_error(404)
                return
            body = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.modes.get(self.path) == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- ids and locations


def test_model_id_is_sha256_prefix(tmp_path: Path) -> None:
    data = fake_weights(1)
    expected = hashlib.sha256(data).hexdigest()[:16]
    assert hub.model_id_for_bytes(data) == expected
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    assert hub.model_id_for_file(path) == expected
    assert hub.verify_file(path, hashlib.sha256(data).hexdigest())
    assert not hub.verify_file(path, "0" * 64)
    assert not hub.verify_file(tmp_path / "missing", "0" * 64)


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UDIC_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.cache_dir(create=False) == tmp_path / "home" / ".cache" / "udic"
    assert not (tmp_path / "home").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir(create=False) == tmp_path / "xdg" / "udic"
    monkeypatch.setenv("UDIC_CACHE_DIR", str(tmp_path / "explicit"))
    assert hub.cache_dir() == tmp_path / "explicit"
    assert (tmp_path / "explicit").is_dir()


def test_packaged_dir_default_location() -> None:
    assert hub.packaged_dir() == Path(hub.__file__).parent / "weights"


# --------------------------------------------------------------------------- registry


def test_missing_registry_is_empty_and_no_default(env: Env) -> None:
    assert hub.load_registry() == (None, [])
    with pytest.raises(ModelError, match="no default model"):
        hub.resolve()


def test_user_registry_merges_and_overrides_default(env: Env) -> None:
    a, b = Model(fake_weights(1)), Model(fake_weights(2), name="user-model")
    write_registry(env.pkg, [a.record(packaged=True)], default=a.id)
    write_registry(env.cache, [b.record(packaged=True), a.record()], default=b.id)
    default, entries = hub.load_registry()
    assert default == b.id
    assert [e.id for e in entries] == [a.id, b.id]
    assert entries[0].packaged is True
    assert entries[1].packaged is False  # a user registry cannot claim packaged files


def test_malformed_registry_is_model_error(env: Env) -> None:
    (env.pkg / "registry.json").write_text('{"models": [{"id": "zz"}]}')
    with pytest.raises(ModelError, match="malformed model registry .*registry.json"):
        hub.load_registry()
    m = Model(fake_weights(1))
    for name in ("../evil.safetensors", "D:evil.safetensors"):  # (a drive would leave the cache on Windows)
        write_registry(env.pkg, [m.record() | {"filename": name}])
        with pytest.raises(ModelError, match="filename"):
            hub.load_registry()


def test_a_user_entry_never_reads_a_package_file_of_the_same_name(env: Env) -> None:
    packaged, mine = Model(fake_weights(1)), Model(fake_weights(2))
    write_registry(env.pkg, [packaged.record(packaged=True)], default=packaged.id)
    (env.pkg / packaged.filename).write_bytes(packaged.data)
    env.cache.mkdir(parents=True, exist_ok=True)
    (env.cache / packaged.filename).write_bytes(mine.data)  # the user's file, under the same name
    write_registry(env.cache, [mine.record() | {"filename": packaged.filename}])
    r = hub.resolve(mine.id, progress=False)
    assert (r.source, r.path) == ("cache", env.cache / packaged.filename)
    assert hub.resolve(packaged.id, progress=False).source == "packaged"


# --------------------------------------------------------------------------- resolution


def test_packaged_model_resolves_by_default_name_id_and_prefix(env: Env) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record(packaged=True)], default=m.id)
    (env.pkg / m.filename).write_bytes(m.data)
    for query in (None, NAME, m.id, m.id[:8], m.id.upper()):
        r = hub.resolve(query, progress=False)
        assert r.source == "packaged", query
        assert r.path == env.pkg / m.filename
        assert r.entry.id == m.id
    assert not env.cache.exists()  # lookups must not create the cache


def test_id_prefix_too_short_or_ambiguous(env: Env) -> None:
    m = Model(fake_weights(1))
    twin_a = m.record() | {"sha256": "abcdef01" + "1" * 56, "id": "abcdef01" + "1" * 8, "name": "a"}
    twin_b = m.record() | {"sha256": "abcdef01" + "2" * 56, "id": "abcdef01" + "2" * 8, "name": "b"}
    write_registry(env.pkg, [m.record(), twin_a, twin_b])
    (env.pkg / m.filename).write_bytes(m.data)
    with pytest.raises(ModelError, match="udic models"):
        hub.resolve(m.id[:7], progress=False)
    with pytest.raises(ModelError, match="ambiguous"):
        hub.resolve("abcdef01", progress=False)


def test_unknown_model_message(env: Env) -> None:
    write_registry(env.pkg, [Model(fake_weights(1)).record()])
    with pytest.raises(ModelError) as info:
        hub.resolve("no-such-model", progress=False)
    msg = str(info.value)
    assert "no-such-model" in msg and "udic models" in msg and "\n" not in msg
    with pytest.raises(ModelError, match="udic models"):
        hub.resolve("0123456789abcdef", progress=False)


def test_packaged_file_with_wrong_hash_is_refused(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record(packaged=True)])
    (env.pkg / m.filename).write_bytes(fake_weights(99))
    server.put("good", m.filename, m.data)
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("good"))
    with pytest.raises(ModelError, match="packaged model file .* corrupted"):
        hub.resolve(m.id, progress=False)
    assert server.requests == []  # not silently replaced by a download either


def test_resolve_by_path(env: Env, tmp_path: Path) -> None:
    data = fake_weights(5)
    path = tmp_path / "shared.safetensors"
    path.write_bytes(data)
    r = hub.resolve(str(path), progress=False)
    assert r.source == "file"
    assert r.entry.id == hub.model_id_for_bytes(data)
    assert r.entry.sha256 == hashlib.sha256(data).hexdigest()
    assert r.entry.size == len(data)
    assert r.path == path.resolve()
    with pytest.raises(ModelError, match="does not exist"):
        hub.resolve(str(tmp_path / "missing.safetensors"), progress=False)


def test_path_of_registered_model_uses_registry_entry(env: Env, tmp_path: Path) -> None:
    m = Model(fake_weights(6))
    write_registry(env.pkg, [m.record()])
    path = tmp_path / "copy.safetensors"
    path.write_bytes(m.data)
    r = hub.resolve(str(path), progress=False)
    assert r.entry.name == NAME and r.source == "file"


def test_unregistered_cache_file_is_accepted_when_hash_matches(env: Env) -> None:
    data = fake_weights(7)
    mid = hub.model_id_for_bytes(data)
    env.cache.mkdir()
    (env.cache / f"friend-{mid}.safetensors").write_bytes(data)
    r = hub.resolve(mid, progress=False)
    assert r.source == "cache" and r.entry.id == mid and r.entry.name == "friend"
    assert r.path == env.cache / f"friend-{mid}.safetensors"
    assert hub.resolve(mid[:10], progress=False).entry.id == mid

    other = fake_weights(8)
    fake_id = hub.model_id_for_bytes(fake_weights(9))
    (env.cache / f"liar-{fake_id}.safetensors").write_bytes(other)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        hub.resolve(fake_id, progress=False)


def test_no_urls_configured_message(env: Env) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    with pytest.raises(ModelError) as info:
        hub.resolve(NAME, progress=False)
    assert str(info.value) == (
        f"model {m.id} is not packaged or cached, and no download URL is configured (set UDIC_MODEL_URLS)"
    )


def test_allow_download_false(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    server.put("good", m.filename, m.data)
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("good"))
    with pytest.raises(ModelError, match="downloading is disabled"):
        hub.resolve(m.id, allow_download=False)
    assert server.requests == []


# --------------------------------------------------------------------------- downloads


def test_download_then_cache_hit(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1, size=3 * 1024 * 1024 + 17))  # several chunks
    write_registry(env.pkg, [m.record()], default=m.id)
    server.put("good", m.filename, m.data)
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("good"))

    first = hub.resolve(progress=False)
    assert first.source == "download"
    assert first.path == env.cache / m.filename
    assert first.path.read_bytes() == m.data
    assert server.requests == [f"/good/{m.filename}"]
    assert env.cache_files() == [m.filename]  # no leftover temp file

    second = hub.resolve(m.id, progress=False)
    assert second.source == "cache" and second.path == first.path
    assert len(server.requests) == 1


def test_progress_bar_only_when_requested(
    env: Env, server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    server.put("good", m.filename, m.data)
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("good"))
    hub.resolve(m.id, progress=False)
    assert capsys.readouterr().err == ""
    (env.cache / m.filename).unlink()
    hub.resolve(m.id, progress=True)
    captured = capsys.readouterr()
    assert f"downloading {m.filename}" in captured.err and captured.out == ""


def test_corrupted_download_is_refused(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    server.put("bad", m.filename, fake_weights(2))  # same size, wrong bytes
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("bad"))
    with pytest.raises(ModelError) as info:
        hub.resolve(m.id, progress=False)
    msg = str(info.value)
    assert msg.startswith(f"model {m.id}: download failed from all 1 URLs (last error: ")
    assert "sha256 mismatch" in msg
    assert env.cache_files() == []


def test_wrong_size_download_is_refused(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    server.put("big", m.filename, m.data + b"extra")
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("big"))
    with pytest.raises(ModelError, match="expected 4096"):
        hub.resolve(m.id, progress=False)
    assert env.cache_files() == []


def test_truncated_response_is_refused(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1, size=200_000))
    write_registry(env.pkg, [m.record()])
    server.put("cut", m.filename, m.data)
    server.modes[f"/cut/{m.filename}"] = "truncate"
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("cut"))
    with pytest.raises(ModelError, match="download failed from all 1 URLs") as info:
        hub.resolve(m.id, progress=False)
    assert "IncompleteRead" in str(info.value) or "truncated" in str(info.value)
    assert server.requests == [f"/cut/{m.filename}"]
    assert env.cache_files() == []


def test_fallback_to_second_url_after_404(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    server.put("mirror", m.filename, m.data)
    monkeypatch.setenv("UDIC_MODEL_URLS", f"{server.url('missing')} ,\n{server.url('mirror')}")
    r = hub.resolve(m.id, progress=False)
    assert r.source == "download" and r.path.read_bytes() == m.data
    assert server.requests == [f"/missing/{m.filename}", f"/mirror/{m.filename}"]


def test_all_urls_fail_reports_last_error(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    monkeypatch.setenv("UDIC_MODEL_URLS", f"{server.url('a')},{server.url('b')}")
    with pytest.raises(ModelError) as info:
        hub.resolve(m.id, progress=False)
    msg = str(info.value)
    assert msg.startswith(f"model {m.id}: download failed from all 2 URLs (last error: ")
    assert "404" in msg and "/b/" in msg and "\n" not in msg
    assert env.cache_files() == []


def test_corrupted_cache_file_is_redownloaded(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    env.cache.mkdir()
    (env.cache / m.filename).write_bytes(fake_weights(3))
    server.put("good", m.filename, m.data)
    monkeypatch.setenv("UDIC_MODEL_URLS", server.url("good"))
    r = hub.resolve(m.id, progress=False)
    assert r.source == "download"
    assert (env.cache / m.filename).read_bytes() == m.data
    assert len(server.requests) == 1


def test_a_corrupted_cache_file_is_named_when_nothing_may_replace_it(env: Env) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    env.cache.mkdir()
    (env.cache / m.filename).write_bytes(fake_weights(3))
    with pytest.raises(ModelError, match=r"cached model file .* is corrupted .*downloading is disabled"):
        hub.resolve(m.id, progress=False, allow_download=False)
    # left for a download to replace atomically: removing it could remove another process's good copy
    assert (env.cache / m.filename).read_bytes() == fake_weights(3)


# --------------------------------------------------------------------------- config file


def test_config_file_urls(env: Env, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    server.put("cfg", m.filename, m.data)
    cfg = env.config_home / "udic" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"model_urls": [server.url("cfg")]}))
    assert hub.model_urls() == [server.url("cfg")]
    r = hub.resolve(m.id, progress=False)
    assert r.source == "download"
    assert server.requests == [f"/cfg/{m.filename}"]


def test_env_urls_come_before_config_and_udic_config_wins(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    explicit = tmp_path / "my.json"
    explicit.write_text(json.dumps({"model_urls": ["http://127.0.0.1:1/c", "http://127.0.0.1:1/a"]}))
    default_cfg = env.config_home / "udic" / "config.json"
    default_cfg.parent.mkdir(parents=True)
    default_cfg.write_text(json.dumps({"model_urls": ["http://127.0.0.1:1/ignored"]}))
    monkeypatch.setenv("UDIC_CONFIG", str(explicit))
    monkeypatch.setenv("UDIC_MODEL_URLS", "http://127.0.0.1:1/a, http://127.0.0.1:1/b")
    assert hub.model_urls() == ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b", "http://127.0.0.1:1/c"]
    monkeypatch.setenv("UDIC_CONFIG", str(tmp_path / "nope.json"))
    with pytest.raises(ModelError, match="nope.json"):
        hub.model_urls()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"model_urls": "http://x"}', '{"model_urls": [1]}'])
def test_malformed_config_file(env: Env, content: str) -> None:
    m = Model(fake_weights(1))
    write_registry(env.pkg, [m.record()])
    cfg = env.config_home / "udic" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(content)
    with pytest.raises(ModelError, match=f"malformed config file {cfg}"):
        hub.model_urls()
    with pytest.raises(ModelError, match="malformed config file"):
        hub.resolve(m.id, progress=False)


# --------------------------------------------------------------------------- listing


def test_list_models_availability(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged, cached, remote = Model(fake_weights(1), "p"), Model(fake_weights(2), "c"), Model(fake_weights(3), "r")
    write_registry(env.pkg, [packaged.record(True), cached.record(), remote.record()])
    (env.pkg / packaged.filename).write_bytes(packaged.data)
    env.cache.mkdir()
    (env.cache / cached.filename).write_bytes(cached.data)
    dropped = fake_weights(4)
    dropped_id = hub.model_id_for_bytes(dropped)
    (env.cache / f"shared-{dropped_id}.safetensors").write_bytes(dropped)

    status = {e.name: s for e, s in hub.list_models()}
    assert status == {"p": "packaged", "c": "cached", "r": "unavailable", "shared": "cached"}
    monkeypatch.setenv("UDIC_MODEL_URLS", "http://127.0.0.1:1/")
    assert {e.name: s for e, s in hub.list_models()}["r"] == "downloadable"
    assert not any(name.endswith(".part") for name in os.listdir(env.cache))
