"""pytest fixtures for gemmapipe and its plugin authors (loaded through the ``pytest11`` entry point).

- ``gemmapipe_tiny_model``: a tiny random Gemma 3 folder (session-wide), usable as ``GEMMAPIPE_BASE_MODEL``.
- ``gemmapipe_env``: points gemmapipe at the tiny model and a session cache; reloads plugins.
- ``gemmapipe_run``: runs the ``gemmapipe`` command in-process and returns click's result.
- ``gemmapipe_check_task``: runs a registered task over some texts and asserts every answer is schema-valid. A task's
  adapter trained on another base model (the real Gemma 3 270M, while tests run the tiny one) cannot be merged into
  the tiny model, so the task runs without it; test such an adapter on the real weights (a ``real_model`` test).

A random model has no skill, but under the grammar its answers must still validate: that checks a task's
schema, prompt and plugin wiring end to end through the real conversion and CTranslate2 path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .models import ModelStore


@pytest.fixture(scope="session")
def gemmapipe_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .testing import build_tiny_gemma

    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"))


@pytest.fixture(scope="session")
def gemmapipe_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gemmapipe-cache")


@pytest.fixture
def gemmapipe_env(
    gemmapipe_tiny_model: Path, gemmapipe_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    from .plugins import reset_plugins

    monkeypatch.setenv("GEMMAPIPE_BASE_MODEL", str(gemmapipe_tiny_model))
    monkeypatch.setenv("GEMMAPIPE_CACHE", str(gemmapipe_cache))
    reset_plugins()
    yield {"GEMMAPIPE_BASE_MODEL": str(gemmapipe_tiny_model), "GEMMAPIPE_CACHE": str(gemmapipe_cache)}
    reset_plugins()


@pytest.fixture
def gemmapipe_run(gemmapipe_env: dict[str, str]) -> Callable[..., Any]:
    from click.testing import CliRunner

    from .cli import cli

    def run(args: list[str], input: str | bytes | None = None) -> Any:
        runner = CliRunner()
        return runner.invoke(cli, args, input=input, catch_exceptions=False)

    return run


@pytest.fixture
def gemmapipe_check_task(gemmapipe_env: dict[str, str]) -> Callable[[str, list[str]], list[Any]]:
    def check(task_name: str, texts: list[str]) -> list[Any]:
        from .engine import Engine
        from .models import ModelStore
        from .plugins import get_plugins

        task = get_plugins().registry().task(task_name)
        store = ModelStore()
        adapter = _usable_adapter(task.adapter, store)
        with Engine.load(
            adapter, compute_type="int8", store=store, answers=task.model_answers if adapter else None
        ) as engine:
            results = engine.generate(
                [task.request(t) for t in texts],
                task.compiled,
                max_new_tokens=task.max_new_tokens or 256,
            )
        for result in results:
            assert result.error_type in (None, "output_truncated"), result.error
            if result.ok:
                assert task.compiled.errors(result.value) == []
                assert json.loads(result.text) == result.value
        return results

    return check


def _usable_adapter(adapter: Path | None, store: ModelStore) -> Path | None:
    """``adapter``, or None when its metadata says it was trained on another base model than ``store``'s."""
    from .errors import SetupError

    if adapter is None:
        return None
    try:
        store.check_adapter_base(adapter)
    except SetupError:
        return None
    return adapter
