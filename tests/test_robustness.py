"""Nothing lost, whatever arrives (issue 24): hostile lines, an engine that raises, signals, full disks, bad options.

Every input line gets exactly one answer: a result line or an error record, in input order."""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemmapipe import engine as engine_module
from gemmapipe.pipeline import ENGINE_FAILURE_STREAK, RunOptions, run_task
from gemmapipe.records import LineReader, LineWriter, read_records
from gemmapipe.tasks import Task

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"], "additionalProperties": False}
TASK = Task("tiny-label", "classify", SCHEMA, "Classify.")
COMMAND = [sys.executable, "-m", "gemmapipe.cli"]
OPTIONS = RunOptions(batch_size=8, window=16, first_window=4, max_new_tokens=16, output="envelope")


def run(engine, data: bytes, options: RunOptions = OPTIONS):  # type: ignore[no-untyped-def]
    """The pipe in process: every line of ``data`` through ``TASK``; (summary, result lines, error records)."""
    out, errors = io.StringIO(), io.StringIO()
    records = read_records(LineReader(io.BytesIO(data), max_line_bytes=4096))
    summary = run_task(TASK, lambda: engine, records, LineWriter(out), LineWriter(errors), options, threading.Event())
    return summary, [json.loads(x) for x in out.getvalue().splitlines()], [json.loads(x) for x in errors.getvalue().splitlines()]


def lines_of(data: bytes) -> int:
    """How many lines the reader sees in ``data`` (a last line without a newline counts)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


HOSTILE = [b'{"text": "x", "n": ' + b"9" * 5000 + b"}", b'{"text": "x", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
           b'{"text": "a\\ud800b"}', b'{"text": "ok", "id": "\\udfff"}', b"\x00\x01", b"\xff\xfe", b"plain\r", b"{", b'{"text": 1e999}']


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=60), st.sampled_from(HOSTILE),
                          st.builds(lambda t: json.dumps({"text": t}).encode(), st.text(max_size=40))), min_size=1, max_size=12),
       st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_every_line_gets_exactly_one_answer_in_input_order(tiny_engine, lines, ending, final_newline):
    data = ending.join(line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines) + (ending if final_newline else b"")
    summary, results, errors = run(tiny_engine, data)
    assert summary.total == len(results) + len(errors) == lines_of(data)
    answered = sorted([r["line"] for r in results] + [e["line"] for e in errors])
    assert answered == list(range(1, lines_of(data) + 1))  # each line once
    assert [r["line"] for r in results] == sorted(r["line"] for r in results)  # results in input order
    for result in results:
        assert result["result"]["label"] in ("spam", "ham")


def test_a_record_whose_generation_raises_becomes_an_error_record_and_the_rest_are_answered(tiny_engine, monkeypatch):
    real = tiny_engine.generate

    def generate(requests, *args, **kwargs):  # type: ignore[no-untyped-def]
        if any("POISON" in piece for r in requests for piece in r.prompt if isinstance(piece, str)):
            raise RuntimeError("the tokenizer refused the text")
        return real(requests, *args, **kwargs)

    monkeypatch.setattr(tiny_engine, "generate", generate)
    data = b"".join(json.dumps({"text": t, "id": i}).encode() + b"\n" for i, t in enumerate(["a", "b POISON", "c", "d"]))
    summary, results, errors = run(tiny_engine, data)
    assert [r["line"] for r in results] == [1, 3, 4] and summary.stopped_early == ""
    assert errors[0]["line"] == 2 and errors[0]["id"] == 1 and errors[0]["error"] == "engine_error"
    assert "RuntimeError: the tokenizer refused the text" in errors[0]["message"]


def test_an_engine_that_fails_on_every_record_stops_the_run_after_one_window():
    class Broken:
        def generate(self, prompts, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise MemoryError("std::bad_alloc")

    data = b"".join(b"line %d\n" % i for i in range(40))
    options = RunOptions(batch_size=8, window=16, first_window=16)
    summary, results, errors = run(Broken(), data, options)
    assert summary.stopped_early == "engine_failed" and not results
    assert len(errors) == 16 >= ENGINE_FAILURE_STREAK and summary.next_line == 17  # the window's lines all answered


def test_batches_decode_off_the_main_thread_so_signal_handlers_run_at_once(tiny_engine, monkeypatch):
    seen = []
    real = engine_module.decode_batch
    monkeypatch.setattr(engine_module, "decode_batch", lambda *a, **k: (seen.append(threading.current_thread()), real(*a, **k))[1])
    tiny_engine.generate([TASK.prompt("hello", None)], TASK.compiled, max_new_tokens=8)
    assert seen and all(thread is not threading.main_thread() for thread in seen)


@pytest.fixture
def env(gemmapipe_env, gemmapipe_run, tmp_path):
    gemmapipe_run(["prepare", "--base-only"])
    schema = tmp_path / "label.json"
    schema.write_text(json.dumps(SCHEMA))
    return {**os.environ, **gemmapipe_env}, str(schema)


def test_sigterm_ends_the_run_cleanly_with_whole_lines_a_resume_line_and_143(env, tmp_path):
    environment, schema = env
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line number {i}\n" for i in range(20000)))
    out_path = tmp_path / "out.jsonl"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(COMMAND + ["classify", "-s", schema, "--format", "text", str(source)], stdout=out, stderr=subprocess.PIPE,
                                env=environment)
        deadline = time.monotonic() + 120
        while out_path.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    text = stderr.decode()
    assert proc.returncode == 143, text[-3000:]
    lines = out_path.read_text().splitlines()
    assert 0 < len(lines) < 20000 and all(json.loads(line)["label"] in ("spam", "ham") for line in lines)
    assert "stopped by SIGTERM" in text and "Traceback" not in text
    assert int(text.split("tail -n +")[1].split()[0]) == len(lines) + 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("where", ["stdout", "errors"])
def test_a_full_disk_is_one_message_and_exit_74(env, where):
    environment, schema = env
    data = b"hello\n" + b"\xff\n"  # one result, one error record
    target = ["--errors", "/dev/full"] if where == "errors" else []
    with open("/dev/full" if where == "stdout" else os.devnull, "wb") as out:
        proc = subprocess.run(COMMAND + ["classify", "-s", schema, "--format", "text", *target], input=data, stdout=out,
                              stderr=subprocess.PIPE, env=environment, timeout=120)
    text = proc.stderr.decode()
    assert proc.returncode == 74, text
    assert "No space left on device" in text and "tail -n +1" in text and "Traceback" not in text
    assert ("standard output" if where == "stdout" else "--errors /dev/full") in text


def test_bad_errors_paths_and_encodings_are_usage_errors_before_any_work(env, tmp_path):
    environment, schema = env
    source = tmp_path / "in.txt"
    source.write_text("keep me\n")

    def gemmapipe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(COMMAND + ["classify", "-s", schema, *args], capture_output=True, env=environment, timeout=120, text=True)

    unwritable = gemmapipe("--errors", str(tmp_path / "no" / "such" / "dir.jsonl"), str(source))
    assert unwritable.returncode == 2 and "cannot write --errors" in unwritable.stderr
    itself = gemmapipe("--errors", str(source), str(source))
    assert itself.returncode == 2 and "is the input file" in itself.stderr and source.read_text() == "keep me\n"
    held = tmp_path / "held.jsonl"
    held.write_text("earlier\n")
    with open(held, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # as another run would
        busy = gemmapipe("--errors", str(held), str(source))
    assert busy.returncode == 2 and "another gemmapipe run" in busy.stderr and held.read_text() == "earlier\n"
    encoding = gemmapipe("--encoding", "nonsense", str(source))
    assert encoding.returncode == 2 and "'nonsense' is not an encoding" in encoding.stderr and "Traceback" not in encoding.stderr
    fine = gemmapipe("--errors", str(held), str(source))  # the lock is gone: the file is written afresh
    assert fine.returncode == 0 and held.read_text() == ""


def test_a_sure_to_be_too_long_input_is_refused_without_tokenizing(tiny_engine, monkeypatch):
    encoded = []
    real = tiny_engine.tokenizer.encode_prompt
    monkeypatch.setattr(tiny_engine.tokenizer, "encode_prompt", lambda prompt: encoded.append(1) or real(prompt))
    long_text = "word " * 200_000  # a million characters: tens of thousands of tokens whatever the vocabulary
    results = tiny_engine.generate([TASK.prompt(long_text, None), TASK.prompt("short", None)], TASK.compiled, max_new_tokens=32,
                                   max_input_tokens=4096)
    assert results[0].error_type == "input_too_long" and "at least" in results[0].error and results[1].error_type != "input_too_long"
    assert len(encoded) == 1  # only the short one was tokenized


def test_hostile_lines_through_the_command_every_line_answered_exit_1(env, tmp_path):
    environment, schema = env
    good = [json.dumps({"text": f"message {i}", "id": i}).encode() for i in range(5)]
    data = b"\n".join([good[0], *HOSTILE[:4], good[1], b"\xff\xfe", good[2], b"", good[3], b"\x00", good[4]])  # no final newline
    proc = subprocess.run(COMMAND + ["classify", "-s", schema, "--envelope"], input=data, capture_output=True, env=environment, timeout=120)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    errors = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith(b"{")]
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    assert sorted([r["line"] for r in results] + [e["line"] for e in errors]) == list(range(1, lines_of(data) + 1))
    assert [r["id"] for r in results] == [0, "\udfff", 1, 2, 3, 4]  # the id with a lone surrogate came back escaped
    assert [e["error"] for e in errors] == ["invalid_json", "invalid_json", "invalid_text", "invalid_encoding", "empty_line", "nul_byte"]
