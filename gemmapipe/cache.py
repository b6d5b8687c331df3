"""The on-disk cache: where prepared models live, and how a cache entry is built atomically.

An entry is a directory ``<root>/<kind>/<key>``. It is built in a temporary directory next to it and renamed
into place only when complete, so a half-written entry is never visible (even after ``kill -9``). A lock file
per entry makes two processes that need the same entry at once build it only once: the second waits and
then finds it ready.

The manifest (``gemmapipe-entry.json``, written last) lists every file of the entry with its size and a SHA-256,
and the files are flushed to disk (fsync) before the rename, so a power cut cannot leave a manifest in front of
missing data. Each use checks the entry against its manifest: sizes always, the whole SHA-256 of files up to
``FULL_HASH_LIMIT`` (configuration, tokenizer), and of larger ones (the weights) the SHA-256 of their first and last
MiB, which catches a truncated or overwritten file without reading hundreds of MB at every start. A damaged entry is
moved aside and built again. An entry written before manifests listed files is trusted as before.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SetupError

CACHE_ENV = "GEMMAPIPE_CACHE"
MANIFEST = "gemmapipe-entry.json"


def cache_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``override``, else ``$GEMMAPIPE_CACHE``, else ``$XDG_CACHE_HOME/gemmapipe``."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "gemmapipe"


FULL_HASH_LIMIT = 64 << 20
EDGE_BYTES = 1 << 20


def file_check(path: Path) -> dict[str, object]:
    """What a manifest records of one file: its size and a SHA-256 (of the whole file, or of its first and last
    :data:`EDGE_BYTES` when it is larger than :data:`FULL_HASH_LIMIT`)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
            return {"size": size, "sha256": digest.hexdigest()}
        digest.update(handle.read(EDGE_BYTES))
        handle.seek(size - EDGE_BYTES)
        digest.update(handle.read(EDGE_BYTES))
    return {"size": size, "edge_sha256": digest.hexdigest()}


def entry_files(folder: Path) -> dict[str, dict[str, object]]:
    """:func:`file_check` of every file under ``folder`` but the manifest, by relative path."""
    return {
        str(path.relative_to(folder)): file_check(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def entry_damage(folder: Path) -> str | None:
    """What is wrong with a complete entry (one that has its manifest), or None when its files are as listed."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        listed = manifest.get("files")
    except (OSError, ValueError, AttributeError) as exc:
        return f"its manifest cannot be read ({exc})"
    if listed is None:
        return None  # written before manifests listed files
    for name, expected in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected.get("size"):
            return f"{name} is {path.stat().st_size:,} bytes, {expected.get('size'):,} when it was written"
        if file_check(path) != expected:
            return f"{name} has changed since it was written (its checksum differs)"
    return None


def _sync_folder(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves, so that a rename after it publishes data that
    is on disk."""
    for path in [*folder.rglob("*"), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def content_key(parts: dict[str, object]) -> str:
    """A short stable hash of ``parts`` (a JSON-serialisable description of what an entry is made of)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def hash_files(paths: list[Path]) -> str:
    """sha256 over the names and contents of ``paths``, read in chunks."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _locked(lock_path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path``; call ``on_wait`` first if another process holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_entry(
    root: Path,
    kind: str,
    key: str,
    build: Callable[[Path], None],
    description: dict[str, object] | None = None,
    on_wait: Callable[[], None] | None = None,
    on_damaged: Callable[[str], None] | None = None,
) -> Path:
    """Return ``<root>/<kind>/<key>``, building it with ``build(tmp_dir)`` first if it does not exist.

    ``build`` writes the entry's files into the directory it is given. The entry appears only if ``build``
    returns normally. ``on_wait`` is called once if another process holds the lock (it is building);
    ``on_damaged`` with a message when a complete entry's files no longer match its manifest (it is then rebuilt).
    """
    final = root / kind / key
    if (final / MANIFEST).is_file() and entry_damage(final) is None:
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(
            f"cannot create the cache folder {final.parent}: {exc.strerror}",
            f"point --cache-dir or ${CACHE_ENV} at a writable folder",
        ) from exc
    lock_path = root / "locks" / f"{kind}-{key}.lock"
    with _locked(lock_path, on_wait):
        if (final / MANIFEST).is_file():
            damage = entry_damage(final)
            if damage is None:  # somebody else built it while we waited
                return final
            if on_damaged is not None:
                on_damaged(f"the cache entry {final} is damaged ({damage}); building it again")
            aside = final.with_name(f".{key}.tmp-damaged-{os.getpid()}")
            os.rename(final, aside)  # a process still reading the old files keeps them; removed below
        _remove_stale(final.parent, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=final.parent))
        try:
            build(tmp)
            manifest = {
                "kind": kind,
                "key": key,
                "created": time.time(),
                **(description or {}),
                "files": entry_files(tmp),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            _sync_folder(tmp)
            if final.exists():  # a leftover without a manifest: never complete, safe to replace
                shutil.rmtree(final)
            os.rename(tmp, final)
            _sync_folder_entry(final.parent)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SetupError(
                f"preparing {final} failed: {exc.strerror or exc}; nothing of it was kept",
                f"free space in {final.parent} (or point --cache-dir or ${CACHE_ENV} at another folder) and run again",
            ) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _sync_folder_entry(folder: Path) -> None:
    """fsync ``folder`` itself: the rename of an entry into it is then on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(folder: Path, key: str) -> None:
    """Remove temporary folders left by a build of ``key`` that was killed (we hold the lock, so none is live)."""
    for leftover in folder.glob(f".{key}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
