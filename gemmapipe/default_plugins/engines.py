"""The built-in engines: CTranslate2 (int8 and the other CTranslate2 compute types) and llama.cpp (int4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..engines import EngineKind, TextEngine
from ..hookspecs import hookimpl
from ..models import COMPUTE_TYPES, ModelStore


def load_ctranslate2(
    adapter: Path | None, compute_type: str, threads: int | None, store: ModelStore, answers: Sequence[str] | None
) -> TextEngine:
    from ..engine import Engine

    return Engine.load(adapter, compute_type, threads, store=store, answers=answers)


def load_llama_cpp(
    adapter: Path | None, compute_type: str, threads: int | None, store: ModelStore, answers: Sequence[str] | None
) -> TextEngine:
    from ..llama_engine import LlamaEngine

    return LlamaEngine.load(adapter, threads, store=store)


def prepare_ctranslate2(
    adapter: Path | None, compute_type: str, store: ModelStore, answers: Sequence[str] | None
) -> Path:
    return store.ctranslate2_dir(adapter, compute_type, answers)


def prepare_llama_cpp(
    adapter: Path | None, compute_type: str, store: ModelStore, answers: Sequence[str] | None
) -> Path:
    base = store.gguf_base_dir()
    return store.gguf_lora(adapter) if adapter else base


@hookimpl
def register_engines(register: Callable[[EngineKind], None]) -> None:
    register(
        EngineKind(
            "ctranslate2",
            tuple(COMPUTE_TYPES),
            load_ctranslate2,
            "CTranslate2 on the CPU; int8 is the default (gemmapipe.engine)",
            prepare_ctranslate2,
        )
    )
    register(
        EngineKind(
            "llama.cpp",
            ("int4",),
            load_llama_cpp,
            "llama.cpp on the PyPI 4-bit GGUF, adapters applied at run time (gemmapipe.llama_engine; "
            "pip install 'gemmapipe[int4]')",
            prepare_llama_cpp,
        )
    )
