"""Which engine runs a compute type, and what every engine offers (:class:`TextEngine`).

CTranslate2 (:class:`gemmapipe.engine.Engine`) runs int8, int8_float32 and float32; llama.cpp
(:class:`gemmapipe.llama_engine.LlamaEngine`) runs int4, which CTranslate2 cannot run on a CPU. Each is registered
through the ``register_engines`` hook (:mod:`gemmapipe.default_plugins.engines`), as a third party's engine would be.
The pipe, ``eval``, the Ray integration and plugins load through :func:`load_engine` and never know which one runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import ComputeTypeError
from .models import COMPUTE_TYPES, ModelStore, check_compute_type

if TYPE_CHECKING:
    from .engine import Generation
    from .grammar import CompiledSchema
    from .prompts import Prompt, Request


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


class EngineLoader(Protocol):
    """Loads an engine: prepares the model on first use (cached in ``store``), with ``adapter`` applied if given.
    ``answers``: every answer the task can give, when they are few (an engine may use them to build a smaller model)."""

    def __call__(
        self,
        adapter: Path | None,
        compute_type: str,
        threads: int | None,
        store: ModelStore,
        answers: Sequence[str] | None,
    ) -> TextEngine: ...


class EnginePreparer(Protocol):
    """Prepares an engine's model ahead of its first load (``gemmapipe prepare``, before Ray starts its actors) and
    returns where it is; each call after the first returns at once."""

    def __call__(
        self, adapter: Path | None, compute_type: str, store: ModelStore, answers: Sequence[str] | None
    ) -> Path: ...


@dataclass(frozen=True)
class EngineKind:
    """An engine, as a plugin registers it (:func:`gemmapipe.hookspecs.register_engines`): the compute types it runs
    (``--compute-type``), how to load it and, if its model is built on first use, how to build it ahead.
    Built in: CTranslate2 (int8, int8_float32, float32) and llama.cpp (int4)."""

    name: str
    compute_types: tuple[str, ...]
    load: EngineLoader
    description: str = ""
    prepare: EnginePreparer | None = None
    plugin: str = ""


def load_engine(
    adapter: str | os.PathLike[str] | None = None,
    compute_type: str = "int8",
    threads: int | None = None,
    store: ModelStore | None = None,
    answers: Sequence[str] | None = None,
) -> TextEngine:
    """The engine registered for ``compute_type``, loaded (and prepared on first use) with ``adapter`` applied."""
    kind = engine_kind(compute_type)
    return kind.load(Path(adapter) if adapter else None, compute_type, threads, store or ModelStore(), answers)


def prepare_model(
    adapter: str | os.PathLike[str] | None,
    compute_type: str,
    store: ModelStore,
    answers: Sequence[str] | None = None,
) -> Path | None:
    """Build the model ``load_engine`` would load, now; its path, or None for an engine with nothing to build ahead."""
    kind = engine_kind(compute_type)
    if kind.prepare is None:
        return None
    return kind.prepare(Path(adapter) if adapter else None, compute_type, store, answers)


def engine_kind(compute_type: str) -> EngineKind:
    """The engine registered for ``compute_type``, or a :class:`ComputeTypeError` that says why there is none."""
    from .plugins import get_plugins

    engines = get_plugins().registry().engines
    kind = engines.get(compute_type)
    if kind is None:
        choices = f"choose one of: {', '.join(engines) or '(none: the plugins that register engines did not load)'}"
        if compute_type in {"int4", *COMPUTE_TYPES}:  # a built-in engine disabled or failed to load
            raise ComputeTypeError(f"no engine runs compute type {compute_type!r}: its plugin is not loaded", choices)
        try:
            check_compute_type(compute_type)  # says why where gemmapipe knows why (int16, awq, ...)
        except ComputeTypeError as exc:
            if not exc.message.startswith("unknown"):
                raise
        raise ComputeTypeError(f"unknown compute type {compute_type!r}", choices)
    return kind
