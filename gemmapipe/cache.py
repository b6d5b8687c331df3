"""The on-disk cache: where prepared models live, and how a cache entry is built atomically.

An entry is a directory ``<root>/<kind>/<key>``. It is built in a temporary directory next to it and renamed
into place only when complete, so a half-written entry is never visible (even after ``kill -9``). A lock file
per entry makes two processes that need the same entry at once build it only once: the second waits and
then finds it ready.
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
) -> Path:
    """Return ``<root>/<kind>/<key>``, building it with ``build(tmp_dir)`` first if it does not exist.

    ``build`` writes the entry's files into the directory it is given. The entry appears only if ``build``
    returns normally. ``on_wait`` is called once if another process holds the lock (it is building).
    """
    final = root / kind / key
    if (final / MANIFEST).is_file():
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
        if (final / MANIFEST).is_file():  # somebody else built it while we waited
            return final
        _remove_stale(final.parent, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=final.parent))
        try:
            build(tmp)
            manifest = {"kind": kind, "key": key, "created": time.time(), **(description or {})}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            if final.exists():  # a leftover without a manifest: never complete, safe to replace
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _remove_stale(folder: Path, key: str) -> None:
    """Remove temporary folders left by a build of ``key`` that was killed (we hold the lock, so none is live)."""
    for leftover in folder.glob(f".{key}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
