"""Shared fixtures. The gemmapipe pytest plugin (gemmapipe/pytest_plugin.py) provides the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemmapipe.engine import Engine
from gemmapipe.models import BaseSource, ModelStore

REPO = Path(__file__).resolve().parent.parent
#: the two-label schema the CLI and pipe tests classify with
LABEL_SCHEMA = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"],
                "additionalProperties": False}


@pytest.fixture
def label_schema(tmp_path: Path) -> str:
    """A JSON Schema file of :data:`LABEL_SCHEMA`; its path."""
    path = tmp_path / "label.json"
    path.write_text(json.dumps(LABEL_SCHEMA))
    return str(path)


@pytest.fixture(scope="session")
def tiny_store(gemmapipe_tiny_model: Path, gemmapipe_cache: Path) -> ModelStore:
    return ModelStore(gemmapipe_cache, BaseSource(gemmapipe_tiny_model), notify=lambda message: None)


@pytest.fixture(scope="session")
def tiny_engine(tiny_store: ModelStore) -> Engine:
    engine = Engine(tiny_store.ctranslate2_dir(None, "float32"), compute_type="float32", threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_int4_engine(tiny_store: ModelStore):
    """The tiny model on the int4 engine (llama.cpp, 4-bit GGUF); skipped without the int4 extra."""
    pytest.importorskip("llama_cpp")
    from gemmapipe.llama_engine import LlamaEngine

    engine = LlamaEngine(tiny_store.gguf_base_dir(), threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_adapter(tiny_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA adapter of the tiny model (no gemmapipe metadata: a plain PEFT folder)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_store.base_dir()), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                        init_lora_weights=False)  # random B: the adapter changes the output
    peft_model = get_peft_model(model, config)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(str(out))
    return out
