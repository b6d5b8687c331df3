"""Answers a pipeline can trust (issue 25): per-field confidence, character offsets, provenance, resume by content."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from gemmapipe.grounding import field_confidence, find_in_text, token_ends, top_level_spans, value_offsets
from gemmapipe.provenance import read_done_keys, record_key

COMMAND = [sys.executable, "-m", "gemmapipe.cli"]
LABEL = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"], "additionalProperties": False}
COPY = {"type": "object", "properties": {"who": {"type": "string", "x-copy-from-input": True, "maxLength": 30},
                                         "what": {"type": ["string", "null"], "x-copy-from-input": True, "maxLength": 30}},
        "required": ["who", "what"], "additionalProperties": False}


def test_spans_of_top_level_values_in_the_grammars_json():
    text = '{"a":"x, y","b":12,"c":{"d":[1,"}"]},"e":null}'
    spans = top_level_spans(text)
    assert {k: text[a:b] for k, (a, b) in spans.items()} == {"a": '"x, y"', "b": "12", "c": '{"d":[1,"}"]}', "e": "null"}


def test_a_fields_confidence_is_its_least_likely_chosen_token():
    pieces = ['{"', "a", '":"', "Ac", "me", '","', "b", '":', "1", "2", "}"]  # one string per token id
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    ids = list(range(len(pieces)))
    assert token_ends(ids, decode)[3] == len('{"a":"Ac')
    forced = None
    logprobs = [forced, forced, forced, math.log(0.9), math.log(0.6), forced, forced, forced, math.log(0.99), math.log(0.3), forced]
    confidence = field_confidence(decode(ids), ids, logprobs, decode)
    assert confidence == {"a": 0.6, "b": 0.3}
    everything_forced = [None] * len(ids)
    assert field_confidence(decode(ids), ids, everything_forced, decode) == {"a": 1.0, "b": 1.0}


def test_offsets_are_code_points_of_the_first_occurrence_with_whitespace_runs_as_one_space():
    text = "Café «Zoë», 12  rue\nde   Paris — Café «Zoë»"
    assert find_in_text("Café «Zoë»", text) == [0, 10]  # occurs twice: the first
    start, end = find_in_text("12 rue de Paris", text)
    assert text[start:end] == "12  rue\nde   Paris"
    assert find_in_text("Lyon", text) is None and find_in_text("  ", text) is None
    offsets = value_offsets({"shop": "Zoë", "address": {"street": "rue de Paris"}, "total": 12, "tags": ["Café", "x"]}, text)
    assert offsets == {"shop": [6, 9], "address.street": [16, 30], "tags.0": [0, 4], "tags.1": None}
    assert text[16:30] == "rue\nde   Paris"


def test_record_keys_change_with_text_adapter_or_schema_and_only_with_them():
    base = {"task": "t", "adapter_sha256": "a", "schema_sha256": "s", "compute_type": "int8", "gemmapipe": "1"}
    key = record_key("hello", base)
    assert key == record_key("hello", {**base, "compute_type": "float32", "gemmapipe": "2"})
    assert len({key, record_key("hello!", base), record_key("hello", {**base, "adapter_sha256": "b"}),
                record_key("hello", {**base, "schema_sha256": "z"}), record_key("hello", {**base, "task": "u"})}) == 5


def test_a_cut_off_last_line_is_skipped_and_cut_from_the_output_it_shares(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"line":1,"key":"k1","result":{}}\n{"line":2,"error":"x"}\n{"line":3,"key":"k3","res')
    with open(out, "ab") as handle:
        keys, unreadable = read_done_keys(out, handle.fileno())
    assert keys == {"k1"} and unreadable == 1
    assert out.read_text() == '{"line":1,"key":"k1","result":{}}\n{"line":2,"error":"x"}\n'


@pytest.fixture
def env(gemmapipe_env, gemmapipe_run, tmp_path):
    gemmapipe_run(["prepare", "--base-only"])
    paths = {}
    for name, schema in (("label", LABEL), ("copy", COPY)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(schema))
    return {**os.environ, **gemmapipe_env}, paths


def run(environment, args, data, **kwargs):  # type: ignore[no-untyped-def]
    return subprocess.run(COMMAND + args, input=data, capture_output=True, env=environment, timeout=300, **kwargs)


def test_the_envelope_carries_confidence_offsets_and_provenance(env):
    environment, schemas = env
    texts = ["Zoë met Ann at the café", "Ann wrote to Zoë twice: Zoë, Zoë"]
    data = "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)).encode()
    proc = run(environment, ["extract", "-s", str(schemas["copy"]), "--envelope", "--max-tokens", "40"], data)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode in (0, 1) and lines, proc.stderr.decode()[-2000:]
    for line in lines:
        text = texts[line["id"]]
        assert set(line["confidence"]) == {"who", "what"} and all(0 < c <= 1 for c in line["confidence"].values())
        for field in ("who", "what"):
            value = line["result"][field]
            if isinstance(value, str) and value.strip():  # a copied value is a run of the text: its offsets are exact
                start, end = line["offsets"][field]
                assert " ".join(text[start:end].split()) == " ".join(value.split())
                assert text.find(text[start:end]) == start  # the first occurrence
        provenance = line["provenance"]
        assert provenance["task"] == "copy" and provenance["adapter_sha256"] is None and len(provenance["schema_sha256"]) == 64
        assert provenance["compute_type"] == "int8" and provenance["base_sha256"] and provenance["gemmapipe"]
        assert line["key"] == record_key(text, provenance)


def test_min_confidence_routes_answers_to_low_confidence_error_records(env):
    environment, schemas = env
    data = b"".join(b"message %d\n" % i for i in range(6))
    everything = run(environment, ["classify", "-s", str(schemas["label"]), "--format", "text", "--min-confidence", "0"], data)
    assert everything.returncode == 0 and len(everything.stdout.splitlines()) == 6
    nothing = run(environment, ["classify", "-s", str(schemas["label"]), "--format", "text", "--min-confidence", "1"], data)
    errors = [json.loads(line) for line in nothing.stderr.splitlines() if line.startswith(b"{")]
    assert nothing.returncode == 1 and not nothing.stdout  # a random model is never certain of its first token
    assert [e["error"] for e in errors] == ["low_confidence"] * 6
    assert all(e["output"]["label"] in ("spam", "ham") and e["confidence"]["label"] < 1 for e in errors)


def test_resume_after_a_run_killed_half_way_gives_the_full_runs_lines_once(env, tmp_path):
    environment, schemas = env
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line number {i}\n" for i in range(3000)))
    args = ["classify", "-s", str(schemas["label"]), "--format", "text", "--envelope"]
    full = run(environment, [*args, str(source)], None)
    assert full.returncode == 0
    out = tmp_path / "out.jsonl"
    with open(out, "ab") as handle:
        victim = subprocess.Popen(COMMAND + [*args, str(source)], stdout=handle, stderr=subprocess.DEVNULL, env=environment)
        deadline = time.monotonic() + 120
        while out.stat().st_size < 20_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    first = len(out.read_text().splitlines())
    assert 0 < first < 3000
    with open(out, "ab") as handle:
        resumed = subprocess.run(COMMAND + [*args, "--resume", str(out), str(source)], stdout=handle, stderr=subprocess.PIPE,
                                 env=environment, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert b"answered before (--resume)" in resumed.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole
    expected = {json.loads(line)["key"]: json.loads(line)["result"] for line in full.stdout.splitlines()}
    assert len(lines) == 3000 == len({line["key"] for line in lines})  # no duplicates, none missing
    assert {line["key"]: line["result"] for line in lines} == expected
    again = run(environment, [*args, "--resume", str(out), str(source)], None)
    assert again.returncode == 0 and not again.stdout and b"3,000 answered before" in again.stderr


def test_resume_needs_the_envelope(env, tmp_path):
    environment, schemas = env
    proc = run(environment, ["classify", "-s", str(schemas["label"]), "--resume", str(tmp_path / "x.jsonl")], b"hi\n")
    assert proc.returncode == 2 and b"add --envelope" in proc.stderr
