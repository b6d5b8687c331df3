"""Loading a script of ``recipes/`` as a module, for the tests of this folder (the recipes are scripts, not a package)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"


def load_recipe(name: str) -> ModuleType:
    """``recipes/<name>.py`` as a module named ``name``, registered in ``sys.modules`` (dataclasses look their module
    up there) and loaded once; the recipes folder is importable, for the recipes that share ``split_files``."""
    if name in sys.modules:
        return sys.modules[name]
    if str(RECIPES) not in sys.path:
        sys.path.insert(0, str(RECIPES))
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file (a recipe's committed or written dataset)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def committed_split(folder: str, split: str) -> list[dict]:
    """A committed dataset of ``recipes/<folder>/`` (``train`` or ``test``), as the recipe scripts write it."""
    return read_jsonl(RECIPES / folder / f"{split}.jsonl")


def committed_splits(folder: str) -> tuple[list[dict], list[dict]]:
    """Both committed datasets of ``recipes/<folder>/``, ``(train, test)``: what a recipe's ``generate()`` returns."""
    return committed_split(folder, "train"), committed_split(folder, "test")
