"""Properties copied from the input (``x-copy-from-input``): the grammar lets a value be only a run of the text."""

from __future__ import annotations

import json

import pytest

from gemmapipe.errors import SchemaError
from gemmapipe.grammar import COPY_KEYWORD, compile_schema, copy_pieces
from gemmapipe.prompts import chat_prompt

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


def test_pieces_split_words_digits_and_marks_and_escape_for_json():
    assert copy_pieces('RM67.85\n\n "A"\\') == ["RM", "67", ".", "85", " ", '\\"', "A", '\\"', "\\\\"]
    assert copy_pieces("  a\tb  ") == ["a", " ", "b"]


def test_random_model_copies_from_its_own_input(tiny_engine):
    """A random model writes anything it likes; under the grammar every copied value is a run of its record."""
    compiled = compile_schema(SCHEMA)
    assert compiled.copied == ("vendor", "total")
    results = tiny_engine.generate([chat_prompt("Extract.", t) for t in TEXTS], compiled, max_new_tokens=200, sources=TEXTS)
    for text, result in zip(TEXTS, results):
        assert result.ok, result.error
        assert list(result.value) == ["vendor", "n", "total"]
        for name in compiled.copied:
            assert is_copied(result.value[name], text), (name, result.value[name], text)
    assert any(result.value["vendor"] or result.value["total"] for result in results)  # not only empty strings


def test_the_checker_above_rejects_what_is_not_a_run():
    assert is_copied("Acme Corp", TEXTS[0]) and is_copied("9.00 CASH RM", TEXTS[1]) and is_copied('"Acme', TEXTS[0])
    assert not is_copied("Acm", TEXTS[0]) and not is_copied("00 CASH", TEXTS[1][:5]) and not is_copied("Corp from", TEXTS[0])


def test_sources_are_required_for_a_copying_schema(tiny_engine):
    compiled = compile_schema(SCHEMA)
    with pytest.raises(ValueError, match="copied from the input"):
        tiny_engine.generate([chat_prompt("Extract.", "x")], compiled)
    with pytest.raises(ValueError, match="copied from the input"):
        compiled.grammar_for(None)
    plain = compile_schema({**SCHEMA, "properties": {"n": SCHEMA["properties"]["n"]}, "required": ["n"]})
    assert plain.copied == () and plain.grammar_for(None) == plain.grammar


@pytest.mark.parametrize("change, message", [
    ({"required": ["vendor", "n"]}, "all required"),
    ({"additionalProperties": True}, "all required"),
    ({"properties": {**SCHEMA["properties"], "total": {"type": "integer", COPY_KEYWORD: True}}}, "plain string"),
    ({"properties": {**SCHEMA["properties"], "total": {**COPIED, "pattern": "^[0-9.]+$"}}}, "pattern"),
])
def test_copying_needs_required_plain_strings(change, message):
    with pytest.raises(SchemaError, match=message) as info:
        compile_schema({**SCHEMA, **change})
    assert info.value.hint


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


def test_an_adapter_trained_without_copying_still_fits_the_schema(tmp_path, capsys):
    """Marking properties as copied changes decoding, not what an adapter learned: no 'another schema' warning."""
    from gemmapipe.cli import apply_adapter
    from gemmapipe.grammar import decoding_free
    from gemmapipe.models import ADAPTER_METADATA
    from gemmapipe.tasks import Task

    (tmp_path / ADAPTER_METADATA).write_text(json.dumps({"schema": decoding_free(SCHEMA), "instruction": "Learned."}))
    task = Task(name="t", kind="extract", schema=SCHEMA, instruction="Extract.")
    assert apply_adapter(task, tmp_path).instruction == "Learned."
    assert "another schema" not in capsys.readouterr().err
    other = {**SCHEMA, "required": ["vendor", "n"], "additionalProperties": True}
    apply_adapter(Task(name="t", kind="extract", schema=other, instruction="Extract."), tmp_path)
    assert "another schema" in capsys.readouterr().err
