"""--compute-type int4 (issue 29): ONNX Runtime GenAI behind the engines' common generate, under the same grammar."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("onnxruntime_genai")

LABEL = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"], "additionalProperties": False}
COPY = {"type": "object", "properties": {"who": {"type": "string", "x-copy-from-input": True, "maxLength": 20},
                                         "n": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["who", "n"], "additionalProperties": False}


@pytest.fixture
def schemas(tmp_path):
    paths = {}
    for name, schema in (("label", LABEL), ("copy", COPY)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(schema))
    return paths


def test_int4_answers_follow_the_grammar_on_the_tiny_model(gemmapipe_run, schemas):
    lines = "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(["Ann paid 12", "Bob and Zoë met", "x"]))
    result = gemmapipe_run(["extract", "-s", str(schemas["copy"]), "--compute-type", "int4", "--envelope", "--max-tokens", "40"], lines)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert len(answers) + len(errors) == 3 and answers, result.output
    texts = ["Ann paid 12", "Bob and Zoë met", "x"]
    for answer in answers:
        value = answer["result"]
        assert set(value) == {"who", "n"} and 0 <= value["n"] <= 99
        assert " ".join(value["who"].split()) in " ".join(texts[answer["id"]].split())  # copied from its own text
        assert all(0 < c <= 1 for c in answer["confidence"].values()) and answer["provenance"]["compute_type"] == "int4"
    assert all(e["error"] in ("output_truncated", "grammar_error") for e in errors)
    labels = gemmapipe_run(["classify", "-s", str(schemas["label"]), "--format", "text", "--compute-type", "int4"], "one\ntwo\n")
    assert labels.exit_code == 0 and [json.loads(x)["label"] in ("spam", "ham") for x in labels.stdout.splitlines()] == [True, True]


def test_int4_through_eval_and_prepare(gemmapipe_run, schemas, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": f"message {i}", "expected": {"label": "spam"}}) + "\n" for i in range(3)))
    report = gemmapipe_run(["eval", "--schema", str(schemas["label"]), "--kind", "classify", "--data", str(data), "--compute-type", "int4", "--json"])
    assert report.exit_code == 0 and json.loads(report.stdout)["schema_validity_rate"] == 1.0
    prepared = gemmapipe_run(["prepare", "--base-only", "--compute-type", "int4"])
    assert prepared.exit_code == 0 and "/ort/" in prepared.stdout


def test_without_the_extra_int4_names_it(gemmapipe_run, schemas, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)  # as if it were not installed
    result = gemmapipe_run(["classify", "-s", str(schemas["label"]), "--format", "text", "--compute-type", "int4"], "hello\n")
    assert result.exit_code == 2 and "pip install 'gemmapipe[int4]'" in result.stderr


def test_int4_too_long_inputs_become_error_records_in_order(gemmapipe_run, schemas):
    """The same limit rule as int8 (engine.encode_within_limit): over --max-input-tokens is an error record, and a text
    sure to be over it is refused before it is tokenized (the "at least" message)."""
    lines = ["short one", "word " * 300, "x" * 200_000, "short two"]
    result = gemmapipe_run(["classify", "-s", str(schemas["label"]), "--format", "text", "--compute-type", "int4",
                            "--max-input-tokens", "200"], "".join(line + "\n" for line in lines))
    assert result.exit_code == 1, result.output
    assert [json.loads(x)["label"] in ("spam", "ham") for x in result.stdout.splitlines()] == [True, True]
    errors = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(e["line"], e["error"]) for e in errors] == [(2, "input_too_long"), (3, "input_too_long")]
    assert "at least" in errors[1]["message"] and "at least" not in errors[0]["message"]
