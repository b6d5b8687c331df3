"""Cache entries are atomic (never half-written, even after kill -9) and built once under concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemmapipe.cache import MANIFEST, cache_root, ensure_entry

BUILDER = r"""
import sys, time
from pathlib import Path
from gemmapipe.cache import ensure_entry
root, log, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
def build(out):
    with open(log, "a") as f:
        f.write("build\n")
    (out / "part1").write_text("x")
    time.sleep(delay)
    (out / "part2").write_text("y")
print(ensure_entry(root, "test", "k1", build))
"""


def _spawn(tmp_path: Path, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path / "cache"), str(tmp_path / "log"), str(delay)],
                            stdout=subprocess.PIPE, text=True)


def test_failed_build_leaves_nothing(tmp_path):
    def build(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ensure_entry(tmp_path, "test", "k", build)
    assert not (tmp_path / "test" / "k").exists()
    assert list((tmp_path / "test").iterdir()) == []


def test_second_call_does_not_rebuild(tmp_path):
    calls = []
    ensure_entry(tmp_path, "test", "k", lambda out: calls.append(out))
    entry = ensure_entry(tmp_path, "test", "k", lambda out: calls.append(out))
    assert len(calls) == 1 and (entry / MANIFEST).is_file()


def test_kill_9_mid_build_never_leaves_a_visible_entry(tmp_path):
    proc = _spawn(tmp_path, delay=30)
    while not (tmp_path / "log").exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    entry = tmp_path / "cache" / "test" / "k1"
    assert not entry.exists()
    assert list((tmp_path / "cache" / "test").glob(".k1.tmp-*"))  # the half-built folder is left behind...
    rebuilt = _spawn(tmp_path, delay=0)
    assert rebuilt.communicate(timeout=60)[0].strip() == str(entry)
    assert (entry / "part2").read_text() == "y"
    assert not list((tmp_path / "cache" / "test").glob(".k1.tmp-*"))  # ...and cleaned by the next build


def test_concurrent_processes_build_once(tmp_path):
    procs = [_spawn(tmp_path, delay=1.0) for _ in range(3)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outputs)) == 1
    assert (tmp_path / "log").read_text().count("build") == 1


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("GEMMAPIPE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "gemmapipe"
    monkeypatch.setenv("GEMMAPIPE_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "flag") == tmp_path / "flag"


def test_a_damaged_entry_is_found_and_built_again(tmp_path, monkeypatch):
    import gemmapipe.cache as cache

    monkeypatch.setattr(cache, "FULL_HASH_LIMIT", 64)  # "weights" above 64 bytes: checked by size and edges
    monkeypatch.setattr(cache, "EDGE_BYTES", 16)
    builds, notes = [], []

    def build(out: Path) -> None:
        builds.append(1)
        (out / "config.json").write_text('{"layers": 18}')
        (out / "sub").mkdir()
        (out / "sub" / "model.bin").write_bytes(bytes(range(200)))

    def entry() -> Path:
        return ensure_entry(tmp_path, "test", "k", build, on_damaged=notes.append)

    folder = entry()
    manifest = __import__("json").loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == {"config.json", "sub/model.bin"} and "edge_sha256" in manifest["files"]["sub/model.bin"]
    assert entry() == folder and len(builds) == 1  # sound: used as it is
    damage = {"truncated weights": lambda: (folder / "sub" / "model.bin").write_bytes(bytes(range(100))),
              "edited config of the same size": lambda: (folder / "config.json").write_text('{"layers": 19}'),
              "weights overwritten at the end": lambda: (folder / "sub" / "model.bin").write_bytes(bytes(range(199)) + b"\xff"),
              "a missing file": lambda: (folder / "config.json").unlink()}
    for what, damage_it in damage.items():
        damage_it()
        assert entry() == folder, what
        assert (folder / "config.json").read_text() == '{"layers": 18}' and (folder / "sub" / "model.bin").read_bytes() == bytes(range(200))
        assert "is damaged" in notes[-1], what
    assert len(builds) == 1 + len(damage)
    assert not list(tmp_path.joinpath("test").glob(".k.tmp-*"))  # the damaged copies are gone
    old_style = {k: v for k, v in manifest.items() if k != "files"}  # written before manifests listed files
    (folder / MANIFEST).write_text(__import__("json").dumps(old_style))
    (folder / "config.json").write_text("changed")
    assert entry() == folder and len(builds) == 1 + len(damage)  # trusted as before


def test_a_full_disk_while_preparing_is_a_setup_error_and_leaves_nothing(tmp_path):
    import errno

    from gemmapipe.errors import SetupError

    def build(out: Path) -> None:
        (out / "model.bin").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SetupError) as caught:
        ensure_entry(tmp_path, "test", "k", build)
    assert "No space left on device" in caught.value.message and "free space" in caught.value.hint
    assert [p.name for p in (tmp_path / "test").iterdir()] == []


def test_a_corrupt_adapter_metadata_file_is_a_setup_error(tmp_path):
    from gemmapipe.errors import SetupError
    from gemmapipe.adapter import METADATA_FILE as ADAPTER_METADATA
    from gemmapipe.adapter import read_metadata as adapter_metadata

    (tmp_path / ADAPTER_METADATA).write_text('{"task": "cut off')
    with pytest.raises(SetupError) as caught:
        adapter_metadata(tmp_path)
    assert "cannot be read" in caught.value.message and "train the adapter again" in caught.value.hint
