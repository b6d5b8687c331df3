"""The command line through click's CliRunner (stdout and stderr checked separately)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from gemmapipe import __version__
from gemmapipe.adapter import METADATA_FILE as ADAPTER_METADATA
from gemmapipe.adapter import examples_mismatch_warning
from gemmapipe.tasks import Task

LABEL_SCHEMA = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"],
                "additionalProperties": False}


def test_version_and_help(gemmapipe_run):
    import click

    from gemmapipe.cli import cli

    assert __version__ in gemmapipe_run(["--version"]).output
    commands = cli.list_commands(click.Context(cli))  # what the group really has, built in or from plugins
    assert {"extract", "classify", "rewrite", "tasks", "schema", "plugins", "prepare", "train", "eval"} <= set(commands)
    for command in commands:  # each one's help is reachable and says what it is
        result = gemmapipe_run([command, "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output and f"{command} [OPTIONS]" in result.output, command
    assert "--text-field" in gemmapipe_run(["extract", "--help"]).output


def test_tasks_lists_builtin_tasks(gemmapipe_run):
    rows = {r["name"]: r for r in map(json.loads, gemmapipe_run(["tasks", "--json"]).stdout.splitlines())}
    assert rows["invoice"]["kind"] == "extract" and rows["invoice"]["schema"] == "schemas/invoice.json"
    assert rows["banking77"]["kind"] == "classify"
    assert rows["redact"]["kind"] == "rewrite"
    assert rows["invoice"]["plugin"] == "gemmapipe.default_plugins.builtin_tasks"


def test_schema_command_prints_the_task_schema(gemmapipe_run):
    schema = json.loads(gemmapipe_run(["schema", "invoice"]).stdout)
    assert list(schema["properties"]) == ["company", "date", "address", "total"]


def test_plugins_command(gemmapipe_run):
    out = gemmapipe_run(["plugins"]).stdout
    assert "gemmapipe.default_plugins.kinds" in out and "register_task_kinds" in out


def test_adhoc_schema_run_with_good_and_bad_lines(gemmapipe_run, label_schema):
    lines = ['{"id": "a", "text": "win money"}', "{oops", '{"id": "b", "text": "see you"}', "", '{"body": 1}']
    result = gemmapipe_run(["classify", "--schema", label_schema], input="\n".join(lines) + "\n")
    assert result.exit_code == 1  # some records failed
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(outputs) == 2 and all(o["label"] in ("spam", "ham") for o in outputs)
    errors = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(e["line"], e["error"]) for e in errors] == [(2, "invalid_json"), (4, "empty_line"), (5, "missing_text_field")]
    assert "5 records: 2 ok, 3 failed" in result.stderr
    assert "no trained adapter" in result.stderr


def test_stats_file_counts_the_run(gemmapipe_run, label_schema, tmp_path):
    stats_path = tmp_path / "stats.json"
    lines = [json.dumps({"text": "word " * n}) for n in (1, 2, 3, 40, 41)] + ["{oops"]
    result = gemmapipe_run(["classify", "-s", label_schema, "--stats", str(stats_path), "--batch-size", "2"],
                           input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    stats = json.loads(stats_path.read_text())
    assert (stats["records"], stats["ok"], stats["failed"]) == (6, 5, 1)
    assert stats["errors"] == {"invalid_json": 1}
    assert stats["prompt_tokens"] > 5 * 10 and stats["output_tokens"] >= 5
    # five prompts in batches of at most two: the short three make a batch of two and one alone, or so
    assert 1 <= stats["mean_batch_size"] <= 2
    assert stats["peak_rss_mb"] > 0 and stats["replicas"] >= 1


def test_all_good_exits_zero_and_envelope_carries_ids(gemmapipe_run, label_schema):
    result = gemmapipe_run(["classify", "-s", label_schema, "--envelope"], input='{"id": 9, "text": "x"}\n{"text": "y"}\n')
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["line"], r["id"]) for r in rows] == [(1, 9), (2, None)]
    assert rows[0]["result"]["label"] in ("spam", "ham")


def test_errors_file_and_fail_fast(gemmapipe_run, label_schema, tmp_path):
    errors = tmp_path / "errors.jsonl"
    result = gemmapipe_run(["classify", "-s", label_schema, "--errors", str(errors), "--fail-fast"],
                           input='{"text": "a"}\n[]\n{"text": "never reached"}\n')
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 1
    assert [json.loads(line)["error"] for line in errors.read_text().splitlines()] == ["not_an_object"]
    assert "--fail-fast" in result.stderr


def test_text_input_and_fields(gemmapipe_run, label_schema):
    result = gemmapipe_run(["classify", "-s", label_schema, "--format", "text"], input="{not json}\nplain\n")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    result = gemmapipe_run(["classify", "-s", label_schema, "--text-field", "body", "--id-field", "key", "--envelope"],
                           input='{"key": "k1", "body": "hello"}\n')
    assert json.loads(result.stdout)["id"] == "k1"


def test_registered_task_runs(gemmapipe_run):
    # the built-in adapter belongs to the real Gemma 3 270M: on the tiny test model the task runs without it
    result = gemmapipe_run(["classify", "--schema", "banking77", "--no-adapter"], input="I am still waiting on my card?\n")
    assert result.exit_code == 0
    assert "intent" in json.loads(result.stdout)
    assert "has no trained adapter" in result.stderr


def test_an_adapter_of_another_base_model_is_refused_with_a_hint(gemmapipe_run):
    from gemmapipe.resources import builtin_adapter

    assert builtin_adapter("banking77") is not None
    result = gemmapipe_run(["classify", "--schema", "banking77"], input="I am still waiting on my card?\n")
    assert result.exit_code == 3 and result.stdout == ""
    assert "trained on another base model" in result.stderr and "gemmapipe train" in result.stderr
    both = gemmapipe_run(["classify", "--schema", "banking77", "--no-adapter", "--adapter", str(builtin_adapter("banking77"))], input="x\n")
    assert both.exit_code == 2


def test_examples_file_goes_into_the_prompt(gemmapipe_run, label_schema, tmp_path):
    shots = tmp_path / "shots.jsonl"
    shots.write_text('{"text": "cheap pills", "expected": {"label": "spam"}}\n')
    assert gemmapipe_run(["classify", "-s", label_schema, "--examples", str(shots)], input="hi\n").exit_code == 0
    shots.write_text('{"text": "cheap pills", "expected": {"label": "eggs"}}\n')
    result = gemmapipe_run(["classify", "-s", label_schema, "--examples", str(shots)], input="hi\n")
    assert result.exit_code == 2 and "breaks the schema" in result.stderr


def _adapter_with_metadata(src: Path, dest: Path, metadata: dict | None) -> Path:
    shutil.copytree(src, dest)
    if metadata is not None:
        (dest / ADAPTER_METADATA).write_text(json.dumps(metadata))
    return dest


def test_examples_and_an_adapter_trained_otherwise_give_a_warning(gemmapipe_run, label_schema, tiny_adapter, tmp_path):
    shots = tmp_path / "shots.jsonl"
    shots.write_text('{"text": "cheap pills", "expected": {"label": "spam"}}\n')
    plain = _adapter_with_metadata(tiny_adapter, tmp_path / "plain", {"few_shot_examples": 0})
    result = gemmapipe_run(["classify", "-s", label_schema, "--adapter", str(plain), "--examples", str(shots)], input="hi\n")
    assert result.exit_code == 0 and json.loads(result.stdout)["label"] in ("spam", "ham")
    assert f"adapter {plain} was trained on prompts without examples" in result.stderr and "--no-adapter" in result.stderr
    # the same adapter without --examples, or --examples without an adapter: no warning
    assert "without examples" not in gemmapipe_run(["classify", "-s", label_schema, "--adapter", str(plain)], input="hi\n").stderr
    assert "without examples" not in gemmapipe_run(["classify", "-s", label_schema, "--examples", str(shots)], input="hi\n").stderr
    # an adapter trained with examples: a warning without them, none with them
    shot = _adapter_with_metadata(tiny_adapter, tmp_path / "shot", {"few_shot_examples": 1})
    bare = gemmapipe_run(["classify", "-s", label_schema, "--adapter", str(shot)], input="hi\n")
    assert bare.exit_code == 0 and f"adapter {shot} was trained with 1 example in front of every record" in bare.stderr
    assert "--examples FILE" in bare.stderr
    assert "warning" not in gemmapipe_run(["classify", "-s", label_schema, "--adapter", str(shot), "--examples", str(shots)],
                                          input="hi\n").stderr


@pytest.mark.parametrize(
    "metadata, with_examples, without_examples",
    [
        ({"few_shot_examples": 0}, "trained on prompts without examples", None),
        ({"instruction": "Classify."}, "trained on prompts without examples", None),  # written before the key existed
        ({"few_shot_examples": 2}, None, "trained with 2 examples in front of every record, and this run gives none"),
        (None, None, None),  # a plain PEFT folder: nothing is known of its prompts
    ],
)
def test_examples_mismatch_warning_reads_the_adapter_metadata(tmp_path, metadata, with_examples, without_examples):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    if metadata is not None:
        (adapter / ADAPTER_METADATA).write_text(json.dumps(metadata))
    task = Task("t", "classify", LABEL_SCHEMA, "Classify.", adapter=adapter, examples=(("cheap pills", {"label": "spam"}),))
    for checked, expected in ((task, with_examples), (replace(task, examples=()), without_examples)):
        warning = examples_mismatch_warning(checked)
        assert warning is None if expected is None else expected in warning
        assert examples_mismatch_warning(replace(checked, adapter=None)) is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["extract", "--schema", "nope"], "no extract task named 'nope'"),
        (["extract", "--schema", "banking77"], "no extract task named 'banking77'"),
        (["classify", "--schema", "banking77", "--compute-type", "awq"], "no int4 kernel for the CPU"),
        (["extract"], "Missing option '--schema'"),
    ],
)
def test_usage_errors_exit_2_with_a_hint(gemmapipe_run, args, message):
    result = gemmapipe_run(args, input="x\n")
    assert result.exit_code == 2
    assert message in result.stderr or message in result.output


def test_invalid_schema_file(gemmapipe_run, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object", "properties": {"a": {"type": "strng"}}}')
    result = gemmapipe_run(["extract", "--schema", str(bad)], input="x\n")
    assert result.exit_code == 2 and "invalid JSON Schema" in result.stderr
    bad.write_text("{nope")
    result = gemmapipe_run(["extract", "--schema", str(bad)], input="x\n")
    assert result.exit_code == 2 and "is not valid JSON" in result.stderr


def test_unenforced_keyword_warning(gemmapipe_run, tmp_path):
    schema = tmp_path / "u.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"xs": {"type": "array", "maxItems": 2, "uniqueItems": True,
                                  "items": {"enum": [1, 2]}}}, "required": ["xs"], "additionalProperties": False}))
    result = gemmapipe_run(["extract", "--schema", str(schema)], input="x\n")
    assert "does not enforce" in result.stderr and "uniqueItems" in result.stderr


def test_prepare_is_idempotent(gemmapipe_run):
    first = gemmapipe_run(["prepare", "--base-only"])
    second = gemmapipe_run(["prepare", "--base-only"])
    assert first.exit_code == 0 and first.stdout == second.stdout


def test_progress_bar_never_takes_stdout(gemmapipe_run, label_schema, monkeypatch):
    """With the progress bar on a terminal, results still go to stdout and only there."""
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the console as a terminal
    result = gemmapipe_run(["classify", "-s", label_schema, "--format", "text", "--progress"], input="a\nb\nc\n")
    assert result.exit_code == 0
    assert [json.loads(line)["label"] in ("spam", "ham") for line in result.stdout.splitlines()] == [True] * 3
    assert '"label"' not in result.stderr


def test_tables_are_tab_separated_lines_when_piped_and_boxed_on_a_terminal(gemmapipe_run):
    import io

    from gemmapipe.tables import print_table

    result = gemmapipe_run(["tasks"])
    rows = [line.split("\t") for line in result.output.splitlines()]
    assert rows and all(len(row) == 6 for row in rows)  # kind, name, schema, adapter, plugin, description
    assert ["classify", "banking77"] == rows[[r[1] for r in rows].index("banking77")][:2]
    piped = io.StringIO()
    print_table(["a", "b"], [["x\ty", None], ["two\nlines", 3]], title="T", stream=piped)
    assert piped.getvalue() == "x y\t\ntwo lines\t3\n"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    boxed = Terminal()
    print_table(["a", "b"], [["x", 1]], title="T", stream=boxed)
    out = boxed.getvalue()
    assert "T" in out and "│" in out and "\t" not in out  # rich's box, with its title
