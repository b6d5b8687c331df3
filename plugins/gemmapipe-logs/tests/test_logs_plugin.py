"""Tests of the logs plugin, written as any plugin author would: with gemmapipe's pytest fixtures."""

from __future__ import annotations

import json

from gemmapipe.evaluate import is_run_of

LINES = [
    '127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326',
    "Oct 11 22:14:15 web01 sshd[4123]: Failed password for root from 10.0.0.1 port 22",
    "kernel: Out of memory: Killed process 812 (java)",
]


def test_tasks_are_registered(gemmapipe_run):
    result = gemmapipe_run(["tasks", "--json"])
    rows = {row["name"]: row for row in map(json.loads, result.output.splitlines())}
    assert rows["logline"]["kind"] == "extract" and rows["logline"]["plugin"] == "logs"
    assert rows["log-severity"]["kind"] == "classify"


def test_logline_answers_validate(gemmapipe_check_task):
    results = gemmapipe_check_task("logline", LINES)
    assert len(results) == len(LINES)
    for line, result in zip(LINES, results):  # the fields a line states verbatim are copied from it, or null
        for field in ("host", "program", "client_ip", "path"):
            value = result.value[field] if result.ok else None
            assert value is None or is_run_of(value, line), (field, value, line)


def test_severity_answers_validate(gemmapipe_check_task):
    results = gemmapipe_check_task("log-severity", LINES)
    assert all(r.ok and r.value["severity"] in {"debug", "info", "notice", "warning", "error", "critical"} for r in results)


def test_runs_in_a_pipe(gemmapipe_run):
    # the tiny test model cannot take the task's adapter (trained on the real Gemma 3 270M): run without it
    result = gemmapipe_run(["classify", "--schema", "log-severity", "--format", "text", "--no-adapter"], input="\n".join(LINES) + "\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(LINES)
