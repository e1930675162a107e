"""Model weights resolution: packaged directory, then cache, then download.

A model is named by its *identifier*, the first 16 hex digits of the sha256 of
its safetensors file.  Because the id is derived from the bytes, a .udic file
that records the id can always be decoded with exactly the weights that encoded
it, and every file we load can be checked against it before use.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal, TextIO, Union

from udic import __version__
from udic.errors import ModelError

ID_LEN = 16
MIN_PREFIX_LEN = 8
DOWNLOAD_TIMEOUT = 30.0
_CHUNK = 1 << 20
_REGISTRY_NAME = "registry.json"
_HEX_RE = re.compile(r"^[0-9a-f]+$")
# Cache files dropped in by users carry the id in their name: "<anything>-<id>.safetensors".
_CACHE_FILE_RE = re.compile(r"^.+-([0-9a-f]{16})\.safetensors$")

Source = Literal["packaged", "cache", "download", "file"]

# Download progress: called as (label, bytes so far, bytes in all) after every chunk (the
# last call has bytes so far = bytes in all).  The hub draws nothing itself; callers choose how to show it.
DownloadProgress = Callable[[str, int, int], None]
ProgressArg = Union[bool, DownloadProgress, None]


class TextProgress:
    """A plain download line on stderr (``\r``-rewritten on a terminal, one line otherwise).

    What ``progress=True`` means, so library callers need no UI toolkit.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._shown = -1

    def __call__(self, label: str, done: int, total: int) -> None:
        stream = self.stream or sys.stderr
        tty = stream.isatty()
        percent = 100 * done // max(total, 1)
        finished = done >= total
        if not tty and not finished and self._shown >= 0:
            return  # not a terminal: the first and the last line only
        if tty and percent == self._shown and not finished:
            return
        self._shown = percent
        line = f"{label}  {percent:3d}%  {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        stream.write(("\r" + line + ("\n" if finished else "")) if tty else line + "\n")
        stream.flush()


def _progress_callback(progress: ProgressArg) -> DownloadProgress | None:
    if progress is True:
        return TextProgress()
    if not progress:
        return None
    return progress  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelEntry:
    """One registry record; ``sha256`` and ``size`` let us verify any copy we find or fetch."""

    id: str
    name: str
    filename: str
    sha256: str
    size: int
    description: str
    packaged: bool


@dataclass(frozen=True)
class ResolvedModel:
    """A verified weights file on disk and where it came from (for messages and `udic models`)."""

    entry: ModelEntry
    path: Path
    source: Source


# --------------------------------------------------------------------------- hashing


def _one_line(text: object) -> str:
    """Error messages must be one line (the CLI prints them after a prefix)."""
    return " ".join(str(text).split())


def _sha256_file(path: Path) -> str:
    """Stream the file so large weights never need to fit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_id_for_bytes(data: bytes) -> str:
    """The model id is a prefix of the content hash, so it identifies the exact weights."""
    return hashlib.sha256(data).hexdigest()[:ID_LEN]


def model_id_for_file(path: Path) -> str:
    """Same as :func:`model_id_for_bytes` but streamed from disk."""
    try:
        return _sha256_file(Path(path))[:ID_LEN]
    except OSError as err:
        raise ModelError(_one_line(f"cannot read model file {path}: {err.strerror or err}")) from None


def verify_file(path: Path, sha256: str) -> bool:
    """True when ``path`` exists and its full sha256 equals ``sha256``; never raises on I/O errors."""
    try:
        return _sha256_file(Path(path)) == sha256.lower()
    except OSError:
        return False


# --------------------------------------------------------------------------- locations


def packaged_dir() -> Path:
    """Weights shipped inside the package; a function so tests can point it elsewhere."""
    return Path(__file__).parent / "weights"


def cache_dir(create: bool = True) -> Path:
    """Per-user cache for downloaded or user-supplied weights.

    ``$UDIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/udic``, else ``~/.cache/udic``.
    Created when asked for (not at import); lookups pass ``create=False`` so that
    merely listing models leaves no trace on disk.
    """
    env = os.environ.get("UDIC_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        # The XDG spec says relative values must be ignored.
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
        path = base / "udic"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ModelError(_one_line(f"cannot create cache directory {path}: {err.strerror or err}")) from None
    return path


def config_path() -> Path:
    """``$UDIC_CONFIG``, else ``$XDG_CONFIG_HOME/udic/config.json``, else ``~/.config/udic/config.json``."""
    env = os.environ.get("UDIC_CONFIG")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "udic" / "config.json"


def _read_config() -> dict[str, Any]:
    """Parse the config file; absent is fine unless the user named it explicitly."""
    path = config_path()
    if not path.is_file():
        if os.environ.get("UDIC_CONFIG") and not path.exists():
            raise ModelError(_one_line(f"config file {path} (from UDIC_CONFIG) does not exist"))
        if path.exists():
            raise ModelError(_one_line(f"config file {path} is not a regular file"))
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelError(_one_line(f"cannot read config file {path}: {err.strerror or err}")) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(_one_line(f"malformed config file {path}: {err}")) from None
    if not isinstance(data, dict):
        raise ModelError(_one_line(f"malformed config file {path}: top level must be a JSON object"))
    return data


def model_urls() -> list[str]:
    """Base URLs to download from, env first so one invocation can override the config."""
    urls: list[str] = [u for u in re.split(r"[,\s]+", os.environ.get("UDIC_MODEL_URLS", "")) if u]
    config = _read_config()
    configured = config.get("model_urls", [])
    if not isinstance(configured, list) or not all(isinstance(u, str) for u in configured):
        raise ModelError(_one_line(f"malformed config file {config_path()}: 'model_urls' must be a list of strings"))
    urls.extend(u.strip() for u in configured if u.strip())
    seen: set[str] = set()
    return [u for u in urls if not (u in seen or seen.add(u))]


# --------------------------------------------------------------------------- registry


def _is_hex(text: str, length: int | None = None) -> bool:
    return bool(_HEX_RE.match(text)) and (length is None or len(text) == length)


def _parse_entry(raw: Any, path: Path, index: int, user: bool) -> ModelEntry:
    """Validate one record strictly: filenames become paths and URLs, hashes guard every load."""

    def bad(why: str) -> ModelError:
        return ModelError(_one_line(f"malformed model registry {path}: models[{index}]: {why}"))

    if not isinstance(raw, dict):
        raise bad("must be an object")
    sha = raw.get("sha256")
    if not isinstance(sha, str) or not _is_hex(sha.lower(), 64):
        raise bad("'sha256' must be 64 hex digits")
    sha = sha.lower()
    mid = raw.get("id", sha[:ID_LEN])
    if not isinstance(mid, str) or mid.lower() != sha[:ID_LEN]:
        raise bad("'id' must be the first 16 hex digits of 'sha256'")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad("'name' must be a non-empty string")
    filename = raw.get("filename")
    if (
        not isinstance(filename, str)
        or not filename.endswith(".safetensors")
        or "/" in filename
        or "\\" in filename
        or ":" in filename  # a Windows drive ("D:x.safetensors") would leave the cache directory
        or filename.startswith(".")
    ):
        raise bad("'filename' must be a plain *.safetensors file name")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad("'size' must be a non-negative integer")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise bad("'description' must be a string")
    packaged = raw.get("packaged", False)
    if not isinstance(packaged, bool):
        raise bad("'packaged' must be true or false")
    return ModelEntry(
        id=sha[:ID_LEN],
        name=name,
        filename=filename,
        sha256=sha,
        size=size,
        description=description,
        # A user registry cannot put files inside the package.
        packaged=packaged and not user,
    )


def _read_registry(path: Path, user: bool) -> tuple[str | None, list[ModelEntry]]:
    """One registry file; a missing file is an empty registry (the packaged one may not exist yet)."""
    if not path.exists():
        return None, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelError(_one_line(f"cannot read model registry {path}: {err.strerror or err}")) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(_one_line(f"malformed model registry {path}: {err}")) from None
    if not isinstance(data, dict):
        raise ModelError(_one_line(f"malformed model registry {path}: top level must be a JSON object"))
    models = data.get("models", [])
    if not isinstance(models, list):
        raise ModelError(_one_line(f"malformed model registry {path}: 'models' must be a list"))
    default = data.get("default")
    if default is not None and (not isinstance(default, str) or not default):
        raise ModelError(_one_line(f"malformed model registry {path}: 'default' must be a model id or name"))
    return default, [_parse_entry(raw, path, i, user) for i, raw in enumerate(models)]


def load_registry(registry_path: Path | None = None) -> tuple[str | None, list[ModelEntry]]:
    """Packaged registry (or ``registry_path``) merged with the user's ``cache_dir()/registry.json``.

    Packaged entries win on id clashes (same id means same bytes anyway); the
    user's ``default`` wins so users can switch the default model.
    """
    base_path = registry_path if registry_path is not None else packaged_dir() / _REGISTRY_NAME
    default, entries = _read_registry(Path(base_path), user=False)
    user_default, user_entries = _read_registry(cache_dir(create=False) / _REGISTRY_NAME, user=True)
    known = {e.id for e in entries}
    for entry in user_entries:
        if entry.id not in known:
            entries.append(entry)
            known.add(entry.id)
    return (user_default or default), entries


# --------------------------------------------------------------------------- cache scan


def _cache_candidates(model_id_prefix: str) -> list[tuple[str, Path]]:
    """Files ``<anything>-<id>.safetensors`` in the cache whose id starts with the prefix."""
    directory = cache_dir(create=False)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.safetensors")):
        match = _CACHE_FILE_RE.match(path.name)
        if match and match.group(1).startswith(model_id_prefix) and path.is_file():
            found.append((match.group(1), path))
    return found


def _entry_for_file(path: Path, sha: str, name: str | None = None) -> ModelEntry:
    """Synthesize an entry for weights that are not in any registry."""
    stem = path.name.removesuffix(".safetensors")
    if name is None:
        name = stem
    return ModelEntry(
        id=sha[:ID_LEN],
        name=name,
        filename=path.name,
        sha256=sha,
        size=path.stat().st_size,
        description="",
        packaged=False,
    )


# --------------------------------------------------------------------------- download


def _download_one(url: str, entry: ModelEntry, target: Path, progress: DownloadProgress | None) -> None:
    """Fetch ``url`` to a temp file next to ``target`` and move it in only if size and hash match.

    Raises an exception describing the failure; the temp file never survives a failure,
    so a half-written or wrong file can never be mistaken for a cache hit.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    request = urllib.request.Request(url, headers={"User-Agent": f"udic/{__version__}"})
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{entry.filename}.", suffix=".part")
    except OSError as err:  # the cache, not the URL, is at fault: no point trying the next URL
        raise ModelError(_one_line(f"cannot write to the model cache {target.parent}: {err.strerror or err}")) from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as resp:
            header = resp.headers.get("Content-Length")
            length = int(header) if header and header.strip().isdigit() else None
            if length is not None and length != entry.size:
                raise ValueError(f"server reports {length} bytes, expected {entry.size}")
            label = f"downloading {entry.filename}"
            total = length if length is not None else entry.size
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                # Never store more than the registry promises (a hostile or broken server).
                if received > entry.size:
                    raise ValueError(f"more than the expected {entry.size} bytes")
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(label, received, total)
            out.flush()
            os.fsync(out.fileno())
        if received != entry.size:
            raise ValueError(f"got {received} bytes, expected {entry.size} (truncated)")
        if digest.hexdigest() != entry.sha256:
            raise ValueError("sha256 mismatch (file corrupted or wrong model)")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from the other users of a shared cache
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _download(entry: ModelEntry, progress: DownloadProgress | None) -> Path:
    """Try every configured base URL in order; first verified copy wins."""
    urls = model_urls()
    if not urls:
        raise ModelError(
            f"model {entry.id} is not packaged or cached, and no download URL is configured (set UDIC_MODEL_URLS)"
        )
    target = cache_dir(create=True) / entry.filename
    last_error = "none"
    for base in urls:
        url = base.rstrip("/") + "/" + urllib.parse.quote(entry.filename)
        try:
            _download_one(url, entry, target, progress)
            return target
        except urllib.error.HTTPError as err:
            last_error = f"{url}: HTTP {err.code} {err.reason}"
        except urllib.error.URLError as err:
            last_error = f"{url}: {err.reason}"
        except (OSError, ValueError, http.client.HTTPException) as err:
            last_error = f"{url}: {str(err) or type(err).__name__}"
    raise ModelError(
        _one_line(f"model {entry.id}: download failed from all {len(urls)} URLs (last error: {last_error})")
    )


# --------------------------------------------------------------------------- resolution


def _looks_like_path(model: str) -> bool:
    return model.endswith(".safetensors") or "/" in model or os.sep in model


def _resolve_path(model: str) -> ResolvedModel:
    """An explicit weights file: trusted as given, its id computed from its bytes."""
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(_one_line(f"model file {path} does not exist or is not a file"))
    try:
        sha = _sha256_file(path)
    except OSError as err:
        raise ModelError(_one_line(f"cannot read model file {path}: {err.strerror or err}")) from None
    _, entries = load_registry()
    entry = next((e for e in entries if e.sha256 == sha), None)
    if entry is None:
        entry = _entry_for_file(path, sha)
    return ResolvedModel(entry=entry, path=path.resolve(), source="file")


def _unknown(model: str) -> ModelError:
    return ModelError(_one_line(f"unknown model {model!r}; run `udic models` to see available models"))


def _find_entry(model: str, entries: list[ModelEntry]) -> ModelEntry | None:
    """Match by exact name, then by id or unique id prefix (>= 8 hex digits)."""
    by_name = [e for e in entries if e.name == model]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        ids = ", ".join(e.id for e in by_name)
        raise ModelError(_one_line(f"model name {model!r} is ambiguous (ids {ids}); use a model id"))
    key = model.lower()
    if not (_is_hex(key) and MIN_PREFIX_LEN <= len(key) <= ID_LEN):
        return None
    matches = [e for e in entries if e.id.startswith(key)]
    if len(matches) > 1:
        ids = ", ".join(e.id for e in matches)
        raise ModelError(_one_line(f"model id prefix {model!r} is ambiguous (matches {ids})"))
    return matches[0] if matches else None


def _resolve_unregistered(model: str) -> ResolvedModel | None:
    """A user-dropped cache file ``<anything>-<id>.safetensors`` that hashes to its id."""
    key = model.lower()
    if not (_is_hex(key) and MIN_PREFIX_LEN <= len(key) <= ID_LEN):
        return None
    candidates = _cache_candidates(key)
    if len({mid for mid, _ in candidates}) > 1:
        ids = ", ".join(sorted({mid for mid, _ in candidates}))
        raise ModelError(_one_line(f"model id prefix {model!r} is ambiguous (matches {ids})"))
    bad: Path | None = None
    for mid, path in candidates:
        try:
            sha = _sha256_file(path)
        except OSError:
            continue
        if sha[:ID_LEN] == mid:
            name = path.name.removesuffix(f"-{mid}.safetensors")
            return ResolvedModel(entry=_entry_for_file(path, sha, name), path=path, source="cache")
        bad = path
    if bad is not None:
        raise ModelError(_one_line(f"cached model file {bad} does not match the id in its name (sha256 mismatch)"))
    return None


def _registry_lookup(model: str | None) -> tuple[str, ModelEntry | None]:
    """``model`` (None = the registry default), stripped, and its registry entry if any."""
    default, entries = load_registry()
    if model is None:
        if default is None:
            raise ModelError("no default model is configured; run `udic models` to see available models")
        model = default
    model = model.strip()
    return model, _find_entry(model, entries)


def resolve(model: str | None = None, *, progress: ProgressArg = True, allow_download: bool = True) -> ResolvedModel:
    """Find verified weights for ``model`` (None = registry default, id, id prefix, name or path).

    ``progress``: False, True (a plain stderr line, :class:`TextProgress`) or a
    ``DownloadProgress`` callback; it only matters when weights are downloaded.

    Order: packaged dir, cache, download.  Every copy is hash-checked before it is
    returned, because weights that differ by a single bit decode garbage silently.
    """
    if model is not None and _looks_like_path(model):
        return _resolve_path(model)
    model, entry = _registry_lookup(model)
    if entry is None:
        hit = _resolve_unregistered(model)
        if hit is not None:
            return hit
        raise _unknown(model)

    packaged = packaged_dir() / entry.filename
    if entry.packaged and packaged.is_file():  # (a user registry's entry never names a package file)
        if not verify_file(packaged, entry.sha256):
            raise ModelError(
                _one_line(f"packaged model file {packaged} is corrupted (sha256 mismatch); reinstall udic")
            )
        return ResolvedModel(entry=entry, path=packaged, source="packaged")

    cached = cache_dir(create=False) / entry.filename
    bad_copy = False
    if cached.is_file():
        if verify_file(cached, entry.sha256):
            return ResolvedModel(entry=entry, path=cached, source="cache")
        # A bad copy is left where it is: the download below replaces it atomically, and
        # deleting it here could delete the verified copy another process has just put there.
        bad_copy = True
    for mid, path in _cache_candidates(entry.id):
        if mid == entry.id and path != cached and verify_file(path, entry.sha256):
            return ResolvedModel(entry=entry, path=path, source="cache")

    if not allow_download:
        if bad_copy:
            raise ModelError(_one_line(f"cached model file {cached} is corrupted (sha256 mismatch), and downloading "
                                       "is disabled"))
        raise ModelError(f"model {entry.id} is not packaged or cached, and downloading is disabled")
    return ResolvedModel(entry=entry, path=_download(entry, _progress_callback(progress)), source="download")


def list_models() -> list[tuple[ModelEntry, str]]:
    """Every known model with where it is available: packaged, cached, downloadable or unavailable.

    Registered models' presence is judged by file size only (hashing every file just to
    list them is slow; a ``<name>-<id>`` file counts by its name); only unregistered cache
    files are hashed, to learn their ids.  :func:`resolve` verifies hashes before any use.
    """
    _, entries = load_registry()
    urls_known: bool | None = None
    result: list[tuple[ModelEntry, str]] = []
    cache = cache_dir(create=False)
    for entry in entries:
        packaged = packaged_dir() / entry.filename
        cached = cache / entry.filename
        if packaged.is_file() and packaged.stat().st_size == entry.size:
            status = "packaged"
        elif (cached.is_file() and cached.stat().st_size == entry.size) or any(
            mid == entry.id for mid, _ in _cache_candidates(entry.id)
        ):
            status = "cached"
        else:
            if urls_known is None:
                urls_known = bool(model_urls())
            status = "downloadable" if urls_known else "unavailable"
        result.append((entry, status))
    known = {e.id for e in entries}
    for mid, path in _cache_candidates(""):
        if mid in known:
            continue
        try:
            sha = _sha256_file(path)
        except OSError:
            continue
        if sha[:ID_LEN] == mid:
            known.add(mid)
            name = path.name.removesuffix(f"-{mid}.safetensors")
            result.append((_entry_for_file(path, sha, name), "cached"))
    return result


# --------------------------------------------------------------------------- cheap look-ups

_MAX_HEADER_BYTES = 16 << 20


def locate(model: str | None = None) -> Path | None:
    """Where ``model``'s weights would be found on disk, without hashing them (None: not here yet).

    For checks that must run in milliseconds, before the model loads: an unknown or
    ambiguous name raises ``ModelError`` here, exactly as :func:`resolve` would.
    :func:`resolve` still verifies the bytes before anything uses them.
    """
    if model is not None and _looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelError(_one_line(f"model file {path} does not exist or is not a file"))
        return path
    model, entry = _registry_lookup(model)
    if entry is None:
        key = model.lower()
        if _is_hex(key) and MIN_PREFIX_LEN <= len(key) <= ID_LEN:
            found = {mid: path for mid, path in _cache_candidates(key)}
            if len(found) == 1:
                return next(iter(found.values()))
            if len(found) > 1:
                raise ModelError(_one_line(f"model id prefix {model!r} is ambiguous (matches {', '.join(sorted(found))})"))
        raise _unknown(model)
    for path in (packaged_dir() / entry.filename, cache_dir(create=False) / entry.filename):
        if path.is_file():
            return path
    for mid, path in _cache_candidates(entry.id):
        if mid == entry.id:
            return path
    return None


def weights_config(path: Path) -> dict[str, Any] | None:
    """The architecture config stored in a weights file's safetensors header (None if unreadable).

    Reads only the JSON header (a few kB), so the number of rates is known without torch.
    """
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= _MAX_HEADER_BYTES:
                return None
            header = json.loads(fh.read(size))
        config = json.loads(header["__metadata__"]["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return config if isinstance(config, dict) else None


def max_quality(model: str | None = None) -> float | None:
    """The highest ``-q`` of ``model`` (rates − 1), from its weights header; None if not on disk yet."""
    path = locate(model)
    config = None if path is None else weights_config(path)
    lambdas = None if config is None else config.get("lambdas")
    if not isinstance(lambdas, list) or not lambdas:
        return None
    return float(len(lambdas) - 1)
