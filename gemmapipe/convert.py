"""Weight conversions, run once per cache entry: GGUF -> transformers, LoRA merge, transformers -> CTranslate2.

This is the only module besides training that imports torch, transformers and peft, and it imports them
inside the functions: running a prepared task never loads them.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

#: CTranslate2 prefills long prompts in 512-token chunks whose mask cannot keep Gemma 3's sliding-window layers
#: inside their 512-token window, so its output is wrong past 512 tokens. A window this large makes every layer
#: see the whole context: below 512 tokens that is the original model exactly, and torch (training) and
#: CTranslate2 (inference) agree at every length. Everything that runs the model must use this value.
SLIDING_WINDOW = 32768

HF_WEIGHT_FILES = ("config.json", "generation_config.json", "model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def quiet_transformers() -> None:
    """Keep transformers' "Loading weights" bars and deprecation notices out of users' stderr (cron logs, pipes):
    gemmapipe reports its own progress. Their warnings and errors still show."""
    import warnings

    from transformers.utils import logging

    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # The GGUF loader calls tqdm directly ("Converting and de-quantizing GGUF tensors..."), outside the switch above.
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_loader
    except ImportError:  # another transformers layout: at worst the bar shows
        return
    if not isinstance(getattr(gguf_loader, "tqdm", None), functools.partial):
        gguf_loader.tqdm = functools.partial(gguf_loader.tqdm, disable=True)


def patch_config(config_path: Path) -> None:
    """Make a saved ``config.json`` describe what gemmapipe runs.

    Raises ``sliding_window`` to :data:`SLIDING_WINDOW`, and drops the GGUF ``quantization_config`` that
    transformers leaves on a model it dequantized (the weights are plain float32; the CTranslate2 converter
    fails on the marker).
    """
    config = json.loads(config_path.read_text())
    targets = [config] + ([config["text_config"]] if isinstance(config.get("text_config"), dict) else [])
    for target in targets:
        if "sliding_window" in target and (target["sliding_window"] or 0) < SLIDING_WINDOW:
            target["sliding_window"] = SLIDING_WINDOW
        if (target.get("quantization_config") or {}).get("quant_method") == "gguf":
            del target["quantization_config"]
    config_path.write_text(json.dumps(config, indent=2))


def gguf_to_transformers(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a Gemma 3 GGUF file into a float32 transformers model plus tokenizer in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    # The model was dequantized on load; transformers still flags it as GGUF-quantized and refuses to save.
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    model.save_pretrained(str(out_dir), safe_serialization=True)
    del model
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(str(out_dir))
    patch_config(out_dir / "config.json")
    from .tokenizer import GemmaTokenizer

    GemmaTokenizer(out_dir / "tokenizer.json")  # refuses a tokenizer that splits text unlike Gemma 3's


def copy_transformers_model(src: Path, out_dir: Path) -> None:
    """Copy a local transformers model folder (weights + tokenizer) and patch its sliding window."""
    for name in HF_WEIGHT_FILES + TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, out_dir / name)
    patch_config(out_dir / "config.json")


def merge_lora(base_dir: Path, adapter_dir: Path, out_dir: Path) -> None:
    """Merge a PEFT LoRA adapter into the base weights and save the merged model (with tokenizer) in ``out_dir``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base_dir / name).exists():
            shutil.copy2(base_dir / name, out_dir / name)
    patch_config(out_dir / "config.json")


#: In a CTranslate2 folder whose output layer scores only some tokens: their ids in the tokenizer's vocabulary,
#: in the order of the layer's rows (see :mod:`gemmapipe.vocabulary`).
OUTPUT_IDS_FILE = "gemmapipe-output-ids.json"


def transformers_to_ctranslate2(
    model_dir: Path, out_dir: Path, quantization: str, output_ids: list[int] | None = None
) -> None:
    """Convert a transformers Gemma 3 folder into a CTranslate2 model folder (``force``: ``out_dir`` may exist).

    With ``output_ids``, the output layer scores only those tokens. CTranslate2 reads the output layer's row ``k``
    as its vocabulary's token ``k``, so its vocabulary (and the input embedding with it) is reordered to put those
    tokens first; text still goes in and comes out as token strings, and :data:`OUTPUT_IDS_FILE` maps the rows back
    to the tokenizer's ids.
    """
    from ctranslate2.converters import TransformersConverter

    class OutputSubsetConverter(TransformersConverter):
        def _load(self):  # type: ignore[no-untyped-def]
            spec = super()._load()
            if output_ids is not None:
                _keep_output_rows(spec, output_ids)
            return spec

    quiet_transformers()  # the converter loads the model with transformers, which would draw its own bar
    OutputSubsetConverter(str(model_dir), low_cpu_mem_usage=True).convert(
        str(out_dir), quantization=quantization, force=True
    )
    shutil.copy2(model_dir / "tokenizer.json", out_dir / "tokenizer.json")
    _write_token_bytes(out_dir)
    if output_ids is not None:
        (out_dir / OUTPUT_IDS_FILE).write_text(json.dumps(output_ids))


def _write_token_bytes(model_dir: Path) -> None:
    """Each token's bytes beside the tokenizer, for llguidance (see :data:`gemmapipe.tokenizer.TOKEN_BYTES_FILE`)."""
    from tokenizers import Tokenizer

    from .tokenizer import TOKEN_BYTES_FILE, save_token_bytes, token_bytes

    tokens = token_bytes(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
    if tokens is not None:
        save_token_bytes(tokens, model_dir / TOKEN_BYTES_FILE)


def _keep_output_rows(spec, output_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Reorder ``spec``'s vocabulary to start with ``output_ids`` and keep only their rows in the output layer."""
    import torch

    vocabulary = spec._vocabulary  # what the loader registered (LanguageModelSpec keeps it there; ctranslate2 < 5)
    first = set(output_ids)
    order = list(output_ids) + [i for i in range(len(vocabulary)) if i not in first]
    index = torch.tensor(order, dtype=torch.long)
    decoder = spec.decoder
    projection = decoder.projection.weight
    decoder.embeddings.weight = decoder.embeddings.weight[index].contiguous()
    decoder.projection.weight = projection[index[: len(output_ids)]].contiguous()
    if isinstance(getattr(decoder.projection, "bias", None), torch.Tensor):
        decoder.projection.bias = decoder.projection.bias[index[: len(output_ids)]].contiguous()
    spec.register_vocabulary([vocabulary[i] for i in order])
