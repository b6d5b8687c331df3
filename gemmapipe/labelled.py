"""Labelled records: ``(text, expected)`` pairs read from JSONL, checked against a schema, split and hashed.

Training, ``eval``, few-shot examples and the recipes all read labelled data through this module.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from .errors import SchemaError
from .grammar import CompiledSchema, compile_schema

#: one labelled record: the input text and the answer expected for it
Labelled = tuple[str, Any]


def read_labelled(path: Path, limit: int | None = None) -> list[Labelled]:
    """``(text, expected)`` pairs from a JSONL file of ``{"text": ..., "expected": {...}}`` (the datasets' format).

    Used for few-shot examples, training and evaluation; a bad line is an error that names it.
    """
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                pairs.append((item["text"], item["expected"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise SchemaError(
                    f"{path}:{number} is not a labelled record ({exc})",
                    'each line must be {"text": "...", "expected": {...}}',
                ) from exc
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


def invalid_answers(compiled: CompiledSchema, pairs: list[Labelled]) -> list[tuple[int, str]]:
    """``(record number from 1, first problem)`` for each labelled pair whose expected answer breaks the schema."""
    bad = []
    for number, (_, expected) in enumerate(pairs, 1):
        problems = [e.message for e in compiled.validator.iter_errors(expected)]
        if problems:
            bad.append((number, problems[0]))
    return bad


def read_examples(path: Path, schema: dict[str, Any]) -> list[Labelled]:
    """Few-shot examples from a labelled JSONL file; every expected answer must validate against ``schema``."""
    examples = read_labelled(path)
    bad = invalid_answers(compile_schema(schema), examples)
    if bad:
        number, problem = bad[0]
        raise SchemaError(f"{path}: example {number}: the expected answer breaks the schema: {problem}")
    return examples


def split_dev(data: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A deterministic train/dev split of the training data (the test split is never touched)."""
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    n_dev = int(len(data) * fraction) if fraction > 0 else 0
    dev = {i for i in order[:n_dev]}
    return [d for i, d in enumerate(data) if i not in dev], [d for i, d in enumerate(data) if i in dev]


def data_hash(data: list[Labelled]) -> str:
    """The sha256 of records, in order (what a checkpoint and an adapter's metadata name their data by)."""
    digest = hashlib.sha256()
    for text, expected in data:
        digest.update(json.dumps([text, expected], sort_keys=True).encode())
    return digest.hexdigest()


def record_hashes(data: list[Labelled]) -> list[str]:
    """A short hash of each record, sorted (which records a dev set held, without the records themselves)."""
    return sorted(data_hash([record])[:16] for record in data)
