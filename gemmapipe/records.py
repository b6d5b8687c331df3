"""Record I/O: the only code that reads the input stream and writes result and error lines.

Input is read as bytes, one line at a time with a length cap, so a multi-megabyte line or a file with no
newline at all never has to fit in memory whole. Every line becomes an :class:`InputRecord` or a
:class:`RecordError`; none is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

InputFormat = Literal["auto", "json", "text"]
EXCERPT_CHARS = 200
DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB


@dataclass
class InputRecord:
    """A usable input line: its text, and the whole object when the line was JSON."""

    line: int
    text: str
    fields: dict[str, Any] | None = None
    id: Any = None


@dataclass
class RecordError:
    """One line that has no result. Written as a JSON line to the error stream."""

    line: int
    error: str
    message: str
    input: str = ""
    id: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        record = {"line": self.line, "id": self.id, "error": self.error, "message": self.message, "input": self.input}
        record.update(self.details)
        return json_line(record)


def json_line(value: Any) -> str:
    """``value`` as one compact-enough JSON line that any UTF-8 stream can take: non-ASCII text is written as is, but
    a string holding a lone UTF-16 surrogate (``"\\ud800"`` in a JSON input, which no UTF-8 text can hold) makes
    the whole line ASCII with ``\\u`` escapes, the same JSON value."""
    line = json.dumps(value, ensure_ascii=False)
    return line if not has_surrogates(line) else json.dumps(value)


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate code point, which UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def excerpt(text: str) -> str:
    """The start of an input line, for error records (long inputs are cut, and say so)."""
    if len(text) <= EXCERPT_CHARS:
        return text
    return text[:EXCERPT_CHARS] + f"… ({len(text)} characters)"


class LineReader:
    """Reads capped lines from a binary stream; counts bytes for progress."""

    def __init__(self, stream: IO[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.stream = stream
        self.max_line_bytes = max_line_bytes
        self.bytes_read = 0

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        """Yields (line without its line ending, its length in bytes without the ending); an over-long line is cut
        at the cap. The ending (``\\n`` or ``\\r\\n``, or none at the end of the input) never counts against the cap."""
        while True:
            chunk = self.stream.readline(self.max_line_bytes + 2)  # room for the line's own \r\n
            if not chunk:
                return
            self.bytes_read += len(chunk)
            if not chunk.endswith(b"\n") and len(chunk) > self.max_line_bytes:
                length, tail = len(chunk), chunk[-1:]
                while True:  # skip the rest of the line without keeping it
                    rest = self.stream.readline(1 << 20)
                    self.bytes_read += len(rest)
                    length += len(rest)
                    tail = (tail + rest)[-2:]
                    if not rest or rest.endswith(b"\n"):
                        length -= 2 if tail == b"\r\n" else 1 if tail.endswith(b"\n") else 0
                        break
                yield chunk[: self.max_line_bytes], length
                continue
            line = chunk[:-1] if chunk.endswith(b"\n") else chunk
            line = line[:-1] if line.endswith(b"\r") else line
            yield line, len(line)


def read_records(
    reader: LineReader,
    input_format: InputFormat = "auto",
    text_field: str = "text",
    id_field: str | None = "id",
    encoding: str = "utf-8",
) -> Iterator[InputRecord | RecordError]:
    """Parse lines into records. ``auto`` picks JSON lines if the first non-blank line starts with ``{``."""
    mode = input_format
    for number, (raw, length) in enumerate(reader, 1):
        if length > reader.max_line_bytes:
            yield RecordError(
                number,
                "line_too_long",
                f"the line is {length:,} bytes; the limit is {reader.max_line_bytes:,}",
                excerpt(raw.decode(encoding, errors="replace")),
                details={"hint": "raise the limit with --max-line-bytes, or split the text"},
            )
            continue
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            yield RecordError(
                number,
                "invalid_encoding",
                f"the line is not valid {encoding}: byte 0x{raw[exc.start]:02x} at position {exc.start}",
                excerpt(raw.decode(encoding, errors="replace")),
                details={"hint": "pass --encoding latin-1 (or the file's encoding), or convert it with iconv"},
            )
            continue
        if "\x00" in line:
            yield RecordError(
                number, "nul_byte", "the line contains NUL bytes (binary data?)", excerpt(line.replace("\x00", "\\0"))
            )
            continue
        if not line.strip():
            yield RecordError(number, "empty_line", "the line is empty or only whitespace", line)
            continue
        if mode == "auto":
            mode = "json" if line.lstrip().startswith("{") else "text"
        if mode == "text":
            yield InputRecord(number, line)
            continue
        yield _json_record(number, line, text_field, id_field)


def _json_record(number: int, line: str, text_field: str, id_field: str | None) -> InputRecord | RecordError:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return RecordError(number, "invalid_json", f"invalid JSON: {exc.msg} at column {exc.colno}", excerpt(line))
    except ValueError as exc:  # an integer of more than 4,300 digits (Python's limit on int parsing)
        return RecordError(
            number,
            "invalid_json",
            f"the JSON line cannot be read: {exc}".split(";")[0],
            excerpt(line),
            details={"hint": "write such numbers as strings"},
        )
    except RecursionError:
        return RecordError(
            number, "invalid_json", "the JSON line nests arrays or objects too deeply to read", excerpt(line)
        )
    if not isinstance(value, dict):
        return RecordError(
            number, "not_an_object", f"the JSON line is a {type(value).__name__}, not an object", excerpt(line)
        )
    record_id = value.get(id_field) if id_field else None
    text = value.get(text_field)
    if text is None:
        keys = ", ".join(list(value)[:8])
        return RecordError(
            number,
            "missing_text_field",
            f"the object has no {text_field!r} field (it has: {keys or 'no fields'})",
            excerpt(line),
            record_id,
            details={"hint": "choose the field with --text-field"},
        )
    if not isinstance(text, str):
        return RecordError(
            number, "missing_text_field", f"the {text_field!r} field is not a string", excerpt(line), record_id
        )
    if not text.strip():
        return RecordError(number, "empty_text", f"the {text_field!r} field is empty", excerpt(line), record_id)
    if has_surrogates(text):
        return RecordError(
            number,
            "invalid_text",
            f"the {text_field!r} field holds a lone UTF-16 surrogate (a \\ud800-\\udfff "
            "escape without its pair), which is not text",
            excerpt(line),
            record_id,
            details={"hint": "fix the program that wrote the line: it split a character in two"},
        )
    return InputRecord(number, text, value, record_id)


class WriteFailed(Exception):
    """A write to an output stream failed (a full disk, an I/O error; a closed pipe stays ``BrokenPipeError``)."""

    def __init__(self, stream: str, reason: str) -> None:
        super().__init__(f"cannot write to {stream}: {reason}")
        self.stream, self.reason = stream, reason


class LineWriter:
    """Writes JSON lines to a text stream. ``flush`` is called once per batch. A failed write raises
    :class:`WriteFailed` naming the stream."""

    def __init__(self, stream: IO[str], name: str = "the output") -> None:
        self.stream = stream
        self.name = name  # for messages: "standard output", "--errors FILE"

    def write(self, line: str) -> None:
        self._guarded(self.stream.write, line + "\n")

    def flush(self) -> None:
        self._guarded(self.stream.flush)

    def _guarded(self, operation, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            operation(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise WriteFailed(self.name, exc.strerror or str(exc)) from exc
