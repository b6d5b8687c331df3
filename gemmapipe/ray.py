"""Scale-out on Ray Data: any gemmapipe task as a ``Dataset.map_batches`` callable class, a row out for every row in.

    import ray
    from gemmapipe.ray import TaskPredictor, read_lines

    ds = read_lines(["logs/a.jsonl", "logs/b.jsonl"])          # one row per input line: path, line, raw bytes
    out = ds.map_batches(TaskPredictor, fn_constructor_kwargs={"schema": "invoice"},
                         compute=ray.data.ActorPoolStrategy(size=4), num_cpus=1, batch_size=64)

:class:`TaskPredictor` loads the task (a registered name or a schema file, its adapter or another, the compute type,
the threads of each actor) **once per actor**, then maps each batch of rows to output columns. A row is either an
input line as bytes (column ``raw``, as :func:`read_lines` makes: read exactly as the pipe reads a line, JSON or
text, so a bad line becomes the pipe's error record) or a text (column ``text``, with an optional ``id``). Every row
comes out with:

- ``ok``: whether it has a result; ``result``: the result as the pipe writes it (compact JSON text), or None;
  ``error``: the error record as the pipe writes it (JSON text: ``invalid_json``, ``output_truncated``, ...), or None;
- ``confidence``: each field's confidence as JSON text (see :mod:`gemmapipe.grounding`), or None;
  ``record_id``: the record's id as JSON text (``null`` when it has none);
- ``key`` and the provenance columns ``task``, ``adapter_sha256``, ``schema_sha256``, ``base_sha256``,
  ``compute_type``, ``gemmapipe`` (see :mod:`gemmapipe.provenance`);
- the row's own columns (``path``, ``line``, ``id``, ...) but ``raw``.

Bad rows are never dropped: they come out with their error. ``gemmapipe ray KIND`` runs this on files and writes
each input file's results and error records in its order (see the README's "At scale").

Ray is an optional dependency: ``pip install 'gemmapipe[ray]'``.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingExtra, TaskNotFound
from .pipeline import RunOptions, answer_records, error_record
from .provenance import record_key, run_provenance
from .records import DEFAULT_MAX_LINE_BYTES, InputRecord, LineReader, RecordError, json_line, read_records

PROVENANCE_COLUMNS = ("task", "adapter_sha256", "schema_sha256", "base_sha256", "compute_type", "gemmapipe")
OUTPUT_COLUMNS = ("ok", "result", "error", "confidence", "record_id", "key", *PROVENANCE_COLUMNS)


def require_ray():  # type: ignore[no-untyped-def]
    """The ``ray`` module, or a :class:`GemmapipeError` that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("Ray Data is not installed", "pip install 'gemmapipe[ray]'") from exc
    return ray


class TaskPredictor:
    """A ``Dataset.map_batches`` callable class: one task, loaded once per actor (see the module docstring)."""

    def __init__(
        self,
        schema: str,
        kind: str = "extract",
        adapter: str | None = None,
        no_adapter: bool = False,
        compute_type: str = "int8",
        threads: int = 1,
        batch_size: int = 16,
        max_new_tokens: int | None = None,
        max_input_tokens: int = 4096,
        text_field: str = "text",
        id_field: str = "id",
        input_format: str = "auto",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        cache_dir: str | None = None,
        base_model: str | None = None,
        min_confidence: float | None = None,
    ) -> None:
        from .cli import resolve_task
        from .engines import load_engine
        from .models import BaseSource, ModelStore
        from .plugins import get_plugins

        kinds = get_plugins().registry().kinds
        if kind not in kinds:
            raise TaskNotFound(f"unknown kind {kind!r}", f"choose one of: {', '.join(kinds)}")
        self.task = resolve_task(kinds[kind], schema, None, Path(adapter) if adapter else None, no_adapter)
        store = ModelStore(cache_dir, BaseSource.from_env(Path(base_model) if base_model else None))
        self.engine = load_engine(
            self.task.adapter, compute_type, threads, store=store, answers=self.task.model_answers
        )
        self.provenance = run_provenance(self.task, store.base_description, compute_type)
        self.options = RunOptions(
            batch_size=batch_size,
            max_new_tokens=max_new_tokens or self.task.max_new_tokens or 256,
            max_input_tokens=max_input_tokens,
            min_confidence=min_confidence,
            provenance=self.provenance,
        )
        self.text_field, self.id_field, self.input_format, self.max_line_bytes = (
            text_field,
            id_field,
            input_format,
            max_line_bytes,
        )

    def _records(self, batch: dict[str, np.ndarray], rows: int) -> list[InputRecord | RecordError]:
        lines = batch["line"] if "line" in batch else np.arange(1, rows + 1)
        if "raw" in batch:
            records = []
            for raw, line in zip(batch["raw"], lines):
                data = bytes(raw) if raw is not None else b""
                parsed = next(
                    iter(
                        read_records(
                            LineReader(io.BytesIO(data), self.max_line_bytes),
                            self.input_format,  # type: ignore[arg-type]
                            self.text_field,
                            self.id_field,
                        )
                    ),
                    None,
                )
                if parsed is None:  # an empty row: the pipe's empty line
                    parsed = RecordError(int(line), "empty_line", "the line is empty or only whitespace", "")
                parsed.line = int(line)
                records.append(parsed)
            return records
        texts = batch[self.text_field]
        ids = batch[self.id_field] if self.id_field in batch else [None] * rows
        records = []
        for text, line, record_id in zip(texts, lines, ids):
            record_id = record_id.item() if isinstance(record_id, np.generic) else record_id
            if not isinstance(text, str) or not text.strip():
                records.append(
                    RecordError(
                        int(line),
                        "empty_text" if isinstance(text, str) else "missing_text_field",
                        f"the {self.text_field!r} column is {'empty' if isinstance(text, str) else 'not a string'}",
                        "" if text is None else str(text)[:200],
                        record_id,
                    )
                )
            else:
                records.append(InputRecord(int(line), text, None, record_id))
        return records

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(batch.values()))) if batch else 0
        records = self._records(batch, rows)
        # rows may share a line number (lines of several files): answer by position, not by line
        positions = {id(r): i for i, r in enumerate(records)}
        good = [r for r in records if isinstance(r, InputRecord)]
        renumbered = [InputRecord(i, r.text, r.fields, r.id) for i, r in ((positions[id(r)], r) for r in good)]
        generations = (
            answer_records(self.task, self.engine, renumbered, self.options, threading.Event()) if renumbered else {}
        )
        out: dict[str, list[Any]] = {name: [] for name in OUTPUT_COLUMNS}
        for position, record in enumerate(records):
            result = error = confidence = key = None
            if isinstance(record, InputRecord):
                generation = generations[position]
                key = record_key(record.text, self.provenance)
                failure = error_record(record, generation, self.options.min_confidence)
                if failure is None:
                    result = generation.text
                    confidence = json.dumps(generation.confidence) if generation.confidence is not None else None
                else:
                    error = failure.to_json()
            else:
                error = record.to_json()
            out["ok"].append(result is not None)
            out["result"].append(result)
            out["error"].append(error)
            out["confidence"].append(confidence)
            out["record_id"].append(json_line(record.id))
            out["key"].append(key)
            for name in PROVENANCE_COLUMNS:
                out[name].append(self.provenance[name])
        passed = {name: values for name, values in batch.items() if name != "raw" and name not in out}
        return {
            **passed,
            **{name: np.array(values, dtype=object if name != "ok" else bool) for name, values in out.items()},
        }

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


def read_lines(paths: Sequence[str | Path]):  # type: ignore[no-untyped-def]
    """A Ray dataset with one row per line of the files: ``path``, ``line`` (1-based, within its file) and ``raw``
    (the line's bytes without its ending), in file order and line order. Each file is read whole by one task."""
    ray = require_ray()

    def split(row: dict[str, Any]) -> list[dict[str, Any]]:
        data = row["bytes"]
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the final newline ends the last line; it starts none
        return [
            {"path": row["path"], "line": number, "raw": line[:-1] if line.endswith(b"\r") else line}
            for number, line in enumerate(lines, 1)
        ]

    return ray.data.read_binary_files([str(p) for p in paths], include_paths=True).flat_map(split)


def to_pipe_lines(row: dict[str, Any], envelope: bool = False) -> tuple[str | None, str | None]:
    """A result row as the pipe would write it: (the result line or None, the error record or None)."""
    if row["result"] is None:
        return None, row["error"]
    if not envelope:
        return row["result"], None
    value = {
        "line": int(row["line"]) if row.get("line") is not None else None,
        "id": json.loads(row["record_id"]),
        "result": json.loads(row["result"]),
        "confidence": json.loads(row["confidence"]) if row.get("confidence") else None,
        "key": row["key"],
        "provenance": {name: row[name] for name in PROVENANCE_COLUMNS},
    }
    return json_line(value), None
