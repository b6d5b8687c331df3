"""Scale-out on Ray Data (issue 26): a row out for every row in, the pipe's answers, actors that die are replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ray = pytest.importorskip("ray")

from gemmapipe.ray import OUTPUT_COLUMNS, TaskPredictor, read_lines, to_pipe_lines  # noqa: E402

LABEL = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"], "additionalProperties": False}
COMMAND = [sys.executable, "-m", "gemmapipe.cli"]
LINES = [json.dumps({"text": "cheap pills now", "id": 1}), "{broken", "", json.dumps({"text": "lunch at noon?", "id": "x"}),
         json.dumps({"body": "no text"}), "\udcff", json.dumps({"text": "a" * 50, "id": [1, 2]})]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def setup(gemmapipe_env, gemmapipe_run, tmp_path):
    gemmapipe_run(["prepare", "--base-only"])
    schema = tmp_path / "label.json"
    schema.write_text(json.dumps(LABEL))
    source = tmp_path / "in.jsonl"
    source.write_bytes("\n".join(LINES).encode("utf-8", "surrogateescape") + b"\n")  # one line of invalid UTF-8
    kwargs = {"schema": str(schema), "kind": "classify", "cache_dir": gemmapipe_env["GEMMAPIPE_CACHE"],
              "base_model": gemmapipe_env["GEMMAPIPE_BASE_MODEL"], "compute_type": "int8"}
    return {**os.environ, **gemmapipe_env}, schema, source, kwargs


def pipe(environment, schema, source):  # type: ignore[no-untyped-def]
    proc = subprocess.run(COMMAND + ["classify", "-s", str(schema), str(source)], capture_output=True, env=environment, timeout=300)
    return proc.stdout.decode().splitlines(), [line for line in proc.stderr.decode().splitlines() if line.startswith("{")]


def test_every_row_comes_out_with_the_pipes_answer_or_error_record(cluster, setup):
    environment, schema, source, kwargs = setup
    rows = read_lines([source]).map_batches(TaskPredictor, fn_constructor_kwargs=kwargs, batch_size=4,
                                             compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1).take_all()
    assert [r["line"] for r in rows] == list(range(1, len(LINES) + 1))  # a row out for every row in, in order
    assert set(OUTPUT_COLUMNS) <= set(rows[0]) and "raw" not in rows[0]
    results, errors = pipe(environment, schema, source)
    assert [r["result"] for r in rows if r["ok"]] == results  # the same answers as the pipe
    assert [json.loads(r["error"]) for r in rows if not r["ok"]] == [json.loads(e) for e in errors]
    assert [json.loads(r["error"])["error"] for r in rows if not r["ok"]] == ["invalid_json", "empty_line", "missing_text_field",
                                                                             "invalid_encoding"]
    answered = [r for r in rows if r["ok"]]
    assert all(r["task"] == "label" and r["schema_sha256"] and r["key"] and json.loads(r["confidence"])["label"] > 0 for r in answered)
    assert [json.loads(r["record_id"]) for r in answered] == [1, "x", [1, 2]]
    envelope = json.loads(to_pipe_lines(answered[1], envelope=True)[0])
    assert envelope["id"] == "x" and envelope["line"] == 4 and envelope["provenance"]["task"] == "label"


def test_a_text_column_dataset_with_bad_rows(cluster, setup):
    _, _, _, kwargs = setup
    dataset = ray.data.from_items([{"text": "hello there", "id": 7}, {"text": "", "id": 8}, {"text": "spam spam", "id": 9}])
    rows = dataset.map_batches(TaskPredictor, fn_constructor_kwargs=kwargs, batch_size=8, compute=ray.data.ActorPoolStrategy(size=1),
                               num_cpus=1).take_all()
    assert [r["id"] for r in rows] == [7, 8, 9] and [r["ok"] for r in rows] == [True, False, True]
    assert json.loads(rows[1]["error"])["error"] == "empty_text"


class DiesOnce(TaskPredictor):
    """Kills its process in the middle of its first batch, once (a marker file says it happened)."""

    marker = ""

    def __call__(self, batch):  # type: ignore[no-untyped-def]
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(batch)


def test_an_actor_killed_mid_batch_is_replaced_and_no_row_is_lost_or_repeated(cluster, setup, tmp_path):
    _, _, source, kwargs = setup
    DiesOnce.marker = str(tmp_path / "died")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    rows = read_lines([source, source]).map_batches(DiesOnce, fn_constructor_kwargs=kwargs, batch_size=3,
                                                     compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1).take_all()
    assert os.path.exists(DiesOnce.marker)  # it did die
    assert sorted(r["line"] for r in rows) == sorted(list(range(1, len(LINES) + 1)) * 2)  # each line of both copies, once
    assert [r["line"] for r in rows] == list(range(1, len(LINES) + 1)) * 2  # in order


def test_the_ray_command_writes_each_files_results_and_errors_in_order(setup, tmp_path):
    environment, schema, source, _ = setup
    other = tmp_path / "other.txt"
    other.write_text("first\n\nthird\n")
    out = tmp_path / "out"
    proc = subprocess.run(COMMAND + ["ray", "classify", "-s", str(schema), "--input", str(source), "--input", str(other),
                                     "--output", str(out), "--actors", "1"], capture_output=True, env=environment, timeout=600)
    assert proc.returncode == 1, proc.stderr.decode()[-3000:]  # some records failed
    results, errors = pipe(environment, schema, source)
    assert (out / "in.jsonl.jsonl").read_text().splitlines() == results
    assert [json.loads(e) for e in (out / "in.jsonl.errors.jsonl").read_text().splitlines()] == [json.loads(e) for e in errors]
    assert len((out / "other.txt.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "other.txt.errors.jsonl").read_text())["line"] == 2
    assert b"10 records: 5 ok, 5 failed" in proc.stderr


def test_the_ray_command_runs_int4_as_the_pipe_does(setup, tmp_path):
    """Any registered engine, prepared before the actors start (int4 was refused there as not a CTranslate2 type)."""
    pytest.importorskip("llama_cpp")
    environment, schema, source, _ = setup
    out = tmp_path / "out"
    proc = subprocess.run(COMMAND + ["ray", "classify", "-s", str(schema), "--compute-type", "int4", "--input", str(source),
                                     "--output", str(out), "--actors", "1"], capture_output=True, env=environment, timeout=600)
    assert proc.returncode == 1, proc.stderr.decode()[-3000:]  # the bad lines
    piped = subprocess.run(COMMAND + ["classify", "-s", str(schema), "--compute-type", "int4", str(source)], capture_output=True,
                           env=environment, timeout=300)
    assert (out / "in.jsonl.jsonl").read_text().splitlines() == piped.stdout.decode().splitlines()
    assert len(piped.stdout.decode().splitlines()) == 3


def test_without_ray_the_command_names_the_extra(gemmapipe_run, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    (tmp_path / "in.txt").write_text("x\n")
    result = gemmapipe_run(["ray", "classify", "-s", "banking77", "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "pip install 'gemmapipe[ray]'" in result.output


def test_a_shell_expanded_glob_after_input_gives_every_file(gemmapipe_run, monkeypatch, tmp_path):
    """`--input receipts/*.jsonl` reaches the command as one --input and more arguments: all of them are inputs."""
    from gemmapipe.default_plugins import ray_commands

    seen = {}
    monkeypatch.setattr(ray_commands, "run_on_ray", lambda obj, kind, options: seen.update(options) or 0)
    files = [str(tmp_path / f"{n}.jsonl") for n in "abc"]
    result = gemmapipe_run(["ray", "classify", "-s", "banking77", "--input", *files, "--output", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert [str(f) for f in seen["inputs"]] == files
    none = gemmapipe_run(["ray", "classify", "-s", "banking77", "--output", str(tmp_path / "o")])
    assert none.exit_code == 2 and "no input files" in none.output
