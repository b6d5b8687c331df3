"""The adapter folder: a PEFT LoRA adapter, plus the ``gemmapipe-adapter.json`` that ``gemmapipe train`` writes beside it.

One home for the format: which files make an adapter, what its metadata says (read once per folder and process,
as an :class:`AdapterMetadata`), and how a task takes an adapter (``--adapter``, ``--no-adapter``, the instruction
the adapter learned, a warning when the prompts differ from those it was trained on). ``gemmapipe train`` writes the
metadata (:func:`gemmapipe.training.train`); everything else reads it through here.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import SetupError, UsageError, warn
from .tasks import Task

METADATA_FILE = "gemmapipe-adapter.json"


@dataclass(frozen=True)
class AdapterMetadata:
    """What ``gemmapipe-adapter.json`` says of an adapter (the fields gemmapipe acts on; all of it in ``raw``)."""

    #: the base model it was trained on (:attr:`gemmapipe.models.ModelStore.base_description`), if recorded
    base: dict[str, Any] | None
    #: the schema it was trained for, without decoding-only keywords, if recorded
    schema: dict[str, Any] | None
    #: the instruction its prompts started with: a run with the adapter uses it
    instruction: str | None
    #: few-shot examples put in front of every training record (0: none)
    few_shot_examples: int
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AdapterMetadata:
        try:
            few_shot = int(raw.get("few_shot_examples") or 0)
        except (TypeError, ValueError):
            few_shot = 0
        base, schema, instruction = raw.get("base"), raw.get("schema"), raw.get("instruction")
        return cls(
            base=base if isinstance(base, dict) else None,
            schema=schema if isinstance(schema, dict) else None,
            instruction=instruction if isinstance(instruction, str) else None,
            few_shot_examples=few_shot,
            raw=raw,
        )


def adapter_files(folder: Path) -> list[Path]:
    """The files of a PEFT LoRA adapter folder, or a :class:`SetupError` naming what is missing."""
    files = [folder / "adapter_config.json", folder / "adapter_model.safetensors"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SetupError(
            f"the adapter folder {folder} lacks {', '.join(missing)}",
            "an adapter is a PEFT LoRA folder, as written by `gemmapipe train`",
        )
    return files


def read_metadata(folder: Path) -> AdapterMetadata | None:
    """The metadata ``gemmapipe train`` wrote beside the adapter in ``folder``, or None for a plain PEFT folder.
    Read once per folder and process (again only if the file changes); unreadable metadata is a :class:`SetupError`."""
    path = folder / METADATA_FILE
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_metadata(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _read_metadata(path: Path, mtime_ns: int, size: int) -> AdapterMetadata:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SetupError(
            f"the adapter's metadata {path} cannot be read: {exc}",
            "restore it from where the adapter came from, or train the adapter again",
        ) from exc
    if not isinstance(raw, dict):
        raise SetupError(
            f"the adapter's metadata {path} is not a JSON object", "restore it, or train the adapter again"
        )
    return AdapterMetadata.from_json(raw)


def choose_adapter(task: Task, adapter: Path | None, no_adapter: bool) -> Task:
    """``task`` with ``--adapter DIR`` in place of its own, or with no adapter at all for ``--no-adapter``."""
    if adapter is not None and no_adapter:
        raise UsageError("both --adapter and --no-adapter were given", "give --adapter DIR or --no-adapter, not both")
    if adapter is not None:
        return apply_adapter(task, adapter)
    return replace(task, adapter=None) if no_adapter else task


def apply_adapter(task: Task, adapter: Path) -> Task:
    """``task`` with ``adapter``; an adapter written by `gemmapipe train` also brings the instruction it learned."""
    from .grammar import decoding_free

    metadata = read_metadata(adapter)
    if metadata is None:
        return replace(task, adapter=adapter)
    if metadata.schema is not None and decoding_free(metadata.schema) != decoding_free(task.schema):
        warn(f"adapter {adapter} was trained for another schema than task {task.name!r}")
    return replace(task, adapter=adapter, instruction=metadata.instruction or task.instruction)


def examples_mismatch_warning(task: Task) -> str | None:
    """Why ``task``'s prompts may not be what its adapter was trained on: few-shot examples in front of each record
    for an adapter trained on prompts without them, or none for an adapter trained with them.

    None when the two agree, when the task has no adapter, or when the adapter has no gemmapipe metadata (nothing
    is known of its prompts). Metadata written before ``few_shot_examples`` existed means trained without examples.
    """
    if task.adapter is None:
        return None
    try:
        metadata = read_metadata(task.adapter)
    except SetupError:
        return None  # reported where the adapter is loaded
    if metadata is None:
        return None
    trained_with = metadata.few_shot_examples
    if trained_with and not task.examples:
        examples = f"{trained_with} example" + ("s" if trained_with != 1 else "")
        return (
            f"adapter {task.adapter} was trained with {examples} in front of every record, and this "
            "run gives none; pass the examples it was trained with (--examples FILE)"
        )
    if task.examples and not trained_with:
        # Measured: the invoice adapter on its 31 dev receipts, 88.7 % field exact match without examples, 60.5 %
        # with the most similar training receipt put before each record, 25.0 % with two fixed training receipts
        # (and 22 times slower: 0.029 records/s against 0.64).
        return (
            f"adapter {task.adapter} was trained on prompts without examples, and examples in front of a record "
            "usually make such an adapter's answers worse; drop --examples, or use them with --no-adapter"
        )
    return None
