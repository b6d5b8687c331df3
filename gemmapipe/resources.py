"""Files that ship with gemmapipe: schemas of built-in tasks, adapters, example data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def schemas_dir() -> Path:
    """The built-in schemas: inside the wheel (``gemmapipe/_schemas``) or the repository's ``schemas/``."""
    packaged = PACKAGE_DIR / "_schemas"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "schemas"


def builtin_schema(name: str) -> dict[str, Any]:
    return json.loads((schemas_dir() / f"{name}.json").read_text(encoding="utf-8"))


def builtin_adapter(name: str) -> Path | None:
    """The committed adapter of a built-in task, if it has been trained (``gemmapipe/adapters/<name>``)."""
    folder = PACKAGE_DIR / "adapters" / name
    return folder if (folder / "adapter_model.safetensors").is_file() else None
