"""Progress on stderr (rich), shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from .pipeline import RunSummary
from .records import LineReader


class Progress:
    """Records done, records/s, and an ETA when the input size is known (a regular file)."""

    def __init__(self, reader: LineReader, total_bytes: int | None, enabled: bool | None = None) -> None:
        self.reader = reader
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        self._task = None
        if not self.enabled:
            return
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

        columns: list[Any] = [TextColumn("{task.fields[records]} records"), TextColumn("{task.fields[rate]} records/s")]
        if total_bytes:
            columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()]
        self._progress = _stderr_progress(columns)
        self._task = self._progress.add_task("run", total=total_bytes or None, records=0, rate="-")
        self._progress.start()

    def update(self, summary: RunSummary) -> None:
        if self._progress is None:
            return
        rate = f"{summary.total / summary.seconds:.2f}" if summary.seconds else "-"
        self._progress.update(self._task, completed=self.reader.bytes_read, records=f"{summary.total:,}", rate=rate)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class CountProgress:
    """Records answered out of a known total, with records/s and an ETA (for `gemmapipe eval`)."""

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

        self._start = time.perf_counter()
        self._progress = _stderr_progress(
            [
                MofNCompleteColumn(),
                TextColumn("records"),
                BarColumn(),
                TextColumn("{task.fields[rate]} records/s"),
                TimeRemainingColumn(),
            ]
        )
        self._task = self._progress.add_task("eval", total=total, rate="-")
        self._progress.start()

    def update(self, done: int) -> None:
        if self._progress is None:
            return
        seconds = time.perf_counter() - self._start
        self._progress.update(self._task, completed=done, rate=f"{done / seconds:.2f}" if seconds else "-")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _stderr_progress(columns: list[Any]):  # type: ignore[no-untyped-def]
    """A transient rich progress display on stderr that never redirects stdout: results must reach stdout."""
    from rich.console import Console
    from rich.progress import Progress as RichProgress

    return RichProgress(
        *columns, console=Console(file=sys.stderr), transient=True, redirect_stdout=False, redirect_stderr=False
    )


def regular_file_size(stream: IO[bytes]) -> int | None:
    """The size of ``stream`` if it is a regular file (so an ETA makes sense), else None."""
    import os
    import stat

    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
