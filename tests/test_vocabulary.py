"""Closed answers: listing a classifier's answers, their tokens, and a model that scores only those tokens."""

from __future__ import annotations

import pytest

from gemmapipe.engine import Engine
from gemmapipe.grammar import compile_schema
from gemmapipe.prompts import chat_prompt
from gemmapipe.tokenizer import token_bytes
from gemmapipe.vocabulary import answer_token_ids, fixed_answers

LABELS = {"type": "object", "properties": {"label": {"enum": ["card_arrival", "card_linking", "pin_blocked"]}},
          "required": ["label"], "additionalProperties": False}


def test_an_enum_lists_its_answers_as_the_grammar_writes_them():
    assert fixed_answers(LABELS) == ('{"label":"card_arrival"}', '{"label":"card_linking"}', '{"label":"pin_blocked"}')


def test_optional_booleans_nulls_and_consts_are_listed():
    schema = {"type": "object", "additionalProperties": False, "required": ["a"],
              "properties": {"a": {"const": 1}, "b": {"type": "boolean"}, "c": {"type": "null"}}}
    assert set(fixed_answers(schema)) == {'{"a":1}', '{"a":1,"b":true}', '{"a":1,"b":false}', '{"a":1,"c":null}',
                                          '{"a":1,"b":true,"c":null}', '{"a":1,"b":false,"c":null}'}


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"], "additionalProperties": False},
    {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False},
    {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}},  # other properties may be added
    {"type": "object", "properties": {"label": {"enum": ["caf\u00e9", "b"]}}, "additionalProperties": False},  # \u00e9 or é
    {"type": "object", "properties": {"label": {"enum": ['say "hi"']}}, "additionalProperties": False},
    {"type": "object", "additionalProperties": False,
     "properties": {f"p{i}": {"enum": list(range(10))} for i in range(5)}},  # 11^5 combinations
])
def test_open_or_large_answer_sets_are_not_listed(schema):
    assert fixed_answers(schema) is None


def test_answer_tokens_cover_every_way_of_writing_an_answer(tiny_engine):
    tokenizer = tiny_engine.tokenizer
    tokens = token_bytes(tokenizer.hf)
    answers = fixed_answers(LABELS)
    ids = answer_token_ids(answers, tokens, always=tokenizer.stop_ids)
    assert set(tokenizer.stop_ids) <= set(ids) and ids == sorted(ids)
    for answer in answers:
        assert set(tokenizer.encode_text(answer)) <= set(ids)
        data = answer.encode()
        for i in ids:  # every kept token is a piece of some answer (or a stop token)
            assert i in tokenizer.stop_ids or any(tokens[i] in a.encode() for a in answers), tokens[i]
    assert len(ids) < len(tokens)


def test_a_model_scoring_only_answer_tokens_gives_the_same_answers(tiny_store, tiny_adapter):
    compiled = compile_schema(LABELS)
    prompts = [chat_prompt("Classify.", text) for text in ["hi", "my card did not come", "x " * 40, "pin?", "ok ok"]]
    with Engine.load(tiny_adapter, "float32", threads=1, store=tiny_store) as full:
        expected = full.generate(prompts, compiled)
        assert full.output_ids is None
    with Engine.load(tiny_adapter, "float32", threads=1, store=tiny_store, answers=fixed_answers(LABELS)) as small:
        got = small.generate(prompts, compiled)
        assert small.output_ids is not None and len(small.output_ids) < small.tokenizer.guidance.vocab_size
    assert [g.text for g in got] == [e.text for e in expected]
    assert all(g.ok for g in got)
