"""release_free_memory hands the heap's free holes back to the OS (glibc), as training relies on."""

from __future__ import annotations

import ctypes.util
import sys
from pathlib import Path

import pytest

from gemmapipe.memory import release_free_memory


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="malloc_trim is glibc's")
def test_freed_heap_holes_go_back_to_the_os():
    # 3,000 blocks of 64 KB (each under glibc's mmap threshold, so on the heap), then all freed but a block
    # allocated after them: the freed 190 MB is a hole below the heap's top, which free() alone keeps resident.
    blocks = [bytearray(b"x" * 65536) for _ in range(3000)]
    keep = bytearray(b"y" * 65536)
    del blocks
    before = rss_bytes()
    assert release_free_memory() is True
    assert before - rss_bytes() > 100 * 2**20
    assert keep[0] == ord("y")
