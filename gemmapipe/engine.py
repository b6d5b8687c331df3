"""The engine: Gemma 3 on CTranslate2, loaded once, turning prompts into schema-valid JSON.

This module and :mod:`gemmapipe.decoding` are the only ones that touch ``ctranslate2`` at run time.

    from gemmapipe.engine import Engine
    from gemmapipe.grammar import compile_schema
    from gemmapipe.prompts import chat_prompt

    engine = Engine.load()                       # prepares the model on first use, then ~1 s
    schema = compile_schema({"type": "object", ...})
    results = engine.generate([chat_prompt("Extract ...", text)], schema)
    results[0].value                             # a dict that validates against the schema, or None

A schema whose properties copy from the input (``x-copy-from-input``) needs each record's text as well: pass
:class:`gemmapipe.prompts.Request` objects (``Request(prompt, source)``; a task's ``request(text)`` builds one).
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from llguidance import LLMatcher

from .convert import OUTPUT_IDS_FILE
from .decoding import Cancelled, DecodeState, decode_batch
from .errors import SetupError
from .grammar import CompiledSchema
from .grounding import field_confidence
from .memory import release_free_memory
from .models import BaseSource, ModelStore, check_compute_type
from .prompts import Prompt, Request, as_request
from .tokenizer import GemmaTokenizer, TextTokenizer

DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_MAX_INPUT_TOKENS = 4096
DEFAULT_BATCH_SIZE = 16
#: The most a batch's prompts may differ in length, in tokens. CTranslate2 prefills a batch only up to its
#: shortest prompt and feeds the rest of each longer one through decoding steps of the whole batch, one token a
#: step: receipts of 170 to 900 tokens in batches of 16 ran slower than one at a time.
MAX_PROMPT_SPREAD = 16
#: The most tokens a batch holds, prompts and answers (see :func:`length_batches`): it bounds a replica's memory.
#: CTranslate2 holds ~250 KB per token while it decodes a batch (its attention cache keeps Gemma 3's single
#: key/value head copied for all 4 query heads, in float32). Two replicas, 96 test records each: 1,536 tokens a batch
#: peaked at 1.38 GB on receipts (0.68 records/s) and 1.35 GB on log lines; 2,048 at 1.58 GB (0.72) and 1.57 GB.
#: Counting prompts only, 4,096 tokens a batch peaked at 2.4 GB on receipts (0.84 records/s).
MAX_BATCH_TOKENS = 1536
#: What an answer is expected to take until the engine has seen some (then: their mean), in tokens.
FIRST_ANSWER_GUESS = 64
#: Worker threads that decode batches are named so; see :func:`decoding_in_flight`.
DECODE_THREAD_PREFIX = "gemmapipe-decode"
#: How often a waiting :meth:`Engine.generate` looks at its ``cancel`` event.
CANCEL_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Generation:
    """The answer for one prompt: a schema-valid ``value``, or an ``error`` (then ``value`` is None).

    ``error_type`` is one of ``input_too_long``, ``output_truncated``, ``schema_violation``, ``grammar_error`` (and
    ``engine_error`` from the pipeline, for a record whose generation raised).
    """

    value: Any
    text: str
    error: str | None = None
    error_type: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    repairs: int = 0
    #: how many prompts were decoded together with this one (itself included); 0 if it never reached the model
    batch_size: int = 0
    #: per top-level field of ``value``, the lowest probability the model gave a token of it (grounding.py); None
    #: when unknown (an error, or a decoder that gives no probabilities)
    confidence: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def length_batches(
    lengths: Sequence[int],
    indices: Sequence[int],
    batch_size: int,
    spread: int,
    max_tokens: int | None = None,
    answer_tokens: int = 0,
) -> list[list[int]]:
    """``indices`` in batches of at most ``batch_size``, shortest prompts first, lengths within ``spread`` per batch,
    and (if ``max_tokens`` is given) at most ``max_tokens`` tokens per batch, counting each record as the batch's
    longest prompt plus ``answer_tokens`` (a longer record still runs, alone)."""
    batches: list[list[int]] = []
    for index in sorted(indices, key=lambda i: lengths[i]):
        if (
            batches
            and len(batches[-1]) < max(1, batch_size)
            and lengths[index] - lengths[batches[-1][0]] <= spread
            and (max_tokens is None or (len(batches[-1]) + 1) * (lengths[index] + answer_tokens) <= max_tokens)
        ):
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def finish_generation(
    tokenizer: TextTokenizer, state: DecodeState, schema: CompiledSchema, batch_size: int, scored: bool = True
) -> Generation:
    """The :class:`Generation` of a decoded record: its value, or why there is none (any decoder's states).
    ``scored``: the decoder recorded each chosen token's log-probability, so the fields get a confidence."""
    text = tokenizer.decode(state.accepted)
    counts: dict[str, Any] = {
        "prompt_tokens": len(state.prompt_ids),
        "output_tokens": len(state.accepted),
        "repairs": state.repairs,
        "batch_size": batch_size,
    }
    if state.truncated:
        return Generation(
            None,
            text,
            f"output truncated: the answer did not end within {state.limit} tokens",
            "output_truncated",
            **counts,
        )
    if state.grammar_error:
        return Generation(None, text, f"grammar error: {state.grammar_error}", "grammar_error", **counts)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:  # the grammar should make this impossible; never pass it on
        return Generation(None, text, f"the answer is not valid JSON: {exc}", "schema_violation", **counts)
    confidence = None
    if scored and isinstance(value, dict) and len(state.logprobs) == len(state.accepted):
        confidence = field_confidence(text, state.accepted, state.logprobs, tokenizer.decode)
    return schema_checked(value, text, schema, counts, confidence)


def schema_checked(
    value: Any, text: str, schema: CompiledSchema, counts: dict[str, Any], confidence: dict[str, float] | None = None
) -> Generation:
    """The :class:`Generation` of an answer ``value`` (written as ``text``): itself when it validates against
    ``schema``, else a ``schema_violation`` naming what it breaks. Every engine's answers end here, so none is passed
    on unchecked. ``counts``: the Generation's token and batch counts."""
    problems = schema.errors(value)
    if problems:
        return Generation(
            None, text, "the answer breaks the schema: " + "; ".join(problems), "schema_violation", **counts
        )
    return Generation(value, text, **counts, confidence=confidence)


class _RunningMean:
    """The mean of the values added so far (None before the first)."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def add(self, value: int) -> None:
        self.total += value
        self.count += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


class _AnyEvent:
    """Set when any of its events is set (what :func:`decode_batch` polls to stop early)."""

    def __init__(self, *events: threading.Event | None) -> None:
        self._events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


def encode_within_limit(
    tokenizer: TextTokenizer, prompt: Prompt, max_input_tokens: int
) -> tuple[list[int], Generation | None]:
    """A prompt's token ids, or (``[]`` or the ids, and) the ``input_too_long`` answer of a prompt over the limit.

    A prompt sure to be too long is not tokenized at all: a window of 1 MiB lines would take gigabytes of ids for
    nothing. No token holds more than ``longest_token`` characters, so a text of more than ``longest_token`` times the
    limit in characters cannot be within it. Both engines use this, so both refuse the same inputs the same way."""
    chars = sum(len(piece) for piece in prompt if isinstance(piece, str))
    least = chars // tokenizer.longest_token if chars > max_input_tokens else 0
    if least > max_input_tokens:
        return [], Generation(
            None, "", f"the input is at least {least:,} tokens long; the limit is {max_input_tokens}", "input_too_long"
        )
    ids = tokenizer.encode_prompt(prompt)
    if len(ids) > max_input_tokens:
        return ids, Generation(
            None,
            "",
            f"the input is {len(ids)} tokens long; the limit is {max_input_tokens}",
            "input_too_long",
            prompt_tokens=len(ids),
        )
    return ids, None


def check_requests(requests: Sequence[Request | Prompt], schema: CompiledSchema) -> list[Request]:
    """``requests`` as :class:`Request` objects; a ValueError if the schema copies from sources they lack."""
    checked = [as_request(r) for r in requests]
    if schema.copied and any(r.source is None for r in checked):
        raise ValueError(
            f"properties {', '.join(schema.copied)} are copied from the input: give each record's source text "
            "(a Request(prompt, source), as Task.request builds)"
        )
    return checked


def decoding_in_flight() -> bool:
    """True while a batch is still decoding on a worker thread after :meth:`Engine.generate` returned on ``cancel``
    (it stops at its next token; a prefill runs to its end). The CLI exits without waiting for it."""
    return any(t.name.startswith(DECODE_THREAD_PREFIX) and t.is_alive() for t in threading.enumerate())


class Engine:
    """A loaded model. Create it once per process (:meth:`load`) and call :meth:`generate` with many prompts.

    ``threads`` CPU threads (default: all cores) are split into ``replicas`` model replicas that decode different
    batches at the same time (default: one single-threaded replica per thread). The replicas share the weights.
    On 2 cores, two single-threaded replicas answered 1.4x the tokens per second of one two-threaded replica
    (receipt-length prompts; see bench/throughput.py): at this model's size a step's work is too small to split
    well between threads.
    """

    def __init__(
        self,
        model_dir: Path,
        compute_type: str = "int8",
        threads: int | None = None,
        replicas: int | None = None,
    ) -> None:
        import ctranslate2

        check_compute_type(compute_type)
        self.model_dir = Path(model_dir)
        self.compute_type = compute_type
        self.threads = threads or os.cpu_count() or 1
        self.replicas = max(1, min(replicas or self.threads, self.threads))
        loaded: dict[str, Any] = {}

        def load_generator() -> None:  # CTranslate2 loads without the GIL: overlap it with the tokenizer's load
            try:
                loaded["generator"] = ctranslate2.Generator(
                    str(self.model_dir),
                    device="cpu",
                    compute_type=compute_type,
                    inter_threads=self.replicas,
                    intra_threads=max(1, self.threads // self.replicas),
                )
            except (RuntimeError, ValueError) as exc:
                loaded["error"] = exc

        loader = threading.Thread(target=load_generator, name="gemmapipe-load")
        loader.start()
        try:
            self.tokenizer = GemmaTokenizer(self.model_dir / "tokenizer.json")
        finally:
            loader.join()
        if "error" in loaded:
            raise SetupError(
                f"cannot load the model in {self.model_dir}: {loaded['error']}",
                "delete that cache folder and run `gemmapipe prepare` again",
            ) from loaded["error"]
        self.generator = loaded["generator"]
        #: for a model that scores only a task's answer tokens: the tokenizer id of each output row
        output_ids = self.model_dir / OUTPUT_IDS_FILE
        self.output_ids = np.array(json.loads(output_ids.read_text()), dtype=np.int64) if output_ids.is_file() else None
        release_free_memory()  # parsing tokenizer.json leaves ~190 MB of freed heap behind
        self._slots = threading.BoundedSemaphore(self.replicas)  # batches in flight, from any caller
        self._answer_tokens = _RunningMean()  # answers' lengths so far, to size the next batches

    @classmethod
    def load(
        cls,
        adapter: str | os.PathLike[str] | None = None,
        compute_type: str = "int8",
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        base: BaseSource | None = None,
        store: ModelStore | None = None,
        replicas: int | None = None,
        answers: Sequence[str] | None = None,
    ) -> Engine:
        """Prepare (first use only) and load the base model, merged with ``adapter`` if one is given.

        ``answers``: every answer the model will be asked for (a classifier's, see
        :func:`gemmapipe.vocabulary.fixed_answers`); its output layer then scores only their tokens, which halves
        the time of a decoding step and changes no answer. Only for schemas whose answers are all listed."""
        store = store or ModelStore(cache_dir, base)
        model_dir = store.ctranslate2_dir(Path(adapter) if adapter else None, compute_type, answers)
        return cls(model_dir, compute_type=compute_type, threads=threads, replicas=replicas)

    def generate(
        self,
        requests: Sequence[Request | Prompt],
        schema: CompiledSchema,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
        cancel: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        """Answer every request under ``schema``; results come back in the order of ``requests``.

        A request is a :class:`~gemmapipe.prompts.Request` (:meth:`gemmapipe.tasks.Task.request` builds one per
        record), or a bare prompt for a schema without copied properties (``x-copy-from-input``), which take their
        values from the request's ``source``. ``on_progress`` is called after each batch with the
        number of prompts answered so far (a progress bar for long runs; the answers do not depend on it).

        Prompts are grouped by token length into batches of at most ``batch_size`` whose lengths differ by at
        most :data:`MAX_PROMPT_SPREAD` tokens (see :func:`length_batches`).
        Raises :class:`gemmapipe.decoding.Cancelled` when ``cancel`` is set.
        """
        requests = check_requests(requests, schema)
        results: list[Generation | None] = [None] * len(requests)
        encoded: list[list[int]] = []
        runnable = []
        for index, request in enumerate(requests):
            ids, refused = encode_within_limit(self.tokenizer, request.prompt, max_input_tokens)
            encoded.append(ids)
            if refused is not None:
                results[index] = refused
            else:
                runnable.append(index)
        if "guidance" not in self.tokenizer.__dict__:
            _ = self.tokenizer.guidance  # built on first use
            release_free_memory()
        guidance = self.tokenizer.guidance
        lengths = [len(ids) for ids in encoded]
        expected_answer = min(max_new_tokens, round(self._answer_tokens.mean or FIRST_ANSWER_GUESS))
        batches = length_batches(lengths, runnable, batch_size, MAX_PROMPT_SPREAD, MAX_BATCH_TOKENS, expected_answer)
        failed = threading.Event()  # one batch raised: stop the others (they raise Cancelled, which is dropped)
        stop = _AnyEvent(failed, cancel)

        def run(batch: list[int]) -> list[Generation]:
            states = [
                DecodeState(
                    encoded[i],
                    LLMatcher(guidance, schema.grammar_for(requests[i].source), log_level=0),
                    max_new_tokens,
                    self.tokenizer.stop_ids,
                )
                for i in batch
            ]
            with self._slots:
                try:
                    decode_batch(self.generator, self.tokenizer, states, stop, self.output_ids)
                except BaseException as exc:
                    # The traceback's frames hold the CTranslate2 generator; kept alive by the exception (a future
                    # stores it) it would outlive close() and be destroyed at interpreter exit, which aborts.
                    traceback.clear_frames(exc.__traceback__)
                    raise
            return [self._finish(state, schema, len(batch)) for state in states]

        def finished(batch: list[int], answers: list[Generation]) -> None:
            for index, answer in zip(batch, answers):
                results[index] = answer
                self._answer_tokens.add(answer.output_tokens)
            if on_progress is not None:
                on_progress(sum(r is not None for r in results))

        if not batches:
            return [r for r in results if r is not None]
        # Batches decode on worker threads even with one replica: CTranslate2 runs without the GIL, and a main
        # thread blocked inside it would run no signal handler (Ctrl-C, SIGTERM) until the batch ended; waiting
        # here instead, it runs the handler at once. On ``cancel`` it returns at once, without waiting for the
        # batches in flight: their token callback stops them at the next token, but a prefill (seconds for a batch
        # of receipts) cannot be cut. Until they end, :func:`decoding_in_flight` is true and their replicas take no new batch.
        # The longest prompts first, so that no replica is left with a long batch at the end.
        order = sorted(batches, key=lambda b: -len(b) * lengths[b[-1]]) if self.replicas > 1 else batches
        pool = ThreadPoolExecutor(min(self.replicas, len(batches)), thread_name_prefix=DECODE_THREAD_PREFIX)
        left_running = False
        try:
            pending = {pool.submit(run, batch): batch for batch in order}
            while pending:
                finished_now, _ = wait(pending, timeout=CANCEL_POLL_SECONDS, return_when=FIRST_EXCEPTION)
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                for future in finished_now:
                    batch = pending.pop(future)
                    if future.exception() is not None:
                        failed.set()
                        raise future.exception()  # type: ignore[misc]
                    finished(batch, future.result())
        except (Cancelled, KeyboardInterrupt):
            left_running = True  # a second Ctrl-C too: stop now
            raise
        finally:
            failed.set()  # batches still decoding (if any) stop at their next token
            pool.shutdown(wait=not left_running, cancel_futures=True)
        return [r for r in results if r is not None]

    def _finish(self, state: DecodeState, schema: CompiledSchema, batch_size: int) -> Generation:
        return finish_generation(self.tokenizer, state, schema, batch_size)

    def close(self) -> None:
        """Release the model now (CTranslate2 may complain if it is still alive at interpreter exit)."""
        generator = getattr(self, "generator", None)
        if generator is not None:
            del self.generator
            del generator

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
