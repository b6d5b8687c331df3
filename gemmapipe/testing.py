"""Test helpers: a tiny, randomly initialised Gemma 3 that runs through the real conversion and engine path, and a
:class:`FakeEngine` for tests of what surrounds an engine.

Plugin authors get these through the ``gemmapipe`` pytest plugin (fixtures ``gemmapipe_tiny_model`` and
``gemmapipe_runner``); see :mod:`gemmapipe.pytest_plugin`. Needs torch and transformers (test extras).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .grammar import canonical_json
from .prompts import Prompt, Request

if TYPE_CHECKING:
    from .engine import Generation
    from .grammar import CompiledSchema

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

#: Text the tiny tokenizer is trained on: enough JSON, digits, dates and words for short merges.
CORPUS = [
    '{"company":"ACME SDN BHD","date":"25/12/2018","address":"NO.53 JALAN SAGU 18, JOHOR","total":"9.00"}',
    '{"intent":"card_arrival"} {"level":"error","message":"disk full","count":3,"ok":true,"tags":[]}',
    "Invoice INV-2031 from Acme Corp, total $1,250.00 due 2024-05-01. user model text",
    "Extract the fields as JSON. Classify the text. Rewrite the text without personal data.",
    "the quick brown fox jumps over the lazy dog 0123456789 null true false",
    "TOTAL: 9.00 CASH 10.00 CHANGE 1.00 THANK YOU PLEASE COME AGAIN",
    "GET /index.html HTTP/1.1 200 512 Mozilla sshd[1234]: Failed password for root from 10.0.0.1",
]


def build_tiny_tokenizer(out_dir: Path, vocab_size: int = 420) -> Path:
    """Train a small byte-level BPE with Gemma's special tokens at ids 0-5; write ``tokenizer.json`` and config."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(str(out_dir))
    return out_dir / "tokenizer.json"


def build_tiny_gemma(out_dir: Path, seed: int = 0, sliding_window: int = 512) -> Path:
    """A 2-layer random Gemma 3 (transformers folder with tokenizer) in ``out_dir``.

    ``sliding_window`` defaults to the real model's 512, so tests see gemmapipe raise it during preparation.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer_path = build_tiny_tokenizer(out_dir)
    vocab_size = Tokenizer.from_file(str(tokenizer_path)).get_vocab_size()
    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,  # CTranslate2 always scales by 1/sqrt(head_dim)
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=sliding_window,
        max_position_embeddings=8192,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # default init gives logits within about ±1: too flat for a training test to learn
        model.model.embed_tokens.weight.mul_(20.0)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


class FakeEngine:
    """An engine without a model, for fast tests of what surrounds one (the pipe, records, the CLI, a plugin's
    commands): it meets :class:`gemmapipe.engines.TextEngine` and answers each request with ``answer(request)``.

    An answer is held to the schema as a real engine's is (a value that breaks it becomes a ``schema_violation``
    generation), and a prompt longer than ``max_input_tokens`` is refused as ``input_too_long``, counting one token
    per character (a real tokenizer gives fewer). ``answer`` may raise, as a real engine may on a bad record. The
    engine's own decoding is tested on the tiny random model (:func:`build_tiny_gemma`), not here.

        engine = FakeEngine(lambda request: {"label": "spam"})
        monkeypatch.setattr("gemmapipe.engines.load_engine", lambda *a, **k: engine)  # the CLI uses it now
    """

    def __init__(self, answer: Callable[[Request], Any]) -> None:
        self.answer = answer
        #: every request answered so far, in order (what a test can look at)
        self.requests: list[Request] = []
        self.closed = False

    def generate(
        self,
        requests: Sequence[Request | Prompt],
        schema: CompiledSchema,
        max_new_tokens: int = 256,
        batch_size: int = 16,
        max_input_tokens: int = 4096,
        cancel: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        from .decoding import Cancelled
        from .engine import Generation, check_requests, schema_checked

        results = []
        for request in check_requests(requests, schema):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            self.requests.append(request)
            length = sum(len(p) if isinstance(p, str) else 1 for p in request.prompt)
            if length > max_input_tokens:
                message = f"the input is {length} tokens long; the limit is {max_input_tokens}"
                results.append(Generation(None, "", message, "input_too_long", prompt_tokens=length))
                continue
            value = self.answer(request)
            text = canonical_json(value, schema.schema)
            counts = {"prompt_tokens": length, "output_tokens": len(text), "batch_size": len(requests)}
            results.append(schema_checked(value, text, schema, counts))
        if on_progress is not None:
            on_progress(len(results))
        return results

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
