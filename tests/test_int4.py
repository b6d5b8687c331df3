"""--compute-type int4 (issue 29): llama.cpp behind the engines' common generate, under the same grammar."""

from __future__ import annotations

import json
import sys

import pytest
from test_engine import _long_ids  # the receipt-like prompt the int8 parity tests use

pytest.importorskip("llama_cpp")

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
    assert prepared.exit_code == 0 and "/gguf/" in prepared.stdout


def test_without_the_extra_int4_names_it(gemmapipe_run, schemas, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if it were not installed
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


# -- the engine itself, on the tiny model -----------------------------------------------------------------------------

def _float32_engine(tiny_store, tmp_path, lora=None):
    """The tiny base written as a float32 GGUF (no 4-bit rounding), so llama.cpp can be held to transformers."""
    import shutil

    from gemmapipe.gguf_export import transformers_to_gguf
    from gemmapipe.llama_engine import LlamaEngine
    from gemmapipe.models import GGUF_MODEL_FILE

    base = tiny_store.base_dir()
    folder = tmp_path / ("f32-adapted" if lora else "f32")
    folder.mkdir()
    transformers_to_gguf(base, folder / GGUF_MODEL_FILE, quantized=False)
    shutil.copy(base / "tokenizer.json", folder / "tokenizer.json")
    return LlamaEngine(folder, lora, threads=1)


def _torch_next_scores(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].numpy()


def test_the_gguf_conversion_matches_transformers_past_512_tokens(tiny_store, tmp_path):
    """Names, the norms' +1, both rotary bases, the sliding-window pattern and the raised window (600 tokens: the
    original 512-token window differs by 0.2 at 600 tokens). llama.cpp keeps the attention cache in float16: the
    scores agree within ~4e-3 (of scores up to ~25), hence 1e-2."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_store.base_dir()), dtype=torch.float32).eval()
    with _float32_engine(tiny_store, tmp_path) as engine:
        for n in (40, 600):
            ids = _long_ids(engine, n)
            np.testing.assert_allclose(engine.scores(ids), _torch_next_scores(model, ids), atol=1e-2, rtol=0)


def test_an_adapter_applied_at_run_time_matches_peft(tiny_store, tiny_adapter, tmp_path):
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_store.base_dir()), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(tiny_adapter)).eval()
    with _float32_engine(tiny_store, tmp_path) as plain, _float32_engine(tiny_store, tmp_path, tiny_store.gguf_lora(tiny_adapter)) as adapted:
        ids = _long_ids(plain, 100)
        got = adapted.scores(ids)
        assert np.abs(got - plain.scores(ids)).max() > 1e-2  # the adapter does something
        np.testing.assert_allclose(got, _torch_next_scores(model, ids), atol=1e-2, rtol=0)


def test_the_4bit_model_stays_close_to_float32(tiny_int4_engine, tiny_store):
    """The prepared int4 base is a 4-bit model (Q4_0 matrices), near the float32 one, not equal to it."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_store.base_dir()), dtype=torch.float32).eval()
    ids = _long_ids(tiny_int4_engine, 60)
    got, want = tiny_int4_engine.scores(ids), _torch_next_scores(model, ids)
    difference = np.abs(got - want).max()
    assert 0 < difference < 0.1 * np.abs(want).max()
    assert np.argsort(got)[-5:].tolist()[-1] in np.argsort(want)[-5:].tolist()


def test_a_kept_cache_scores_as_a_fresh_one(tiny_store, monkeypatch):
    """The next record reuses the attention cache of the prompt start it shares with the last one: the scores it is
    decoded with must be those of an engine that never saw the last record (a record, then one sharing most of its
    prompt, then the first again)."""
    import numpy as np

    from gemmapipe import llama_engine
    from gemmapipe.grammar import compile_schema
    from gemmapipe.prompts import Request, chat_prompt

    seen: list[np.ndarray] = []
    real = llama_engine.take_best_allowed
    monkeypatch.setattr(llama_engine, "take_best_allowed", lambda state, logits, *a: seen.append(logits.copy()) or real(state, logits, *a))
    schema = compile_schema(COPY)
    texts = ["Invoice INV-2031 from Acme Corp 12", "Invoice INV-2031 from Acme 7", "Invoice INV-2031 from Acme Corp 12"]
    requests = [Request(chat_prompt("Extract.", t), t) for t in texts]

    def scores_of(chosen):
        with llama_engine.LlamaEngine(tiny_store.gguf_base_dir(), threads=1) as engine:
            per_record = []
            for request in chosen:
                seen.clear()
                engine.generate([request], schema, max_new_tokens=40)
                per_record.append(list(seen))
            return per_record

    in_a_row = scores_of(requests)
    for index, request in enumerate(requests):
        alone = scores_of([request])[0]
        assert len(alone) == len(in_a_row[index]) > 0
        for got, want in zip(in_a_row[index], alone):
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_an_adapter_that_does_not_fit_is_a_setup_error(tiny_store, tmp_path):
    """A LoRA whose shapes the model refuses: a SetupError that names the adapter, and nothing left loaded."""
    import gguf
    import numpy as np

    from gemmapipe.errors import SetupError
    from gemmapipe.llama_engine import LlamaEngine

    path = tmp_path / "lora.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((4, 96), dtype=np.float32))  # the model's rows are 64 wide
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((64, 4), dtype=np.float32))
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    with pytest.raises(SetupError, match="does not fit") as info:
        LlamaEngine(tiny_store.gguf_base_dir(), path, threads=1)
    assert str(path) in info.value.message and "trained on this base model" in info.value.hint
