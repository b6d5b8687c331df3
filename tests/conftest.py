"""Shared fixtures. The gemmapipe pytest plugin (gemmapipe/pytest_plugin.py) provides the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmapipe.engine import Engine
from gemmapipe.models import BaseSource, ModelStore

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_store(gemmapipe_tiny_model: Path, gemmapipe_cache: Path) -> ModelStore:
    return ModelStore(gemmapipe_cache, BaseSource(gemmapipe_tiny_model), notify=lambda message: None)


@pytest.fixture(scope="session")
def tiny_engine(tiny_store: ModelStore) -> Engine:
    engine = Engine(tiny_store.ctranslate2_dir(None, "float32"), compute_type="float32", threads=1)
    yield engine
    engine.close()
