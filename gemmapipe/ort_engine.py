"""The int4 engine: ONNX Runtime GenAI with 4-bit weights (``MatMulNBits``) on the CPU, behind the same ``generate``
as the CTranslate2 engine, so the pipe, ``eval`` and plugins do not know which one runs.

Decoding is gemmapipe's own, token by token: after each step the model's scores for the next token come back to
Python (``Generator.get_logits``), the record's llguidance matcher masks every token the grammar does not allow, the
best allowed one is taken (greedy) and fed back (``append_tokens``); tokens the grammar forces are fed without a
choice. So the answers follow exactly the grammar the int8 engine uses (``x-copy-from-input`` included), are
validated the same way (:func:`gemmapipe.engine.finish_generation`) and carry the same confidences. Records decode
one at a time: a 4-bit model is for single streams (a laptop on battery, a small VM, many parallel cron jobs), and a
record's first answer comes without waiting for a batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from llguidance import LLMatcher
from llguidance.numpy import allocate_token_bitmask

from .decoding import Cancelled, DecodeState, take_best_allowed
from .engine import (
    DEFAULT_MAX_INPUT_TOKENS,
    DEFAULT_MAX_NEW_TOKENS,
    Generation,
    check_requests,
    encode_within_limit,
    finish_generation,
)
from .errors import SetupError
from .grammar import CompiledSchema
from .models import BaseSource, ModelStore, require_int4
from .prompts import Prompt, Request
from .tokenizer import GemmaTokenizer

#: ONNX Runtime's sliding-window cache must hold a whole window (Gemma 3's is 512 tokens)
MIN_CACHE_TOKENS = 512 + 8


class OrtEngine:
    """A loaded int4 model. Use :meth:`load`; ``generate`` as :meth:`gemmapipe.engine.Engine.generate`."""

    compute_type = "int4"

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        require_int4()
        import onnxruntime_genai as og

        self.model_dir = model_dir
        self.threads = threads or os.cpu_count() or 1
        self.replicas = 1
        config = og.Config(str(model_dir))
        config.overlay(f'{{"model": {{"decoder": {{"session_options": {{"intra_op_num_threads": {self.threads}}}}}}}}}')
        try:
            self.model = og.Model(config)
        except Exception as exc:  # noqa: BLE001 -- ONNX Runtime raises plain RuntimeErrors
            raise SetupError(
                f"cannot load the int4 model in {model_dir}: {exc}",
                "delete that cache folder and run `gemmapipe prepare --compute-type int4` again",
            ) from exc
        self._og = og
        self.tokenizer = GemmaTokenizer(model_dir / "tokenizer.json")
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        adapter: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        store: ModelStore | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        base: BaseSource | None = None,
    ) -> OrtEngine:
        """Prepare (first use only) and load the int4 model of the base, merged with ``adapter`` if one is given."""
        store = store or ModelStore(cache_dir, base)
        return cls(store.onnx_int4_dir(Path(adapter) if adapter else None), threads)

    def generate(
        self,
        requests: Sequence[Request | Prompt],
        schema: CompiledSchema,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 1,
        max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
        cancel: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        """Answer every request under ``schema`` (as :meth:`gemmapipe.engine.Engine.generate`), in order (``batch_size`` is accepted for the engines' common
        signature; records decode one at a time). Raises :class:`gemmapipe.decoding.Cancelled` when ``cancel`` is set."""
        requests = check_requests(requests, schema)
        guidance = self.tokenizer.guidance
        results = []
        for request in requests:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            ids, refused = encode_within_limit(self.tokenizer, request.prompt, max_input_tokens)
            if refused is not None:
                results.append(refused)
                continue
            matcher = LLMatcher(guidance, schema.grammar_for(request.source), log_level=0)
            state = DecodeState(ids, matcher, max_new_tokens, self.tokenizer.stop_ids)
            with self._lock:
                self._decode(state, cancel)
            results.append(finish_generation(self.tokenizer, state, schema, 1))
            if on_progress is not None:
                on_progress(len(results))
        return results

    def _decode(self, state: DecodeState, cancel: threading.Event | None) -> None:
        og = self._og
        params = og.GeneratorParams(self.model)
        params.set_search_options(
            max_length=max(len(state.prompt_ids) + state.limit + 2, MIN_CACHE_TOKENS), do_sample=False
        )
        generator = og.Generator(self.model, params)
        generator.append_tokens(np.array(state.prompt_ids, dtype=np.int32))
        vocab = self.tokenizer.guidance.vocab_size
        mask = allocate_token_bitmask(1, vocab)
        while not state.done:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            forced = state.matcher.compute_ff_tokens()
            if forced:
                taken = []
                for token in forced:
                    if state.done or not state.accept(token):
                        break
                    taken.append(token)
                if state.done:
                    break
                if taken:
                    generator.append_tokens(np.array(taken, dtype=np.int32))
                    continue
            logits = np.asarray(generator.get_logits(), dtype=np.float32).reshape(1, -1)
            best = take_best_allowed(state, logits, mask, vocab)
            if not state.done:  # a dead end or the answer's end leaves nothing to feed
                generator.append_tokens(np.array([best], dtype=np.int32))

    def close(self) -> None:
        self.model = None

    def __enter__(self) -> OrtEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
