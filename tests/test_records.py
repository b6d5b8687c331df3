"""Reading input lines: every line becomes a record or an error record."""

from __future__ import annotations

import io
import json

from gemmapipe.records import InputRecord, LineReader, RecordError, json_line, read_records


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


def test_json_that_python_cannot_hold_becomes_an_error_record_and_reading_goes_on():
    huge = b'{"text": "x", "n": ' + b"9" * 5000 + b"}"
    deep = b'{"text": "x", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    records = parse(b"\n".join([huge, deep, b'{"text": "after"}']))
    assert [r.error for r in records[:2]] == ["invalid_json", "invalid_json"]
    assert "4300 digits" in records[0].message and "too deeply" in records[1].message
    assert records[2].text == "after" and records[2].line == 3
    assert all(json.loads(r.to_json()) for r in records[:2])


def test_a_lone_surrogate_in_the_text_is_an_error_record_and_in_the_id_an_escaped_one():
    records = parse(b'{"text": "a\\ud800b", "id": 1}\n{"text": "ok", "id": "x\\udfffy"}\n{"text": "pair \\ud83d\\ude00"}\n')
    assert records[0].error == "invalid_text" and records[0].id == 1
    assert records[1].text == "ok" and records[1].id == "x\udfffy"
    assert records[2].text == "pair \U0001f600"  # a proper pair is one character
    error = RecordError(2, "e", "m", "in", records[1].id)
    line = error.to_json()
    line.encode("utf-8")  # writable to any UTF-8 stream
    assert json.loads(line)["id"] == "x\udfffy"
    assert json_line({"a": "é"}) == '{"a": "é"}'  # non-ASCII stays as is when it can


def test_the_line_limit_counts_the_line_without_its_ending_wherever_it_is():
    exact, over = b"a" * 10, b"a" * 11
    for ending in (b"\n", b"\r\n", b""):  # the last line's ending; none at the end of the input
        records = parse(exact + b"\n" + exact + b"\r\n" + over + ending, max_line_bytes=10)
        assert [type(r).__name__ for r in records] == ["InputRecord", "InputRecord", "RecordError"], ending
        assert records[2].message.startswith("the line is 11 bytes")
        assert isinstance(parse(exact + ending, max_line_bytes=10)[0], InputRecord)
    assert [r.text for r in parse(b"a\r\r\nb", max_line_bytes=10)] == ["a\r", "b"]  # one ending is taken off, no more
