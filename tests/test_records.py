"""Reading input lines: every line becomes a record or an error record."""

from __future__ import annotations

import io
import json

from gemmapipe.records import InputRecord, LineReader, RecordError, read_records


def parse(data: bytes, **kwargs):
    return list(read_records(LineReader(io.BytesIO(data), kwargs.pop("max_line_bytes", 1 << 20)), **kwargs))


def test_auto_detects_json_lines_and_keeps_fields():
    records = parse(b'{"id": 7, "text": "hi", "lang": "en"}\n{"text": "there"}\n')
    assert [r.text for r in records] == ["hi", "there"]
    assert records[0].id == 7 and records[0].fields["lang"] == "en"


def test_auto_detects_plain_text_and_strips_crlf():
    records = parse(b"first line\r\n{not json but text mode}\nlast")
    assert [r.text for r in records] == ["first line", "{not json but text mode}", "last"]
    assert [r.line for r in records] == [1, 2, 3]


def test_bad_lines_become_typed_errors():
    data = b"\n".join([b'{"text": "ok"}', b"{broken", b"[1, 2]", b'"str"', b"   ", b'{"body": "x"}', b'{"text": 5}',
                       b'{"text": "  "}', b"\xff\xfeabc", b'{"text": "a\x00b"}', b'{"text": "fine", "id": "z"}'])
    records = parse(data)
    kinds = [r.error if isinstance(r, RecordError) else "ok" for r in records]
    assert kinds == ["ok", "invalid_json", "not_an_object", "not_an_object", "empty_line", "missing_text_field",
                     "missing_text_field", "empty_text", "invalid_encoding", "nul_byte", "ok"]
    assert records[-1].id == "z"
    for r in records:
        if isinstance(r, RecordError):
            json.loads(r.to_json())  # error records are JSON lines
            assert r.message


def test_long_line_is_an_error_and_reading_goes_on():
    data = b'{"text": "' + b"a" * 5_000_000 + b'"}\n{"text": "next"}\n'
    records = parse(data, max_line_bytes=1000)
    assert isinstance(records[0], RecordError) and records[0].error == "line_too_long"
    assert "5,000,012 bytes" in records[0].message and len(records[0].input) < 300
    assert isinstance(records[1], InputRecord) and records[1].text == "next" and records[1].line == 2


def test_other_encoding_on_request():
    records = parse("café\n".encode("latin-1"), encoding="latin-1")
    assert records[0].text == "café"


def test_text_and_id_fields_are_configurable():
    records = parse(b'{"key": 3, "body": "x"}\n', text_field="body", id_field="key")
    assert records[0].text == "x" and records[0].id == 3
