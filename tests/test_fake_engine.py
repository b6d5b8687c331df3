"""The pipe and the CLI around an engine, with gemmapipe.testing.FakeEngine in place of a model.

These tests choose the engine's answers, so they reach what a model rarely does on cue: an answer that breaks the
schema, an engine that raises, answers that differ by record. The engine itself is tested on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemmapipe.prompts import Request
from gemmapipe.testing import FakeEngine

def label_of(request: Request) -> dict:
    """'spam' for a record whose text holds 'win', else 'ham' (what the fake engine answers)."""
    return {"label": "spam" if "win" in (request.source or "") else "ham"}


@pytest.fixture
def fake(monkeypatch):
    """Every engine the CLI loads is this fake one (set its `answer` to choose the answers)."""
    engine = FakeEngine(label_of)
    monkeypatch.setattr("gemmapipe.engines.load_engine", lambda *args, **kwargs: engine)
    return engine


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet="winxy \t", min_size=1, max_size=12).filter(str.strip), min_size=1, max_size=40))
def test_each_answer_reaches_stdout_in_input_order(gemmapipe_run, monkeypatch, label_schema, texts):
    engine = FakeEngine(label_of)
    monkeypatch.setattr("gemmapipe.engines.load_engine", lambda *args, **kwargs: engine)
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    result = gemmapipe_run(["classify", "--schema", label_schema, "--envelope", "--batch-size", "3"], input=lines)
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == list(range(len(texts)))
    assert [o["result"]["label"] for o in out] == [("spam" if "win" in t else "ham") for t in texts]
    assert [r.source for r in engine.requests] != [] and len(engine.requests) == len(texts)


def test_an_answer_that_breaks_the_schema_becomes_an_error_record_and_exit_1(gemmapipe_run, fake, label_schema):
    fake.answer = lambda request: {"label": "maybe"} if "bad" in (request.source or "") else label_of(request)
    result = gemmapipe_run(["classify", "--schema", label_schema, "--format", "text"], input="win\nbad one\nhello\n")
    assert result.exit_code == 1
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"label": "spam"}, {"label": "ham"}]
    [error] = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert error["line"] == 2 and error["error"] == "schema_violation" and "maybe" in error["message"]


def test_an_engine_that_raises_on_one_record_costs_only_that_record(gemmapipe_run, fake, label_schema):
    def answer(request: Request) -> dict:
        if "boom" in (request.source or ""):
            raise RuntimeError("the engine cannot read this record")
        return label_of(request)

    fake.answer = answer
    result = gemmapipe_run(["classify", "--schema", label_schema, "--format", "text"], input="a\nboom\nwin\n")
    assert result.exit_code == 1
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"label": "ham"}, {"label": "spam"}]
    [error] = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert error["line"] == 2 and error["error"] == "engine_error" and "cannot read this record" in error["message"]


def test_the_fake_engine_refuses_what_a_real_one_refuses(label_schema):
    from gemmapipe.grammar import compile_schema

    engine = FakeEngine(label_of)
    copying = compile_schema({"type": "object", "properties": {"n": {"type": "string", "x-copy-from-input": True}},
                              "required": ["n"], "additionalProperties": False})
    with pytest.raises(ValueError, match="copied from the input"):
        engine.generate([["no source"]], copying)
    labels = compile_schema(json.loads(Path(label_schema).read_text()))
    [long] = engine.generate([Request(["x" * 50], "x" * 50)], labels, max_input_tokens=10)
    assert long.error_type == "input_too_long" and not long.ok
