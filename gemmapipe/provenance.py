"""Where an answer came from, and what it answered: the run's provenance, each record's content key, and the keys an
earlier run's output already holds (``--resume``).

- :func:`run_provenance`: the task, the content hashes of its adapter and schema, the base model's hash, the
  compute type and the gemmapipe version: enough to trace a result and reproduce it.
- :func:`record_key`: a hash of the record's text and of what answers it (task, adapter, schema), so the same text
  through the same task is recognised in a later run, and the same text through another adapter is not.
- :func:`read_done_keys`: the keys of an earlier ``--envelope`` output; a last line cut off by a crash is left out
  (and, when that file is also this run's output, cut off so the new lines start on a line of their own).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import __version__
from .adapter import adapter_files
from .cache import hash_files
from .tasks import Task


def schema_hash(schema: dict[str, Any]) -> str:
    """SHA-256 of the schema's canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(
        json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def run_provenance(task: Task, base: dict[str, object], compute_type: str) -> dict[str, Any]:
    """What every envelope of a run carries: see the module docstring. ``base`` is the model store's description of
    the base weights (its ``sha256`` is the GGUF's checksum, or a hash of a local model's files)."""
    return {
        "task": task.name,
        "adapter_sha256": hash_files(adapter_files(task.adapter)) if task.adapter else None,
        "schema_sha256": schema_hash(task.schema),
        "base_sha256": base.get("sha256"),
        "compute_type": compute_type,
        "gemmapipe": __version__,
    }


def record_key(text: str, provenance: dict[str, Any]) -> str:
    """The content key of one record: SHA-256 (first 32 hex digits) of its text, task, adapter and schema."""
    parts = [text, provenance["task"], provenance["adapter_sha256"], provenance["schema_sha256"]]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:32]


def read_done_keys(path: Path, output_fd: int | None = None) -> tuple[set[str], int]:
    """The content keys of the results in an earlier ``--envelope`` output at ``path``, and how many lines could not
    be read (a last line cut off by a crash; error records and other lines have no key and are not counted).

    When ``output_fd`` (this run's standard output) is the same file and it ends in a cut-off line, the file is
    truncated to its last whole line, so this run's first result does not join it."""
    keys: set[str] = set()
    unreadable = 0
    with open(path, "rb") as handle:
        data = handle.read()
    for raw in data.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(line, dict) and isinstance(line.get("key"), str) and "result" in line:
            keys.add(line["key"])
    if data and not data.endswith(b"\n") and output_fd is not None and _same_regular_file(path, output_fd):
        os.ftruncate(output_fd, data.rfind(b"\n") + 1)
    return keys, unreadable


def _same_regular_file(path: Path, fd: int) -> bool:
    import stat

    try:
        here, there = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISREG(there.st_mode) and (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
