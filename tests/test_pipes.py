"""The command in real pipes: subprocesses, signals, closed outputs, large mixed input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

COMMAND = [sys.executable, "-m", "gemmapipe.cli"]


@pytest.fixture
def env(gemmapipe_env, gemmapipe_run):
    gemmapipe_run(["prepare", "--base-only"])  # convert once, outside the timed subprocesses
    return {**os.environ, **gemmapipe_env}


def mixed_lines(n: int, seed: int = 0) -> tuple[bytes, int]:
    rng = random.Random(seed)
    bad = [b"{broken", b"[1, 2, 3]", b"", b"   ", b'{"other": 1}', b'{"text": ""}', b"\xff\xfe\xfd", b'{"text": "a\x00b"}',
           b'{"text": 42}', b'"just a string"']
    lines, good = [], 0
    for i in range(n):
        if rng.random() < 0.3:
            lines.append(json.dumps({"id": i, "text": f"message {i} " + "word " * rng.randint(0, 20)}).encode())
            good += 1
        else:
            lines.append(rng.choice(bad))
    return b"\n".join(lines) + b"\n", good


def test_ten_thousand_mixed_lines_all_accounted_for(env, label_schema, tmp_path):
    data, good = mixed_lines(10_000)
    errors_path = tmp_path / "errors.jsonl"
    proc = subprocess.run(COMMAND + ["classify", "-s", label_schema, "--format", "json", "--envelope", "--errors", str(errors_path),
                                     "--batch-size", "32"], input=data, capture_output=True, env=env, timeout=900)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    results = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    errors = [json.loads(line) for line in errors_path.read_text().splitlines()]
    assert len(results) == good
    assert len(results) + len(errors) == 10_000
    lines = sorted([r["line"] for r in results] + [e["line"] for e in errors])
    assert lines == list(range(1, 10_001))  # every line exactly once
    assert [r["line"] for r in results] == sorted(r["line"] for r in results)  # input order
    assert all(r["result"]["label"] in ("spam", "ham") for r in results)
    assert f"10,000 records: {good:,} ok, {10_000 - good:,} failed" in proc.stderr.decode()


def test_head_closes_the_pipe_quietly(env, label_schema, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line {i}\n" for i in range(3000)))
    shell = f"{' '.join(COMMAND)} classify -s {label_schema} --format text {source} 2>{tmp_path / 'err'} | head -1; echo \"rc=${{PIPESTATUS[0]}}\""
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, env=env, timeout=300, text=True)
    first, rc = proc.stdout.splitlines()
    assert json.loads(first)["label"] in ("spam", "ham")
    assert rc == "rc=141"
    stderr = (tmp_path / "err").read_text()
    assert "Traceback" not in stderr and "Exception" not in stderr


def test_sigint_stops_promptly_with_valid_output(env, label_schema, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line number {i}\n" for i in range(20000)))
    out_path = tmp_path / "out.jsonl"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(COMMAND + ["classify", "-s", label_schema, "--format", "text", str(source)],
                                stdout=out, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 120
        while out_path.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 20  # the tiny model's batches take milliseconds: this catches a hang, not speed
    assert proc.returncode == 130, stderr.decode()[-3000:]
    lines = out_path.read_text().splitlines()
    assert 0 < len(lines) < 20000
    assert all(json.loads(line)["label"] in ("spam", "ham") for line in lines)  # only whole lines
    text = stderr.decode()
    assert "interrupted" in text and "tail -n +" in text and "Traceback" not in text
    next_line = int(text.split("tail -n +")[1].split()[0])
    assert next_line == len(lines) + 1  # resuming there loses and repeats nothing


def test_non_utf8_input_becomes_error_records(env, label_schema):
    data = "ok line\n".encode() + "caf\xe9 latin-1\n".encode("latin-1") + b"another\n"
    proc = subprocess.run(COMMAND + ["classify", "-s", label_schema, "--format", "text"], input=data, capture_output=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 2
    error = json.loads(next(line for line in proc.stderr.decode().splitlines() if line.startswith("{")))
    assert error["line"] == 2 and error["error"] == "invalid_encoding" and "--encoding" in error["hint"]
    proc = subprocess.run(COMMAND + ["classify", "-s", label_schema, "--format", "text", "--encoding", "latin-1"], input=data,
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3


def test_first_conversion_draws_no_library_progress_bar(gemmapipe_env, tmp_path):
    """Converting a local base to CTranslate2 (a process that dequantized nothing) keeps transformers' bars out of stderr."""
    env = {**os.environ, **gemmapipe_env, "GEMMAPIPE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(COMMAND + ["prepare", "--base-only"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "converting the base model" in proc.stderr  # the conversion did run in this process
    assert "Loading weights" not in proc.stderr and "it/s" not in proc.stderr, proc.stderr
