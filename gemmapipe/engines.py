"""Which engine runs a compute type, and what every engine offers (:class:`TextEngine`).

CTranslate2 (:class:`gemmapipe.engine.Engine`) runs int8, int8_float32 and float32; llama.cpp
(:class:`gemmapipe.llama_engine.LlamaEngine`) runs int4, which CTranslate2 cannot run on a CPU. The pipe, ``eval``, the
Ray integration and plugins load through :func:`load_engine` and never know which one runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .models import ModelStore

if TYPE_CHECKING:
    from .engine import Generation
    from .grammar import CompiledSchema
    from .prompts import Prompt, Request

INT4 = "int4"


class TextEngine(Protocol):
    """A loaded model that answers requests under a schema's grammar (both engines are one)."""

    def generate(
        self,
        requests: Sequence[Request | Prompt],
        schema: CompiledSchema,
        max_new_tokens: int = ...,
        batch_size: int = ...,
        max_input_tokens: int = ...,
        cancel: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        """One :class:`~gemmapipe.engine.Generation` per request, in order: a schema-valid value or an error.
        Raises :class:`gemmapipe.decoding.Cancelled` when ``cancel`` is set."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...

    def __enter__(self) -> TextEngine: ...

    def __exit__(self, *exc: object) -> None: ...


def load_engine(
    adapter: str | os.PathLike[str] | None = None,
    compute_type: str = "int8",
    threads: int | None = None,
    store: ModelStore | None = None,
    answers: Sequence[str] | None = None,
) -> TextEngine:
    """The engine for ``compute_type``, loaded (and prepared on first use) with ``adapter`` merged in."""
    if compute_type == INT4:
        from .llama_engine import LlamaEngine

        return LlamaEngine.load(adapter, threads, store=store)
    from .engine import Engine

    return Engine.load(adapter, compute_type, threads, store=store, answers=answers)
