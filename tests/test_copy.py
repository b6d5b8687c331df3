"""Properties copied from the input (``x-copy-from-input``): the grammar lets a value be only a run of the text."""

from __future__ import annotations

import json
import re

import pytest
from llguidance import LLMatcher

from gemmapipe.errors import SchemaError
from gemmapipe.grammar import COPY_KEYWORD, compile_schema, copy_pieces, string_kind
from gemmapipe.prompts import Request, chat_prompt

COPIED = {"type": "string", COPY_KEYWORD: True}
SCHEMA = {"type": "object", "properties": {"vendor": COPIED, "n": {"type": "integer", "minimum": 0, "maximum": 9},
                                           "total": COPIED},
          "required": ["vendor", "n", "total"], "additionalProperties": False}
TEXTS = ['Invoice INV-2031 from "Acme Corp", total $1,250.00', "TOTAL:\n  9.00\tCASH RM10.00",
         "back\\slash and ünïcode 東京 12/05/2018", "x" * 300, "one"]


def is_copied(value: str, source: str) -> bool:
    """``value`` is a run of whole pieces of ``source`` (its whitespace runs read as one space)."""
    pieces = [json.loads(f'"{p}"') for p in copy_pieces(source)]
    if value == "":
        return True
    return any("".join(pieces[i:j]) == value for i in range(len(pieces)) for j in range(i + 1, len(pieces) + 1))


def copied_answers(tiny_engine, schema: dict, texts: list[str]):
    """The random model's answers to ``texts`` under ``schema``, each checked: valid, and every copied value a run
    of its own record (or null, where the property is ``["string", "null"]``)."""
    compiled = compile_schema(schema)
    results = tiny_engine.generate([Request(chat_prompt("Extract.", t), t) for t in texts], compiled, max_new_tokens=200)
    for text, result in zip(texts, results):
        assert result.ok, result.error
        for name in compiled.copied:
            value = result.value[name]
            nullable = string_kind(schema["properties"][name]) == "nullable"
            assert (value is None and nullable) or is_copied(value, text), (name, value, text)
            assert value is None or value == value.strip(), (name, value)  # no space at either end
    return compiled, results


def takes(tiny_engine, compiled, source: str, value: dict) -> bool:
    """Whether the grammar of ``compiled`` for a record whose text is ``source`` lets the model write ``value``."""
    matcher = LLMatcher(tiny_engine.tokenizer.guidance, compiled.grammar_for(source), log_level=0)
    ids = tiny_engine.tokenizer.encode_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    return matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()


def test_pieces_split_words_digits_and_marks_and_escape_for_json():
    assert copy_pieces('RM67.85\n\n "A"\\') == ["RM", "67", ".", "85", " ", '\\"', "A", '\\"', "\\\\"]
    assert copy_pieces("  a\tb  ") == ["a", " ", "b"]


def test_random_model_copies_from_its_own_input(tiny_engine):
    """A random model writes anything it likes; under the grammar every copied value is a run of its record."""
    compiled, results = copied_answers(tiny_engine, SCHEMA, TEXTS)
    assert compiled.copied == ("vendor", "total")
    assert all(list(result.value) == ["vendor", "n", "total"] for result in results)
    assert any(result.value["vendor"] or result.value["total"] for result in results)  # not only empty strings


def test_the_checker_above_rejects_what_is_not_a_run():
    assert is_copied("Acme Corp", TEXTS[0]) and is_copied("9.00 CASH RM", TEXTS[1]) and is_copied('"Acme', TEXTS[0])
    assert not is_copied("Acm", TEXTS[0]) and not is_copied("00 CASH", TEXTS[1][:5]) and not is_copied("Corp from", TEXTS[0])


def test_sources_are_required_for_a_copying_schema(tiny_engine):
    compiled = compile_schema(SCHEMA)
    with pytest.raises(ValueError, match="copied from the input"):
        tiny_engine.generate([chat_prompt("Extract.", "x")], compiled)  # a bare prompt has no source
    with pytest.raises(ValueError, match="copied from the input"):
        tiny_engine.generate([Request(chat_prompt("Extract.", "x"))], compiled)
    with pytest.raises(ValueError, match="copied from the input"):
        compiled.grammar_for(None)
    plain = compile_schema({**SCHEMA, "properties": {"n": SCHEMA["properties"]["n"]}, "required": ["n"]})
    assert plain.copied == () and plain.grammar_for(None) == plain.grammar


@pytest.mark.parametrize("change, message", [
    ({"required": ["vendor", "n"]}, "all required"),
    ({"additionalProperties": True}, "all required"),
    ({"properties": {**SCHEMA["properties"], "total": {"type": "integer", COPY_KEYWORD: True}}}, "plain string"),
    ({"properties": {**SCHEMA["properties"], "total": {**COPIED, "format": "date"}}}, "format"),
    ({"properties": {**SCHEMA["properties"], "total": {**COPIED, "type": ["integer", "null"]}}}, "plain string"),
    ({"properties": {**SCHEMA["properties"], "total": {**COPIED, "type": ["string", "null", "integer"]}}}, "plain string"),
    ({"properties": {**SCHEMA["properties"], "total": {**COPIED, "minLength": 5, "maxLength": 2}}}, "decoding grammar"),
    ({"properties": {**SCHEMA["properties"], "total": {**COPIED, "pattern": "(^a)b"}}}, "decoding grammar"),  # inner anchor
])
def test_copying_needs_required_plain_strings(change, message):
    with pytest.raises(SchemaError, match=message) as info:
        compile_schema({**SCHEMA, **change})
    assert info.value.hint


PRICE = r"^(RM ?)?[0-9]+\.[0-9]{2}$"
PATTERNED = {**SCHEMA, "properties": {**SCHEMA["properties"], "total": {**COPIED, "pattern": PRICE},
                                      "vendor": {**COPIED, "pattern": "[A-Za-z]"}}}
PRICED = ["Acme Corp\nTOTAL RM 1250.00 paid 20.5", "9.00 CASH\tRM10.00 CHANGE 1.00", "x" * 40 + " 0.99",
          '"Q" total: 12.34\\', "one 5.55 two"]


def test_random_model_copies_runs_that_match_the_pattern(tiny_engine):
    """A copied property with a ``pattern`` takes a run of the text that also matches it (anywhere, as JSON
    Schema's ``pattern`` does, unless anchored): a random model's answers all validate."""
    _, results = copied_answers(tiny_engine, PATTERNED, PRICED)  # runs of their records
    for result in results:
        assert re.search(PRICE, result.value["total"]) and re.search("[A-Za-z]", result.value["vendor"]), result.value


@pytest.mark.parametrize("pattern, allowed, refused", [
    (PRICE, ["1250.00", "RM 1250.00"], ["1250", "250.00", "20.5", "RM10.00", "TOTAL RM 1250.00", "RM 1250.00 paid", ""]),
    ("[0-9]{2}$", ["RM 1250.00", "paid 20", "00"], ["20.5", "Corp", "RM 1250.00 paid"]),
    ("^T", ["TOTAL", "TOTAL RM 1250"], ["RM 1250.00", "Corp"]),
    ("TAL|id", ["TOTAL RM", "paid 20", "TOTAL"], ["Acme", "RM 1250.00"]),
    ("^TOTAL|00$", ["TOTAL RM", "RM 1250.00", "TOTAL"], ["Acme", "1250", "RM 1250"]),
    (r"[|]|\.5$", ["20.5", "paid 20.5"], ["20", "RM 1250.00"]),
    ("^$", [""], ["TOTAL"]),
])
def test_pattern_matches_as_json_schema_says(tiny_engine, pattern, allowed, refused):
    """What the grammar lets through is what the validator accepts, among runs of the text."""
    schema = {"type": "object", "properties": {"total": {**COPIED, "pattern": pattern}}, "required": ["total"],
              "additionalProperties": False}
    compiled = compile_schema(schema)
    for value in allowed + refused:
        assert takes(tiny_engine, compiled, PRICED[0], {"total": value}) == (value in allowed), value
        assert (not compiled.errors({"total": value})) == bool(re.search(pattern, value)), value


def test_no_run_matching_the_pattern_gives_an_error_result(tiny_engine):
    """A record whose text has no run that matches is answered with a grammar error, not a wrong value."""
    schema = {"type": "object", "properties": {"total": {**COPIED, "pattern": PRICE}}, "required": ["total"],
              "additionalProperties": False}
    [result] = tiny_engine.generate([Request(chat_prompt("Extract.", "no price here"), "no price here")],
                                    compile_schema(schema))
    assert not result.ok and result.error_type == "grammar_error", result


NULLABLE = {"type": "object", "properties": {"host": {**COPIED, "type": ["string", "null"]},
                                            "n": {"type": "integer", "minimum": 0, "maximum": 9},
                                            "path": {**COPIED, "type": ["null", "string"]}},
            "required": ["host", "n", "path"], "additionalProperties": False}
LOG_LINES = ['10.0.0.1 - - "GET /index.html" 200 2326', "web-01 sshd[4123]: Failed password", "x" * 300, "one"]


def test_random_model_copies_or_writes_null_for_a_nullable_property(tiny_engine):
    """A copied property of type ["string", "null"] takes a run of the text or null, nothing else."""
    compiled, _ = copied_answers(tiny_engine, NULLABLE, LOG_LINES)
    assert compiled.copied == ("host", "path")


@pytest.mark.parametrize("value, taken", [
    ({"host": None, "n": 1, "path": None}, True), ({"host": "web-01", "n": 1, "path": "sshd[4123]:"}, True),
    ({"host": "", "n": 1, "path": None}, True), ({"host": None, "n": 1, "path": "Failed password"}, True),
    ({"host": "web-02", "n": 1, "path": None}, False), ({"host": "null", "n": 1, "path": None}, False),
    ({"host": " sshd", "n": 1, "path": None}, False), ({"host": "web-01 ", "n": 1, "path": None}, False),  # edge space
    ({"host": " ", "n": 1, "path": None}, False), ({"host": "web-01 sshd[4123]:", "n": 1, "path": None}, True),
    ({"host": None, "n": 1, "path": "/index.html"}, False),  # in another line, not this one
])
def test_nullable_copy_grammar_takes_null_or_a_run(tiny_engine, value, taken):
    assert takes(tiny_engine, compile_schema(NULLABLE), LOG_LINES[1], value) == taken
    assert compile_schema(NULLABLE).errors(value) == []  # the validator takes each: only the grammar knows the text


BOUNDED = {"type": "object", "properties": {"host": {**COPIED, "type": ["string", "null"], "maxLength": 6},
                                           "word": {**COPIED, "minLength": 3, "maxLength": 8, "pattern": "^[a-z]"}},
           "required": ["host", "word"], "additionalProperties": False}
BOUNDED_LINE = 'web-01 sshd[4123]: Failed password "Q" x'


@pytest.mark.parametrize("value, taken, valid", [
    ({"host": "web-01", "word": "sshd"}, True, True), ({"host": "", "word": "sshd["}, True, True),
    ({"host": "4123]:", "word": "password"}, True, True), ({"host": None, "word": "sshd"}, True, True),
    ({"host": None, "word": "sshd[4123"}, False, False),  # 9 characters
    ({"host": "web-01 sshd", "word": "sshd"}, False, False), ({"host": None, "word": "Q"}, False, False),  # too short
    ({"host": None, "word": "Failed"}, False, False),  # pattern: a small letter first
    ({"host": "web-02", "word": "sshd"}, False, True), ({"host": None, "word": "ssh"}, False, True),  # not runs
])
def test_copied_values_keep_to_min_and_max_length(tiny_engine, value, taken, valid):
    """minLength and maxLength bound the run the grammar lets a copied property take, with a pattern or without;
    the validator agrees on everything but being a run of the text, which only the grammar knows."""
    compiled = compile_schema(BOUNDED)
    assert takes(tiny_engine, compiled, BOUNDED_LINE, value) == taken, value
    assert (compiled.errors(value) == []) == valid, value


IP = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"
NULLABLE_IP = {"type": "object", "properties": {"ip": {**COPIED, "type": ["string", "null"], "pattern": IP},
                                               "n": {"type": "integer", "minimum": 0, "maximum": 9}},
               "required": ["ip", "n"], "additionalProperties": False}
IP_LINES = ["sshd: Failed password from 10.0.0.5 port 22", "no address 1.2.3 here", "9.9.9.9 - GET /", "x" * 300]


@pytest.mark.parametrize("line, value, taken", [
    (IP_LINES[0], {"ip": "10.0.0.5", "n": 1}, True), (IP_LINES[0], {"ip": None, "n": 1}, True),
    (IP_LINES[0], {"ip": "22", "n": 1}, False), (IP_LINES[0], {"ip": "", "n": 1}, False),
    (IP_LINES[1], {"ip": None, "n": 1}, True), (IP_LINES[1], {"ip": "1.2.3", "n": 1}, False),
])
def test_nullable_copy_with_a_pattern_is_a_matching_run_or_null(tiny_engine, line, value, taken):
    assert takes(tiny_engine, compile_schema(NULLABLE_IP), line, value) == taken, value


def test_nullable_copy_cannot_open_a_string_no_run_finishes(tiny_engine):
    """Where no run of the text matches the pattern, the grammar does not even let the string open: the answer is
    null, never a grammar error halfway through a value."""
    matcher = LLMatcher(tiny_engine.tokenizer.guidance, compile_schema(NULLABLE_IP).grammar_for(IP_LINES[1]), log_level=0)
    assert matcher.try_consume_tokens(tiny_engine.tokenizer.encode_text('{"ip":')) > 0
    quote = tiny_engine.tokenizer.encode_text('"')
    assert matcher.try_consume_tokens(quote) == 0, "a string opened where none can be finished"
    _, results = copied_answers(tiny_engine, NULLABLE_IP, IP_LINES)
    assert results[1].value["ip"] is None and results[3].value["ip"] is None
    assert all(r.value["ip"] is None or re.fullmatch(IP, r.value["ip"]) for r in results)


def test_length_of_a_copied_value_counts_as_json_writes_it(tiny_engine):
    """A quote is two characters inside a JSON string, so the grammar's maxLength is never looser than the
    schema's: '"Q" x' (5 characters, 7 as JSON writes it) fits maxLength 6 for the validator, not for the grammar."""
    compiled = compile_schema(BOUNDED)
    assert compiled.errors({"host": '"Q" x', "word": "sshd"}) == []
    assert not takes(tiny_engine, compiled, BOUNDED_LINE, {"host": '"Q" x', "word": "sshd"})
    assert takes(tiny_engine, compiled, BOUNDED_LINE, {"host": '"Q"', "word": "sshd"})  # 5 as JSON


def test_random_model_copies_runs_within_the_lengths(tiny_engine):
    _, results = copied_answers(tiny_engine, BOUNDED, [BOUNDED_LINE, "abc def-ghij " * 40, "klm"])
    for result in results:  # valid (copied_answers checks it): the lengths hold
        assert 3 <= len(result.value["word"]) <= 8 and (result.value["host"] is None or len(result.value["host"]) <= 6)


def test_copy_false_is_no_copy():
    assert compile_schema({**SCHEMA, "properties": {**SCHEMA["properties"], "vendor": {"type": "string", COPY_KEYWORD: False},
                                                     "total": {"type": "string"}}}).copied == ()


def test_cli_run_copies_from_each_record(gemmapipe_run, tmp_path):
    schema = tmp_path / "copy.json"
    schema.write_text(json.dumps(SCHEMA))
    lines = [json.dumps({"text": t}) for t in TEXTS]
    result = gemmapipe_run(["extract", "--schema", str(schema)], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(outputs) == len(TEXTS)
    for text, value in zip(TEXTS, outputs):
        assert is_copied(value["vendor"], text) and is_copied(value["total"], text)


def test_eval_says_how_often_the_expected_value_is_in_the_text(gemmapipe_run, tmp_path):
    """What copying a field can reach at most, reported by `gemmapipe eval` for an extraction task."""
    schema = tmp_path / "copy.json"
    schema.write_text(json.dumps(SCHEMA))
    data = tmp_path / "data.jsonl"
    labelled = [(TEXTS[0], {"vendor": "Acme Corp", "n": 1, "total": "$1,250.00"}),
                (TEXTS[1], {"vendor": "CASH", "n": 2, "total": "RM 10.00"})]  # "RM10.00" is printed
    data.write_text("".join(json.dumps({"text": t, "expected": e}) + "\n" for t, e in labelled))
    report = gemmapipe_run(["eval", "--schema", str(schema), "--data", str(data), "--json"])
    assert report.exit_code == 0, report.stderr
    assert json.loads(report.stdout)["field_in_text"] == {"vendor": 1.0, "total": 0.5}
    table = gemmapipe_run(["eval", "--schema", str(schema), "--data", str(data)])
    assert "expected value in the text: total" in table.stdout and "50.0%" in table.stdout


def test_an_adapter_trained_without_copying_still_fits_the_schema(tmp_path, capsys):
    """Marking properties as copied changes decoding, not what an adapter learned: no 'another schema' warning."""
    from gemmapipe.adapter import apply_adapter
    from gemmapipe.grammar import decoding_free
    from gemmapipe.adapter import METADATA_FILE as ADAPTER_METADATA
    from gemmapipe.tasks import Task

    (tmp_path / ADAPTER_METADATA).write_text(json.dumps({"schema": decoding_free(SCHEMA), "instruction": "Learned."}))
    task = Task(name="t", kind="extract", schema=SCHEMA, instruction="Extract.")
    assert apply_adapter(task, tmp_path).instruction == "Learned."
    assert "another schema" not in capsys.readouterr().err
    other = {**SCHEMA, "required": ["vendor", "n"], "additionalProperties": True}
    apply_adapter(Task(name="t", kind="extract", schema=other, instruction="Extract."), tmp_path)
    assert "another schema" in capsys.readouterr().err


def test_the_builtin_invoice_copies_date_and_total_of_receipt_shapes():
    """Its patterns take the shapes SROIE labels have (or nothing) and refuse what the model wrote before them."""
    from gemmapipe.resources import builtin_schema

    compiled = compile_schema(builtin_schema("invoice"))
    assert compiled.copied == ("date", "total")

    def valid(date: str = "", total: str = "") -> bool:
        return not compiled.errors({"company": "A", "date": date, "address": "B", "total": total})

    for date in ["25/12/2018", "05 MAR 2018", "28 Mar 18", "20180304", "28-01-18", "2018-03-04", "12.01.19",
                 "Mar 5, 2018", "(12/01/2019)", ""]:
        assert valid(date=date), date
    for date in ["00 CASH 10", "1300-88-6555", "03/2018", "19.00", "4 NANDOS3", "1210644", "SAT 21/10/2017"]:
        assert not valid(date=date), date
    for total in ["9.00", "RM 9.00", "RM9.00", "1,250.00", "$3.50", "-0.50", ""]:
        assert valid(total=total), total
    for total in ["270", "RM", "9", "TOTAL 9.00", "9.00 RM"]:
        assert not valid(total=total), total
