"""Build an int4 ONNX Runtime GenAI model from a transformers Gemma 3 folder: ``python -m gemmapipe.ort_builder
-i MODEL_DIR -o OUT_DIR`` (run by :mod:`gemmapipe.models` in a process of its own, once per cache entry).

onnxruntime-genai's model builder reads a Gemma 3 configuration as transformers wrote it before version 5 (a
``rope_local_base_freq``, a flat ``rope_parameters``); transformers 5 nests the rope settings per layer type. The
builder is given the older names beside the newer ones (the model code still reads the nested ones). The sliding
window goes back to Gemma 3 270M's own 512 (gemmapipe raises it for CTranslate2 only, whose sliding-window attention
is wrong past 512 tokens; ONNX Runtime's is right, and its cache must hold a whole window).
"""

from __future__ import annotations

import runpy
import sys

GEMMA3_SLIDING_WINDOW = 512
#: k-quant with the output layer and the most sensitive layers in 8 bits (llama.cpp's Q4_K_M strategy), not plain
#: round-to-nearest 4 bits everywhere: see docs/benchmarks.md for what RTN cost on receipts
ALGORITHM = "k_quant_mixed"


def _patch_config_loading() -> None:
    from transformers import AutoConfig

    load = AutoConfig.from_pretrained

    def patched(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = load(*args, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        text = getattr(config, "text_config", config)
        nested = getattr(text, "rope_parameters", None) or {}
        full = nested.get("full_attention", nested)
        local = nested.get("sliding_attention", nested)
        theta = full.get("rope_theta", 1_000_000.0)
        for name, value in (
            ("rope_local_base_freq", local.get("rope_theta", 10_000.0)),
            ("rope_theta", theta),
            ("rope_parameters", {**nested, "rope_type": "default", "rope_theta": theta}),
            ("sliding_window", GEMMA3_SLIDING_WINDOW),
        ):
            object.__setattr__(text, name, value)
        return result

    AutoConfig.from_pretrained = staticmethod(patched)  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    _patch_config_loading()
    sys.argv = [
        "onnxruntime_genai.models.builder",
        *argv,
        "-p",
        "int4",
        "-e",
        "cpu",
        "--extra_options",
        f"algo_config={ALGORITHM}",
    ]
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
