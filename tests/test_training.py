"""Training and evaluation on the tiny model: loss goes down, runs resume, adapters load, metrics are right."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from gemmapipe.engine import Engine, Generation
from gemmapipe.errors import GemmapipeError
from gemmapipe.evaluate import is_run_of, normalise, score, similarity
from gemmapipe.tasks import Task
from gemmapipe.training import METADATA, TRIM_EVERY, TrainConfig, train

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"], "additionalProperties": False}
TASK = Task("tiny-label", "classify", SCHEMA, "Classify.")
DATA = [(f"cheap pills offer {i}", {"label": "spam"}) if i % 2 else (f"see you at lunch {i}", {"label": "ham"}) for i in range(24)]


def gen(value):
    return Generation(value, json.dumps(value)) if value is not None else Generation(None, "", "x", "output_truncated")



def labelled_jsonl(records: list[tuple[str, dict]]) -> str:
    """``records`` as the labelled JSONL that `gemmapipe train` and `eval` read."""
    return "".join(json.dumps({"text": t, "expected": e}) + "\n" for t, e in records)

def test_score_on_hand_made_cases():
    expected = [{"company": "ACME  SDN BHD", "total": "9.00"}, {"company": "Foo", "total": "1.00"},
                {"company": "Bar", "total": "2.00"}, {"company": "Baz", "total": "3.00"}]
    got = [gen({"company": "ACME SDN BHD ", "total": "9.00"}),  # whitespace-normalised match
           gen({"company": "foo", "total": "1.00"}),            # case differs
           gen({"company": "Bar", "total": "2.50"}),
           gen(None)]                                          # an error counts as wrong
    report = score("t", expected, got)
    assert report.field_exact_match == {"company": 0.5, "total": 0.5}
    assert report.record_exact_match == 0.25
    assert report.validity_rate == 0.75 and report.errors_by_type == {"output_truncated": 1}
    assert [p["exact"] for p in report.predictions] == [{"company": True, "total": True}, {"company": False, "total": True},
                                                         {"company": True, "total": False}, {"company": False, "total": False}]
    assert report.predictions[2]["output"] == {"company": "Bar", "total": "2.50"} and report.predictions[3]["error_type"] == "output_truncated"
    relaxed = score("t", expected, got, ignore_case=True)
    assert relaxed.field_exact_match["company"] == 0.75
    assert normalise("  a \n b ") == "a b"
    # character similarity: exact 1, "2.50" vs "2.00" shares 3 of 4 characters, the error scores 0
    assert report.field_similarity["total"] == pytest.approx((1 + 1 + 0.75 + 0) / 4)
    assert similarity("[NAME] called", "[NAME] called") == 1.0 and similarity("abc", "xyz") == 0.0


def test_how_often_the_expected_value_is_in_the_text():
    """The ceiling of a copied field: its expected value must be a run of whole pieces of the input text."""
    assert is_run_of("ACME SDN BHD", "ACME\n SDN  BHD\nTOTAL 9.00") and is_run_of("9.00", "TOTAL RM9.00")
    assert not is_run_of("SDN BHD.", "ACME SDN BHD") and not is_run_of("0", "9.00") and not is_run_of("D.E", "D. E")
    assert is_run_of("", "x") and not is_run_of("acme", "ACME") and is_run_of("acme", "ACME", ignore_case=True)
    expected = [{"company": "ACME", "n": 1}, {"company": "KEDAI", "n": 2}, {"company": "", "n": 3}, {"company": "X Y", "n": 4}]
    texts = ["ACME 1", "KEDAI\nBUKU", "nothing", "X\tZ"]
    report = score("t", expected, [gen(e) for e in expected], sources=texts)
    assert report.field_in_text == {"company": 0.75}  # "n" holds no strings; "X Y" is not a run of "X Z"
    assert score("t", expected, [gen(e) for e in expected]).field_in_text == {}


def test_classification_accuracy():
    report = score("t", [{"label": "a"}, {"label": "b"}, {"label": "a"}], [gen({"label": "a"}), gen({"label": "a"}), gen({"label": "a"})])
    assert report.mean_field_exact_match == pytest.approx(2 / 3)


def test_a_few_steps_lower_the_loss(tiny_store, tmp_path, monkeypatch):
    trims = []
    monkeypatch.setattr("gemmapipe.training.release_free_memory", lambda: trims.append(1))
    config = TrainConfig(max_steps=30, batch_size=8, learning_rate=5e-3, rank=4, alpha=8, dev_fraction=0.0, checkpoint_every=100)
    metadata = train(TASK, DATA, tmp_path / "a", tiny_store, config)
    history = json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["state"]["history"]
    assert len(history) == 30
    assert len(trims) == 30 // TRIM_EVERY  # freed activations go back to the OS every few steps
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])
    assert metadata["steps"] == 30 and metadata["prompt_format"] and metadata["schema"] == SCHEMA
    assert metadata["few_shot_examples"] == 0  # TASK has no examples, so its prompts had none
    assert metadata["train_seconds"] > 0 and metadata["seconds_per_epoch"] > 0
    assert (tmp_path / "a" / METADATA).is_file() and (tmp_path / "a" / "adapter_model.safetensors").is_file()
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    assert weights and all(w.dtype == torch.bfloat16 for w in weights.values())  # exported at half the size
    peft_config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert peft_config["r"] == 4 and peft_config["base_model_name_or_path"] is None  # not the trainer's cache path


def test_a_run_can_continue_an_adapter(tiny_store, tmp_path, monkeypatch):
    from gemmapipe.cache import hash_files
    from gemmapipe.errors import GemmapipeError
    from gemmapipe.adapter import adapter_files

    first = train(TASK, DATA, tmp_path / "a", tiny_store,
                  TrainConfig(max_steps=30, batch_size=8, learning_rate=5e-3, rank=4, alpha=8, dev_fraction=0.0))
    config = TrainConfig(max_steps=2, batch_size=8, learning_rate=1e-9, rank=4, alpha=8, dev_fraction=0.0)
    fresh = train(TASK, DATA, tmp_path / "fresh", tiny_store, config)
    continued = train(TASK, DATA, tmp_path / "b", tiny_store, config, init_adapter=tmp_path / "a")
    history = lambda d: json.loads((d / "checkpoint" / "state.json").read_text())["state"]["history"]  # noqa: E731
    # it starts where the first run ended, not from a fresh LoRA (whose loss is the base model's)
    assert history(tmp_path / "b")[0] < 0.5 * history(tmp_path / "fresh")[0]
    assert history(tmp_path / "b")[0] == pytest.approx(np.mean(history(tmp_path / "a")[-3:]), rel=0.5)
    assert fresh.get("continued_from") is None
    origin = continued["continued_from"]
    assert origin["sha256"] == hash_files(adapter_files(tmp_path / "a")) and origin["steps"] == first["steps"] == 30
    assert first["epochs_total"] == 10 and continued["epochs_total"] == 10 + 2 / 3  # 30 steps of 3 per epoch, then 2 more
    exported = json.loads((tmp_path / "b" / "adapter_config.json").read_text())  # as a shipped adapter names its base
    (tmp_path / "b" / "adapter_config.json").write_text(json.dumps(exported | {"base_model_name_or_path": "google/gemma-3-270m"}))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = train(TASK, DATA, tmp_path / "c2", tiny_store, config, init_adapter=tmp_path / "b")
    assert not [w for w in caught if "google/gemma-3-270m" in str(w.message)]  # no Hub lookup when it saves
    assert again["epochs_total"] == 11 + 2 / 3  # a chain counts every run; the partial epoch's shuffle is not reused
    assert again["train_seconds_total"] == round(continued["train_seconds_total"] + again["train_seconds"], 1)  # the chain's sum
    assert first["train_seconds"] > 0 and continued["train_seconds_total"] == round(first["train_seconds"] + continued["train_seconds"], 1)
    with pytest.raises(GemmapipeError, match="rank 4"):  # LoRA shapes must match the adapter it continues
        train(TASK, DATA, tmp_path / "c", tiny_store, TrainConfig(max_steps=1, rank=8, alpha=16, dev_fraction=0.0),
              init_adapter=tmp_path / "a")


def test_training_is_deterministic(tiny_store, tmp_path):
    config = TrainConfig(max_steps=4, batch_size=4, rank=4, alpha=8, dev_fraction=0.0)
    losses = []
    for name in ("x", "y"):
        train(TASK, DATA, tmp_path / name, tiny_store, config)
        losses.append(json.loads((tmp_path / name / "checkpoint" / "state.json").read_text())["state"]["history"])
    assert losses[0] == losses[1]


def test_micro_batches_hold_every_example_once_within_the_token_budget():
    from gemmapipe.training import Example, micro_batches

    batch = [Example(list(range(n)), [1, 2]) for n in (40, 8, 30, 95, 12, 61, 7)]
    parts = micro_batches(batch, max_tokens=120)
    assert sorted(id(e) for p in parts for e in p) == sorted(id(e) for e in batch)
    for part in parts:
        longest = max(len(e.prompt) + len(e.answer) for e in part)
        assert len(part) == 1 or longest * len(part) <= 120
    assert len(parts) > 1 and [p for p in parts if len(p) > 1]  # it splits, and still groups the short ones
    assert micro_batches(batch, max_tokens=10_000) == [sorted(batch, key=lambda e: len(e.prompt))]


def test_a_batch_run_in_parts_trains_as_the_whole_batch(tiny_store, tmp_path, monkeypatch):
    """Each part's summed loss is divided by the batch's answer tokens: the same losses, part by part.

    In float32: under bf16 autocast (the default on a CPU with AVX-512 BF16) parts and whole round differently, and
    their losses drift 6e-4 apart in four Adam steps, as far as a wrongly weighted part moves them (3e-4 at step 1).
    """
    import gemmapipe.training as training

    config = TrainConfig(max_steps=4, batch_size=8, learning_rate=5e-3, rank=4, alpha=8, dev_fraction=0.25, eval_every=2,
                         precision="float32")
    data = [(text + " and more words" * (i % 5), expected) for i, (text, expected) in enumerate(DATA)]  # unequal lengths
    whole = train(TASK, data, tmp_path / "whole", tiny_store, config)
    passes = []
    real_loss = training._summed_loss
    monkeypatch.setattr(training, "_summed_loss", lambda model, batch, *a: passes.append(len(batch)) or real_loss(model, batch, *a))
    monkeypatch.setattr(training, "MICRO_BATCH_TOKENS", 40)
    parts = train(TASK, data, tmp_path / "parts", tiny_store, config)
    assert max(passes) < 8 and len(passes) > 4 * 2  # the training steps ran in parts (and so did the dev loss)
    history = lambda d: json.loads((d / "checkpoint" / "state.json").read_text())["state"]["history"]  # noqa: E731
    assert history(tmp_path / "parts") == pytest.approx(history(tmp_path / "whole"), rel=1e-4)
    assert parts["metrics"]["best_dev_loss"] == pytest.approx(whole["metrics"]["best_dev_loss"], rel=1e-4)


def test_an_interrupted_run_resumes(tiny_store, tmp_path):
    config = TrainConfig(max_steps=8, batch_size=4, rank=4, alpha=8, dev_fraction=0.25, eval_every=2, checkpoint_every=100)
    steps = []
    first = train(TASK, DATA, tmp_path / "r", tiny_store, config, on_step=lambda s, t, l: steps.append(s), should_stop=lambda: len(steps) >= 3)
    assert first["steps"] == 3 and not first["complete"]
    resumed = []
    second = train(TASK, DATA, tmp_path / "r", tiny_store, config, on_step=lambda s, t, l: resumed.append(s))
    assert resumed[0] == 4 and second["steps"] == 8 and second["complete"]
    uninterrupted = train(TASK, DATA, tmp_path / "u", tiny_store, config)
    history = lambda d: json.loads((d / "checkpoint" / "state.json").read_text())["state"]["history"]  # noqa: E731
    assert history(tmp_path / "r")[:3] == history(tmp_path / "u")[:3]
    assert len(history(tmp_path / "r")) == 8


def test_trained_adapter_loads_through_the_engine_and_changes_output(tiny_store, tiny_engine, tmp_path):
    train(TASK, DATA, tmp_path / "m", tiny_store, TrainConfig(max_steps=40, batch_size=8, learning_rate=5e-3, rank=4, alpha=8, dev_fraction=0.0))
    prompts = [TASK.prompt(t) for t, _ in DATA[:8]]
    with Engine.load(tmp_path / "m", compute_type="float32", store=tiny_store) as engine:
        trained = engine.generate(prompts, TASK.compiled)
    base = tiny_engine.generate(prompts, TASK.compiled)
    assert [r.value for r in trained] != [r.value for r in base]
    assert [r.value["label"] for r in trained] == [e["label"] for _, e in DATA[:8]]  # it learned the (training) labels
    assert sum(r.repairs for r in trained) < sum(r.repairs for r in base)


def test_train_and_eval_commands(gemmapipe_run, tmp_path):
    schema = tmp_path / "label.json"
    schema.write_text(json.dumps(SCHEMA))
    data = tmp_path / "data.jsonl"
    data.write_text(labelled_jsonl(DATA))
    result = gemmapipe_run(["train", "--schema", str(schema), "--kind", "classify", "--data", str(data), "--out", str(tmp_path / "ad"),
                            "--max-steps", "60", "--learning-rate", "1e-2", "--rank", "4", "--dev-fraction", "0.25", "--eval-every", "10"])
    assert result.exit_code == 0, result.output
    assert "step 60/60 loss" in result.stderr and "min left" in result.stderr  # progress without a terminal
    assert "Loading weights" not in result.stderr  # transformers' own bars stay out of the log
    result = gemmapipe_run(["eval", "--schema", str(schema), "--kind", "classify", "--adapter", str(tmp_path / "ad"), "--data", str(data), "--json",
                            "--predictions", str(tmp_path / "predictions.jsonl")])
    report = json.loads(result.stdout)
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [(p["record"], p["text"], p["expected"]) for p in predictions] == [(n, t, e) for n, (t, e) in enumerate(DATA, 1)]
    assert sum(p["exact"]["label"] for p in predictions) / 24 == report["field_exact_match"]["label"]
    assert all(p["output"]["label"] in ("spam", "ham") for p in predictions)
    unwritable = gemmapipe_run(["eval", "--schema", str(schema), "--kind", "classify", "--data", str(data),
                                "--predictions", str(tmp_path / "no-such-dir" / "p.jsonl")])
    assert unwritable.exit_code == 2 and "cannot write --predictions" in unwritable.stderr and "Traceback" not in unwritable.output
    assert report["records"] == 24 and report["schema_validity_rate"] == 1.0
    assert report["field_in_text"] == {}  # a class label is not looked for in the text
    assert report["field_exact_match"]["label"] > 0.6
    run = gemmapipe_run(["classify", "--schema", str(schema), "--adapter", str(tmp_path / "ad")], input="cheap pills offer 99\n")
    assert run.exit_code == 0 and json.loads(run.stdout) == {"label": "spam"}
    common = ["train", "--schema", str(schema), "--kind", "classify", "--data", str(data), "--dev-fraction", "0.25"]
    more = gemmapipe_run(common + ["--out", str(tmp_path / "more"), "--init-adapter", str(tmp_path / "ad"), "--max-steps", "3"])
    assert more.exit_code == 0, more.output
    assert json.loads((tmp_path / "more" / METADATA).read_text())["hyperparameters"]["rank"] == 4  # the adapter's own
    clash = gemmapipe_run(common + ["--out", str(tmp_path / "clash"), "--init-adapter", str(tmp_path / "ad"), "--rank", "8"])
    assert clash.exit_code == 2 and "leave out --rank" in clash.stderr and "Traceback" not in clash.output


def test_eval_puts_the_examples_in_every_prompt(gemmapipe_run, tmp_path, monkeypatch):
    import gemmapipe.evaluate

    schema, data, shots = tmp_path / "label.json", tmp_path / "data.jsonl", tmp_path / "shots.jsonl"
    schema.write_text(json.dumps(SCHEMA))
    data.write_text(labelled_jsonl(DATA))
    shots.write_text(json.dumps({"text": "free prize pills", "expected": {"label": "spam"}}) + "\n"
                     + json.dumps({"text": DATA[1][0], "expected": DATA[1][1]}) + "\n")  # also a record of --data
    tasks = []
    real = gemmapipe.evaluate.evaluate
    monkeypatch.setattr(gemmapipe.evaluate, "evaluate", lambda task, *args: tasks.append(task) or real(task, *args))
    common = ["eval", "--schema", str(schema), "--kind", "classify", "--data", str(data), "--limit", "4", "--json"]
    result = gemmapipe_run(common + ["--no-adapter", "--examples", str(shots)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["records"] == 4
    assert set(report["field_scores"]) == {"label"} and report["micro_f1"] == report["field_scores"]["label"]["f1"]
    counts = report["field_counts"]["label"]
    assert counts["tp"] + counts["fn"] == 4  # every record holds a label: found or missed
    table = gemmapipe_run([c for c in common if c != "--json"] + ["--no-adapter", "--examples", str(shots)])
    assert "precision / recall / F1" in table.stdout and "exact match: label" in table.stdout
    assert tasks[0].examples == (("free prize pills", {"label": "spam"}), DATA[1])
    assert "free prize pills" in "".join(p for p in tasks[0].prompt("hello") if isinstance(p, str))
    assert "1 of the --examples texts are also records of --data" in result.stderr
    assert "trained on prompts without examples" not in result.stderr  # no adapter, so nothing to warn of
    shots.write_text(json.dumps({"text": "x", "expected": {"label": "eggs"}}) + "\n")
    bad = gemmapipe_run(common + ["--no-adapter", "--examples", str(shots)])
    assert bad.exit_code == 2 and "breaks the schema" in bad.stderr and "Traceback" not in bad.output


def test_records_longer_than_max_tokens_are_reported_not_dropped_silently(gemmapipe_tiny_model, gemmapipe_cache, tmp_path):
    from gemmapipe.models import BaseSource, ModelStore

    messages: list[str] = []
    store = ModelStore(gemmapipe_cache, BaseSource(gemmapipe_tiny_model), notify=messages.append)
    long_text = "cheap pills offer " + " ".join(f"w{i}" for i in range(200))
    data = DATA[:8] + [(long_text, {"label": "spam"})]
    dev = DATA[8:12] + [(long_text + " again", {"label": "spam"})]
    config = TrainConfig(max_steps=1, batch_size=4, rank=4, alpha=8, dev_fraction=0.0, max_tokens=96)
    metadata = train(TASK, data, tmp_path / "a", store, config, dev_data=dev)
    assert metadata["train_examples"] == 8 and metadata["dev_examples"] == 4
    assert metadata["left_out_records"] == {"train": 1, "dev": 1}
    assert any("1 of 9 training records and 1 of 5 dev records are longer than --max-tokens 96" in m for m in messages)
    messages.clear()
    assert train(TASK, DATA[:8], tmp_path / "b", store, config, dev_data=DATA[8:12])["left_out_records"] == {"train": 0, "dev": 0}
    assert not any("left out" in m for m in messages)


def test_eval_shows_progress_on_a_terminal_only(gemmapipe_env, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    schema, data = tmp_path / "label.json", tmp_path / "data.jsonl"
    schema.write_text(json.dumps(SCHEMA))
    data.write_text(labelled_jsonl(DATA))
    command = [sys.executable, "-m", "gemmapipe", "eval", "--schema", str(schema), "--kind", "classify", "--data", str(data),
               "--batch-size", "4", "--json"]
    env = {**os.environ, **gemmapipe_env}
    master, slave = pty.openpty()  # stderr is a terminal, stdout a pipe
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    stdout = process.stdout.read()
    assert process.wait() == 0
    assert json.loads(stdout)["records"] == len(DATA)  # the report alone on stdout
    assert b"records" in shown and f"/{len(DATA)}".encode() in shown  # "N/24 records" on the terminal
    piped = subprocess.run(command, capture_output=True, env=env)
    assert piped.returncode == 0 and f"/{len(DATA)}".encode() not in piped.stderr  # no bar in logs and pipes


def test_an_interrupted_eval_exits_130_and_keeps_earlier_predictions(gemmapipe_run, tmp_path, monkeypatch):
    import gemmapipe.evaluate

    def interrupted(*args):
        raise KeyboardInterrupt

    schema, data = tmp_path / "label.json", tmp_path / "data.jsonl"
    schema.write_text(json.dumps(SCHEMA))
    data.write_text(labelled_jsonl(DATA[:4]))
    command = ["eval", "--schema", str(schema), "--kind", "classify", "--data", str(data), "--predictions"]
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text('{"record": 1}\n')
    real = gemmapipe.evaluate.evaluate
    monkeypatch.setattr(gemmapipe.evaluate, "evaluate", interrupted)
    result = gemmapipe_run(command + [str(earlier)])
    assert result.exit_code == 130 and "interrupted; no report" in result.stderr and result.stdout == ""
    assert earlier.read_text() == '{"record": 1}\n'  # not truncated by a run that did not finish
    fresh = tmp_path / "fresh.jsonl"
    assert gemmapipe_run(command + [str(fresh)]).exit_code == 130 and not fresh.exists()  # nothing left behind
    monkeypatch.setattr(gemmapipe.evaluate, "evaluate", real)  # not undo(): that would drop the tiny model's env too
    assert gemmapipe_run(command + [str(earlier)]).exit_code == 0
    assert len(earlier.read_text().splitlines()) == 4  # a finished run replaces it


def test_answers_that_break_the_schema_are_refused_before_training(gemmapipe_run, tmp_path):
    schema, data, dev = tmp_path / "label.json", tmp_path / "data.jsonl", tmp_path / "dev.jsonl"
    schema.write_text(json.dumps(SCHEMA))
    records = DATA[:6] + [("eggs for sale", {"label": "eggs"}), ("and more", {"label": "spam", "extra": 1})]
    data.write_text(labelled_jsonl(records))
    common = ["train", "--schema", str(schema), "--kind", "classify", "--out", str(tmp_path / "ad"), "--max-steps", "1"]
    result = gemmapipe_run(common + ["--data", str(data)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "2 of 8 training records have an expected answer that breaks the schema" in result.stderr
    assert "record 7: 'eggs' is not one of ['spam', 'ham']" in result.stderr and "fix or drop" in result.stderr
    assert not (tmp_path / "ad").exists()  # refused before anything was written
    data.write_text(labelled_jsonl(DATA[:6]))
    dev.write_text(json.dumps({"text": "x", "expected": {"label": "eggs"}}) + "\n")
    result = gemmapipe_run(common + ["--data", str(data), "--dev-data", str(dev)])
    assert result.exit_code == 2 and "1 of 1 dev records" in result.stderr


def test_a_dev_file_of_its_own(tiny_store, tmp_path, gemmapipe_run):
    dev = [("cheap pills offer 100", {"label": "spam"}), ("see you at lunch 100", {"label": "ham"}), ("cheap pills offer 101", {"label": "spam"})]
    config = TrainConfig(max_steps=4, batch_size=4, rank=4, alpha=8, dev_fraction=0.0, eval_every=2)
    metadata = train(TASK, DATA, tmp_path / "d", tiny_store, config, dev_data=dev)
    assert metadata["train_examples"] == len(DATA) and metadata["dev_examples"] == len(dev)  # all the data trains
    assert [check["step"] for check in metadata["metrics"]["dev_curve"]] == [2, 4] and metadata["dev_data_sha256"]
    with pytest.raises(GemmapipeError, match="dev fraction and a dev data file"):
        train(TASK, DATA, tmp_path / "e", tiny_store, TrainConfig(max_steps=1, rank=4, alpha=8, dev_fraction=0.25), dev_data=dev)
    schema, data, dev_file = tmp_path / "label.json", tmp_path / "data.jsonl", tmp_path / "dev.jsonl"
    schema.write_text(json.dumps(SCHEMA))
    data.write_text(labelled_jsonl(DATA))
    dev_file.write_text(labelled_jsonl(dev))
    common = ["train", "--schema", str(schema), "--kind", "classify", "--data", str(data), "--dev-data", str(dev_file), "--rank", "4"]
    result = gemmapipe_run(common + ["--out", str(tmp_path / "f"), "--max-steps", "2", "--eval-every", "1"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "f" / METADATA).read_text())
    assert written["dev_examples"] == 3 and written["train_examples"] == 24 and written["hyperparameters"]["dev_fraction"] == 0.0
    both = gemmapipe_run(common + ["--out", str(tmp_path / "g"), "--dev-fraction", "0.1"])
    assert both.exit_code == 2 and "give one of them" in both.stderr and "Traceback" not in both.output  # a usage error


def test_continuing_on_the_adapters_own_dev_records_gives_no_leak_notice(gemmapipe_tiny_model, gemmapipe_cache, tmp_path):
    from gemmapipe.models import BaseSource, ModelStore
    from gemmapipe.labelled import split_dev

    messages: list[str] = []
    store = ModelStore(gemmapipe_cache, BaseSource(gemmapipe_tiny_model), notify=messages.append)
    config = TrainConfig(max_steps=1, batch_size=8, rank=4, alpha=8, dev_fraction=0.25)
    first = train(TASK, DATA, tmp_path / "a", store, config)
    trained_on, held_out = split_dev(DATA, 0.25, 0)
    assert len(first["dev_record_sha256"]) == len(held_out) == 6
    more = trained_on + [(f"win a prize now {i}", {"label": "spam"}) for i in range(4)]
    continued = TrainConfig(max_steps=1, batch_size=8, rank=4, alpha=8, dev_fraction=0.0)
    messages.clear()
    train(TASK, more, tmp_path / "b", store, continued, init_adapter=tmp_path / "a", dev_data=held_out)
    assert not [m for m in messages if "overstates" in m]  # new data, but the dev records were held out of "a"
    train(TASK, more, tmp_path / "c", store, continued, init_adapter=tmp_path / "a", dev_data=held_out[:3] + trained_on[:3])
    assert [m for m in messages if "dev set may hold examples it has seen" in m]


@pytest.mark.parametrize(
    "requested, device, native, expected",
    [
        ("auto", "cpu", False, "float32"),  # bf16 products on such a CPU run through a reference kernel: 130x slower
        ("auto", "cpu", True, "bf16"),
        ("auto", "cuda", False, "bf16"),
        ("bf16", "cpu", False, "bf16"),  # asked for: slow, but given (with a notice)
        ("float32", "cuda", True, "float32"),
    ],
)
def test_training_precision_follows_the_hardware_unless_asked(monkeypatch, requested, device, native, expected):
    import torch

    from gemmapipe.training import training_precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert training_precision(requested, device) == expected


def test_a_run_records_its_precision_and_float32_changes_the_numbers(gemmapipe_tiny_model, gemmapipe_cache, tmp_path):
    from gemmapipe.models import BaseSource, ModelStore
    from gemmapipe.training import native_bf16

    messages: list[str] = []
    store = ModelStore(gemmapipe_cache, BaseSource(gemmapipe_tiny_model), notify=messages.append)
    runs = {}
    for precision in ("float32", "bf16", "auto"):
        config = TrainConfig(max_steps=2, batch_size=8, rank=4, alpha=8, dev_fraction=0.0, precision=precision)
        runs[precision] = train(TASK, DATA, tmp_path / precision, store, config)
        runs[precision]["history"] = json.loads((tmp_path / precision / "checkpoint" / "state.json").read_text())["state"]["history"]
    assert runs["float32"]["precision"] == "float32" and runs["bf16"]["precision"] == "bf16"
    assert runs["auto"]["precision"] == ("bf16" if native_bf16("cpu") else "float32")
    assert runs["float32"]["history"] != runs["bf16"]["history"]  # autocast really is off in float32
    assert runs["auto"]["history"] == runs[runs["auto"]["precision"]]["history"]
    assert any("no native bfloat16" in m for m in messages) is not native_bf16("cpu")


def test_threads_option_sets_torch_threads_for_the_run_only(gemmapipe_run, tmp_path, monkeypatch):
    import torch

    import gemmapipe.training as training

    seen, backward = [], training._backward
    monkeypatch.setattr(training, "_backward", lambda *args: (seen.append(torch.get_num_threads()), backward(*args))[1])
    schema, data = tmp_path / "label.json", tmp_path / "data.jsonl"
    schema.write_text(json.dumps(SCHEMA))
    data.write_text(labelled_jsonl(DATA))
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    result = gemmapipe_run(["train", "--schema", str(schema), "--kind", "classify", "--data", str(data), "--out", str(tmp_path / "ad"),
                            "--max-steps", "2", "--rank", "4", "--dev-fraction", "0", "--threads", str(wanted)])
    assert result.exit_code == 0, result.output
    assert seen == [wanted, wanted]  # every step ran on the threads asked for
    assert torch.get_num_threads() == before  # and the process got its own setting back
    refused = gemmapipe_run(["train", "--schema", str(schema), "--kind", "classify", "--data", str(data), "--out", str(tmp_path / "b"),
                             "--threads", "0"])
    assert refused.exit_code == 2 and "--threads" in refused.stderr


def _random_lora(tiny_store, seed: int = 3):  # type: ignore[no-untyped-def]
    """The tiny base model with a random LoRA (its B not zero, so the adapter changes the output), float32."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_store.base_dir()), dtype=torch.float32)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(TrainConfig().target_modules), init_lora_weights=False))


def test_the_shared_prompt_start_runs_once_with_the_same_loss_and_gradients(tiny_store, monkeypatch):
    """The instruction every prompt starts with runs as a batch of one whose keys and values serve every row; the
    answer scores run in chunks. Loss and LoRA gradients are those of running every row whole."""
    import torch

    import gemmapipe.training as training
    from gemmapipe.tokenizer import GemmaTokenizer

    task = Task("tiny-long", "classify", SCHEMA, "Classify each message as spam or ham, reading every word of it carefully first.")
    tokenizer = GemmaTokenizer(tiny_store.base_dir() / "tokenizer.json")
    batch = training.build_examples(task, tokenizer, [(t + " x" * (i % 4), e) for i, (t, e) in enumerate(DATA[:6])], 1024)
    shared = training.shared_prefix_length(batch)
    assert shared >= training.MIN_SHARED_PREFIX and all(shared < len(e.prompt) for e in batch)
    model = _random_lora(tiny_store)

    def loss_and_grads():  # type: ignore[no-untyped-def]
        loss = training._summed_loss(model, batch, 0, "cpu")
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]).clone()
        model.zero_grad()
        return float(loss.detach()), grads

    def close(a, b) -> bool:  # type: ignore[no-untyped-def]
        return float((a - b).norm() / b.norm()) < 1e-5

    shared_loss, shared_grads = loss_and_grads()
    monkeypatch.setattr(training, "MIN_SHARED_PREFIX", 10**9)  # every row runs its whole prompt
    monkeypatch.setattr(training, "LOSS_CHUNK", 10**9)  # all answer scores at once
    whole_loss, whole_grads = loss_and_grads()
    assert shared_loss == pytest.approx(whole_loss, rel=1e-5)
    assert close(shared_grads, whole_grads) and whole_grads.abs().sum() > 0
    monkeypatch.setattr(training, "LOSS_CHUNK", 3)  # chunks of 3 answer tokens, recomputed in the backward pass
    chunked_loss, chunked_grads = loss_and_grads()
    assert chunked_loss == pytest.approx(whole_loss, rel=1e-5) and close(chunked_grads, whole_grads)


def test_a_prompt_start_is_shared_only_when_long_enough():
    from gemmapipe.training import MIN_SHARED_PREFIX, Example, shared_prefix_length

    start = list(range(100, 100 + MIN_SHARED_PREFIX))
    batch = [Example(start + [1, 2], [9]), Example(start + [1, 3, 4], [9]), Example(start + [5], [9])]
    assert shared_prefix_length(batch) == MIN_SHARED_PREFIX
    assert shared_prefix_length(batch[:2]) == MIN_SHARED_PREFIX + 1  # [1] too, one token of each prompt left
    assert shared_prefix_length([Example(start[:-1] + [1], [9]), Example(start[:-1] + [2], [9])]) == 0  # too short
    assert shared_prefix_length(batch[:1]) == 0  # nothing to share


def test_torch_decoding_answers_as_the_engine_does(tiny_store, tiny_engine):
    """The dev answers that pick a checkpoint: schema-valid from a random model, and the engine's answers."""
    from gemmapipe.tokenizer import GemmaTokenizer
    from gemmapipe.torch_decoding import decode
    from transformers import AutoModelForCausalLM

    import torch

    model = AutoModelForCausalLM.from_pretrained(str(tiny_store.base_dir()), dtype=torch.float32)
    tokenizer = GemmaTokenizer(tiny_store.base_dir() / "tokenizer.json")
    schema = {"type": "object", "properties": {"name": {"type": ["string", "null"], "maxLength": 12}, "n": {"type": "integer"},
                                               "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
              "required": ["name", "n", "tags"], "additionalProperties": False}
    texts = [t for t, _ in DATA[:6]]
    for task in (TASK, Task("tiny-extract", "extract", schema, "Extract.")):
        answers = decode(model, tokenizer, task, texts, max_new_tokens=40, batch_size=4)
        valid = [a for a in answers if a.ok]
        assert len(answers) == len(texts) and all(task.compiled.errors(a.value) == [] for a in valid)
        truncated = [a for a in answers if a.error_type == "output_truncated"]
        assert len(valid) + len(truncated) == len(texts)  # a random model may ramble up to the limit, nothing else
        engine = tiny_engine.generate([task.request(t) for t in texts], task.compiled, max_new_tokens=40)
        same = sum(a.text == b.text for a, b in zip(answers, engine))
        assert same >= len(texts) - 1, [(a.text, b.text) for a, b in zip(answers, engine)]


def test_training_keeps_the_checkpoint_with_the_best_dev_metric_and_stops_when_it_stalls(tiny_store, tmp_path):
    config = TrainConfig(max_steps=10, batch_size=4, rank=4, alpha=8, dev_fraction=0.25, eval_every=1, patience=2, learning_rate=0.0)
    checks = []
    metadata = train(TASK, DATA, tmp_path / "s", tiny_store, config, on_dev=checks.append)
    assert metadata["steps"] == 3 and metadata["complete"]  # nothing learns at rate 0: best at step 1, then 2 checks without gain
    metrics = metadata["metrics"]
    assert metrics["dev_metric"] == "accuracy" and metrics["best_step"] == 1 and metrics["dev_decoded_records"] == 6
    assert [c["step"] for c in metrics["dev_curve"]] == [1, 2, 3] == [c["step"] for c in checks]
    assert all(0.0 <= c["value"] <= 1.0 and c["loss"] > 0 for c in checks)
    assert "at step 1" in metadata["advice"][0] and "stopped improving" in metadata["advice"][1]


@pytest.mark.parametrize("rising, expected_steps", [(True, 80), (False, 40)])
def test_a_default_length_run_goes_on_while_its_dev_metric_rises(tiny_store, tmp_path, monkeypatch, rising, expected_steps):
    from gemmapipe import training

    # 18 training records in batches of 4: 5 steps an epoch, so the plan is 8 epochs (40 steps), each extension 20
    def fake_check(model, task, tokenizer, dev_set, *args):  # type: ignore[no-untyped-def]
        step = len(totals)
        return {"loss": 0.5, "metric": "accuracy", "value": 0.3 + step * 0.002 if rising else 0.5, "exact": 0.5, "errors": 0}

    monkeypatch.setattr(training, "_dev_check", fake_check)
    totals: list[int] = []
    config = TrainConfig(batch_size=4, rank=4, alpha=8, dev_fraction=0.25, eval_every=10)
    metadata = train(TASK, DATA, tmp_path / "x", tiny_store, config, on_step=lambda s, t, l: totals.append(t))
    assert metadata["steps"] == expected_steps and metadata["planned_steps"] == 40 and metadata["complete"]
    checked = [c["step"] for c in metadata["metrics"]["dev_curve"]]
    if rising:
        assert metadata["extension_steps"] == [20, 20] and totals[39] == 40 and totals[40] == 60 and totals[-1] == 80
        assert checked == [10, 20, 30, 40, 50, 60, 70, 80]
        assert "went on for 40 more steps (2 extensions" in metadata["advice"][1] and "undertrained" in metadata["advice"][2]
    else:
        assert metadata["extension_steps"] == [] and set(totals) == {40} and checked == [10, 20, 30, 40]
    given = train(TASK, DATA, tmp_path / "g", tiny_store, TrainConfig(epochs=2, batch_size=4, rank=4, alpha=8, dev_fraction=0.25, eval_every=5))
    assert given["steps"] == 10 and given["extension_steps"] == []  # a length the user gave is kept


def test_an_extension_runs_to_its_end_though_its_warm_restart_dips_the_dev_metric(tiny_store, tmp_path, monkeypatch):
    from gemmapipe import training

    # the plan is 40 steps (as above), the extension 20 more; the dev metric rises to step 40, then dips for good
    def fake_check(model, task, tokenizer, dev_set, *args):  # type: ignore[no-untyped-def]
        step = len(totals)
        return {"loss": 0.5, "metric": "accuracy", "value": 0.3 + step * 0.002 if step <= 40 else 0.2, "exact": 0.5, "errors": 0}

    monkeypatch.setattr(training, "_dev_check", fake_check)
    totals: list[int] = []
    config = TrainConfig(batch_size=4, rank=4, alpha=8, dev_fraction=0.25, eval_every=6, patience=2)
    metadata = train(TASK, DATA, tmp_path / "x", tiny_store, config, on_step=lambda s, t, l: totals.append(t))
    # patience 2 would have stopped it at step 52; the extension's checks count from its own first step
    assert metadata["steps"] == 60 and metadata["extension_steps"] == [20] and metadata["complete"]
    assert [c["step"] for c in metadata["metrics"]["dev_curve"]] == [6, 12, 18, 24, 30, 36, 40, 46, 52, 58, 60]
    assert metadata["metrics"]["best_step"] == 40
    assert "the last extension (steps 40-60) did not beat it" in metadata["advice"][2]
    assert not any("so training stopped" in line for line in metadata["advice"])


def test_a_checkpoint_of_other_settings_is_discarded_not_resumed(tiny_store, tmp_path):
    config = TrainConfig(max_steps=4, batch_size=4, rank=4, alpha=8, dev_fraction=0.25, eval_every=2, checkpoint_every=2)
    train(TASK, DATA, tmp_path / "r", tiny_store, config)
    (tmp_path / "r" / "best" / "stale-marker").write_text("from the first run")
    steps = []
    other = TrainConfig(max_steps=4, batch_size=4, rank=4, alpha=8, dev_fraction=0.25, eval_every=2, checkpoint_every=2, learning_rate=1e-3)
    metadata = train(TASK, DATA, tmp_path / "r", tiny_store, other, on_step=lambda s, t, l: steps.append(s))
    assert steps == [1, 2, 3, 4] and metadata["steps"] == 4  # from the start, not from the other run's step 4
    assert not (tmp_path / "r" / "best" / "stale-marker").exists()  # nothing of the other run's best is kept
    assert len(json.loads((tmp_path / "r" / "checkpoint" / "state.json").read_text())["state"]["history"]) == 4
