"""The committed logline dataset is what recipes/make_logline_data.py generates: the log-severity lines, each
answered with the fields the line itself writes."""

from __future__ import annotations

import json

import jsonschema

from recipe_loader import committed_split, committed_splits, load_recipe

make_log_severity_data = load_recipe("make_log_severity_data")


def test_committed_files_are_reproduced_by_the_script():
    assert committed_splits("logline") == make_log_severity_data.generate(task="logline")


def test_the_lines_and_severities_are_those_of_the_log_severity_dataset():
    for name in ("train", "test"):
        lines, severities = committed_split("logline", name), committed_split("log-severity", name)
        assert [r["text"] for r in lines] == [r["text"] for r in severities]
        assert [r["expected"]["severity"] for r in lines] == [r["expected"]["severity"] for r in severities]


def test_every_answer_fits_the_task_schema_and_is_written_in_its_line():
    from gemmapipe.plugins import get_plugins

    schema = get_plugins().registry().task("logline").schema
    counts: dict[str, int] = {}
    for record in committed_split("logline", "train") + committed_split("logline", "test"):
        text, answer = record["text"], record["expected"]
        jsonschema.validate(answer, schema)
        assert list(answer) == list(schema["properties"])  # the order the grammar writes them in
        if text.startswith("{"):  # a JSON line: its values are written escaped
            text = " ".join(str(v) for v in json.loads(text).values())
        for field, value in answer.items():
            if value is not None and field != "severity":
                assert str(value) in text, (field, value, text)
                counts[field] = counts.get(field, 0) + 1
    assert all(counts.get(field, 0) > 50 for field in ("timestamp", "host", "program", "client_ip", "method", "status", "message"))
