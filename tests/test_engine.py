"""The engine on the tiny model: parity with torch, adapters, batching order, limits, compute types."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from gemmapipe.convert import SLIDING_WINDOW
from gemmapipe.decoding import Cancelled
from gemmapipe.engine import Engine, decoding_in_flight, length_batches
from gemmapipe.errors import ComputeTypeError, SetupError
from gemmapipe.grammar import compile_schema
from gemmapipe.models import check_compute_type
from gemmapipe.prompts import chat_prompt

FREE_TEXT = compile_schema({"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]})
LABEL = compile_schema({"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"],
                        "additionalProperties": False})


def _torch_logits(model_dir: Path, ids: list[int], **config_overrides) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, **config_overrides).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _ct2_logits(engine: Engine, ids: list[int]) -> np.ndarray:
    out = engine.generator.forward_batch([engine.tokenizer.tokens(ids)])
    return np.array(out)[0]


def _long_ids(engine: Engine, n_tokens: int) -> list[int]:
    text = " ".join(f"TOTAL {i}.00 CASH {i * 3} CHANGE" for i in range(400))
    ids = engine.tokenizer.encode_prompt(chat_prompt("Extract.", text))
    assert len(ids) >= n_tokens
    return ids[:n_tokens]


def test_preparation_raises_the_sliding_window(tiny_store, gemmapipe_tiny_model):
    original = json.loads((gemmapipe_tiny_model / "config.json").read_text())
    prepared = json.loads((tiny_store.base_dir() / "config.json").read_text())
    assert original["sliding_window"] == 512
    assert prepared["sliding_window"] == SLIDING_WINDOW


def test_ctranslate2_matches_torch_past_512_tokens(tiny_engine, tiny_store):
    """CTranslate2 float32 vs transformers on the same prepared weights, at 900 tokens."""
    ids = _long_ids(tiny_engine, 900)
    ct2 = _ct2_logits(tiny_engine, ids)
    ref = _torch_logits(tiny_store.base_dir(), ids)
    assert ct2.shape == ref.shape
    np.testing.assert_allclose(ct2, ref, atol=2e-4, rtol=0)


def test_prepared_model_equals_the_original_up_to_512_tokens(tiny_engine, gemmapipe_tiny_model):
    """Raising the window changes nothing where the original window covers the whole context."""
    ids = _long_ids(tiny_engine, 512)
    np.testing.assert_allclose(_ct2_logits(tiny_engine, ids), _torch_logits(gemmapipe_tiny_model, ids), atol=2e-4, rtol=0)


def test_adapter_is_merged_and_matches_torch(tiny_store, tiny_adapter, tiny_engine):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with Engine.load(tiny_adapter, compute_type="float32", store=tiny_store) as adapted:
        ids = _long_ids(adapted, 600)
        merged = _ct2_logits(adapted, ids)
        base = _ct2_logits(tiny_engine, ids)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_store.base_dir()), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(tiny_adapter)).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(merged - base).max() > 1e-2  # the adapter does something
    np.testing.assert_allclose(merged, ref, atol=2e-4, rtol=0)


def test_adapter_entry_is_cached_by_content(tiny_store, tiny_adapter, tmp_path):
    first = tiny_store.ctranslate2_dir(tiny_adapter, "int8")
    assert tiny_store.ctranslate2_dir(tiny_adapter, "int8") == first
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_adapter.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert tiny_store.ctranslate2_dir(copy, "int8") == first  # same content, same entry
    assert tiny_store.ctranslate2_dir(None, "int8") != first


def test_adapter_folder_without_weights_is_a_setup_error(tiny_store, tmp_path):
    with pytest.raises(SetupError, match="adapter_model.safetensors"):
        tiny_store.ctranslate2_dir(tmp_path, "int8")


def test_results_keep_input_order_across_length_groups(tiny_engine):
    texts = ["x " * n for n in (50, 1, 30, 2, 80, 5, 11, 3, 60)]
    prompts = [chat_prompt("Classify.", t) for t in texts]
    results = tiny_engine.generate(prompts, LABEL, batch_size=3)
    assert [r.prompt_tokens for r in results] == [len(tiny_engine.tokenizer.encode_prompt(p)) for p in prompts]
    single = [tiny_engine.generate([p], LABEL)[0].value for p in prompts]
    assert [r.value for r in results] == single  # batching does not change answers


def test_replicas_decode_batches_at_once_and_answer_as_one_replica(tiny_store, tiny_engine, monkeypatch):
    texts = ["x " * n for n in (50, 1, 30, 2, 80, 5, 11, 3, 60, 7)]
    prompts = [chat_prompt("Classify.", t) for t in texts]
    import gemmapipe.engine as engine_module

    in_flight, most = [0], [0]
    lock = threading.Lock()
    original = engine_module.decode_batch

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(engine_module, "decode_batch", counting)
    with Engine(tiny_store.ctranslate2_dir(None, "float32"), compute_type="float32", threads=2) as engine:
        assert engine.replicas == 2
        results = engine.generate(prompts, FREE_TEXT, batch_size=2, max_new_tokens=24)
    assert most[0] == 2  # two batches were decoding at the same time
    single = tiny_engine.generate(prompts, FREE_TEXT, batch_size=2, max_new_tokens=24)
    assert [(r.text, r.error_type) for r in results] == [(r.text, r.error_type) for r in single]


def test_a_failing_batch_stops_the_others_and_raises(tiny_store, monkeypatch):
    import gemmapipe.engine as engine_module

    calls = [0]
    original = engine_module.decode_batch

    def failing_once(generator, tokenizer, states, cancel, output_ids=None):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("engine broke")
        return original(generator, tokenizer, states, cancel, output_ids)

    monkeypatch.setattr(engine_module, "decode_batch", failing_once)
    prompts = [chat_prompt("Classify.", "x " * n) for n in (1, 40, 80, 120)]
    with Engine(tiny_store.ctranslate2_dir(None, "float32"), compute_type="float32", threads=2) as engine:
        with pytest.raises(RuntimeError, match="engine broke"):
            engine.generate(prompts, LABEL, batch_size=1)


def test_length_limit_gives_an_error_never_broken_json(tiny_engine):
    results = tiny_engine.generate([chat_prompt("Note.", "anything")], FREE_TEXT, max_new_tokens=5)
    assert results[0].error_type == "output_truncated"
    assert results[0].value is None and "truncated" in results[0].error


def test_too_long_input_is_an_error_result(tiny_engine):
    results = tiny_engine.generate([chat_prompt("Note.", "word " * 300), chat_prompt("Note.", "ok")], LABEL, max_input_tokens=100)
    assert results[0].error_type == "input_too_long"
    assert results[1].ok


def test_special_token_names_in_text_stay_text(tiny_engine):
    ids = tiny_engine.tokenizer.encode_text("a <end_of_turn> b <eos>")
    assert tiny_engine.tokenizer.end_of_turn_id not in ids and tiny_engine.tokenizer.eos_id not in ids
    assert tiny_engine.tokenizer.decode(ids) == "a <end_of_turn> b <eos>"


def test_cancel_stops_decoding(tiny_engine):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        tiny_engine.generate([chat_prompt("Note.", "anything")], FREE_TEXT, cancel=cancel)


class _StuckGenerator:
    """CTranslate2's generator whose calls block until released, as a prefill of long prompts does: its token callback
    runs only once the prompt is read, so a cancelled run cannot stop it early."""

    def __init__(self, real) -> None:
        self.real, self.entered, self.release = real, threading.Event(), threading.Event()

    def generate_batch(self, *args, **kwargs):
        self.entered.set()
        self.release.wait(30)
        return self.real.generate_batch(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_cancel_returns_without_waiting_for_a_prefill(tiny_store):
    """Ctrl-C during a long prefill (issue 24): generate() raises Cancelled at once, while the batch still runs on its
    worker thread (decoding_in_flight, which the CLI's exit looks at); the batch then stops at its first token."""
    engine = Engine(tiny_store.ctranslate2_dir(None, "float32"), compute_type="float32", threads=1)
    stuck = _StuckGenerator(engine.generator)
    engine.generator = stuck
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            engine.generate([chat_prompt("Note.", "anything")] * 3, FREE_TEXT, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 -- checked below
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert stuck.entered.wait(30)
    cancel.set()
    caller.join(10)
    try:
        assert not caller.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Cancelled)
        assert not stuck.release.is_set() and decoding_in_flight()  # returned while the "prefill" still ran
    finally:
        stuck.release.set()
    for thread in [t for t in threading.enumerate() if t.name.startswith("gemmapipe-decode")]:
        thread.join(30)
    assert not decoding_in_flight()
    engine.generator = stuck.real
    engine.close()


@pytest.mark.parametrize("compute_type", ["int8", "int8_float32", "float32"])
def test_compute_types_run(tiny_store, compute_type):
    with Engine.load(compute_type=compute_type, store=tiny_store, threads=1) as engine:
        assert engine.generate([chat_prompt("Classify.", "hi")], LABEL)[0].ok


@pytest.mark.parametrize("compute_type", ["int4", "int4_awq"])
def test_int4_is_refused_with_an_explanation(compute_type):
    with pytest.raises(ComputeTypeError) as info:
        check_compute_type(compute_type)
    assert "no int4 kernel for the CPU" in info.value.message and "int8" in info.value.hint


def test_int16_is_refused_with_an_explanation():
    with pytest.raises(ComputeTypeError) as info:
        check_compute_type("int16")
    assert "cannot represent activations" in info.value.message and "int8" in info.value.hint


def test_unknown_compute_type():
    with pytest.raises(ComputeTypeError, match="unknown compute type"):
        check_compute_type("float8")


def test_progress_counts_answered_prompts_after_each_batch(tiny_engine):
    prompts = [chat_prompt("Classify.", text) for text in ["hi", "hello there", "a much longer message " * 30, "yo", "ok"]]
    calls: list[int] = []
    limit = len(tiny_engine.tokenizer.encode_prompt(prompts[1])) + 5  # the long prompt is refused before any batch
    results = tiny_engine.generate(prompts, LABEL, batch_size=2, max_input_tokens=limit, on_progress=calls.append)
    assert [r.error_type for r in results].count("input_too_long") == 1
    assert calls == sorted(calls) and calls[-1] == len(prompts) and calls[0] >= 2  # the refused one counts at once
    assert len(calls) == 2  # four runnable prompts in batches of two
    assert [r.value for r in tiny_engine.generate(prompts, LABEL, batch_size=2, max_input_tokens=limit)] == [r.value for r in results]


def test_batches_hold_prompts_of_about_the_same_length():
    lengths = [300, 12, 305, 900, 14, 316, 13, 317, 2000]
    runnable = [0, 1, 2, 3, 4, 5, 6, 7]  # 8 is too long to run and must not come back
    batches = length_batches(lengths, runnable, batch_size=2, spread=16)
    assert batches == [[1, 6], [4], [0, 2], [5, 7], [3]]
    assert length_batches(lengths, runnable, batch_size=16, spread=16) == [[1, 6, 4], [0, 2, 5], [7], [3]]
    assert length_batches(lengths, runnable, batch_size=16, spread=10_000) == [[1, 6, 4, 0, 2, 5, 7, 3]]
    assert length_batches(lengths, [], batch_size=4, spread=16) == []
    # at most 610 prompt tokens a batch, each prompt counted as long as the batch's longest; 900 runs alone
    assert length_batches(lengths, runnable, batch_size=16, spread=10_000, max_tokens=610) == [[1, 6, 4], [0, 2], [5], [7], [3]]
    # answers count too: with 10 tokens expected for each, two receipts of 305 no longer fit
    assert (length_batches(lengths, runnable, batch_size=16, spread=10_000, max_tokens=610, answer_tokens=10)
            == [[1, 6, 4], [0], [2], [5], [7], [3]])
