"""Which engine runs a compute type: CTranslate2 (:class:`gemmapipe.engine.Engine`) for int8, int8_float32 and
float32; ONNX Runtime GenAI (:class:`gemmapipe.ort_engine.OrtEngine`) for int4, which CTranslate2 cannot run on a
CPU. Both have ``generate(prompts, schema, ...)`` and ``close()``; the pipe, ``eval``, the Ray integration and
plugins load through :func:`load_engine` and never know which one runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .models import ModelStore

INT4 = "int4"


def load_engine(
    adapter: str | os.PathLike[str] | None = None,
    compute_type: str = "int8",
    threads: int | None = None,
    store: ModelStore | None = None,
    answers: Sequence[str] | None = None,
) -> Any:
    """The engine for ``compute_type``, loaded (and prepared on first use) with ``adapter`` merged in."""
    if compute_type == INT4:
        from .ort_engine import OrtEngine

        return OrtEngine.load(adapter, threads, store=store)
    from .engine import Engine

    return Engine.load(adapter, compute_type, threads, store=store, answers=answers)
