"""Evaluation: run a task over labelled records and score the answers.

Labelled records are JSON lines ``{"text": ..., "expected": {...}}`` (the format of the shared datasets).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from difflib import SequenceMatcher
from dataclasses import dataclass, field
from typing import Any

from .engine import Engine, Generation
from .grammar import copy_pieces
from .tasks import Task

_SPACES = re.compile(r"\s+")


def normalise(value: Any, ignore_case: bool = False) -> str:
    """Whitespace-normalised text of a value (JSON text for non-strings), for exact-match comparison."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = _SPACES.sub(" ", text).strip()
    return text.casefold() if ignore_case else text


def similarity(got: Any, want: Any, ignore_case: bool = False) -> float:
    """Character-level similarity of two normalised values in [0, 1] (difflib's ratio: 2 * matches / total length)."""
    a, b = normalise(got, ignore_case), normalise(want, ignore_case)
    if a == b:
        return 1.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


@dataclass
class EvalReport:
    """Scores of one evaluation run. ``field_exact_match`` maps each expected field to its exact-match rate."""

    task: str
    records: int = 0
    valid: int = 0
    field_exact_match: dict[str, float] = field(default_factory=dict)
    field_similarity: dict[str, float] = field(default_factory=dict)
    record_exact_match: float = 0.0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    #: for each field with string values, how often the expected value is a run of the record's input text (see
    #: :func:`is_run_of`): the most exact match a field copied from the input (``x-copy-from-input``) can reach
    field_in_text: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    #: One entry per record, in input order: expected value, the answer (or error) and which fields matched.
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def validity_rate(self) -> float:
        return self.valid / self.records if self.records else 0.0

    @property
    def mean_field_exact_match(self) -> float:
        scores = list(self.field_exact_match.values())
        return sum(scores) / len(scores) if scores else 0.0

    @property
    def mean_field_similarity(self) -> float:
        scores = list(self.field_similarity.values())
        return sum(scores) / len(scores) if scores else 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "records": self.records,
            "schema_validity_rate": self.validity_rate,
            "field_exact_match": self.field_exact_match,
            "mean_field_exact_match": self.mean_field_exact_match,
            "field_similarity": self.field_similarity,
            "mean_field_similarity": self.mean_field_similarity,
            "record_exact_match": self.record_exact_match,
            "errors_by_type": self.errors_by_type,
            "field_in_text": self.field_in_text,
            "records_per_second": self.records_per_second,
        }


def is_run_of(value: str, text: str, ignore_case: bool = False) -> bool:
    """Whether ``value`` is a run of whole words, numbers and marks of ``text`` (whitespace runs read as one space):
    a value that a property copied from the input (``x-copy-from-input``) can take."""
    if not value.strip():
        return True  # a copied value may always be empty
    if ignore_case:
        value, text = value.casefold(), text.casefold()
    return "\0" + "\0".join(copy_pieces(value)) + "\0" in "\0" + "\0".join(copy_pieces(text)) + "\0"


def score(task: str, expected: list[dict[str, Any]], generations: list[Generation], ignore_case: bool = False,
          seconds: float = 0.0, sources: list[str] | None = None) -> EvalReport:
    """Per-field exact match over the fields of ``expected``; an error result counts as wrong on every field.

    For a classification task (one field) the field's exact match is the accuracy. ``field_similarity`` is the
    mean character-level similarity per field (the measure for rewriting, where near misses matter); an error
    result or a missing field scores 0. With ``sources`` (each record's input text), ``field_in_text`` says how
    often each string field's expected value is a run of that text.
    """
    fields: list[str] = []
    for item in expected:
        fields += [k for k in item if k not in fields]
    hits: Counter[str] = Counter()
    close: dict[str, float] = {f: 0.0 for f in fields}
    whole = 0
    errors: Counter[str] = Counter()
    predictions: list[dict[str, Any]] = []
    for want, got in zip(expected, generations):
        if not got.ok:
            errors[got.error_type or "error"] += 1
            predictions.append({"expected": want, "output": None, "error_type": got.error_type, "error": got.error,
                                "exact": {f: False for f in want}})
            continue
        value = got.value if isinstance(got.value, dict) else {}
        scores = {f: similarity(value[f], want[f], ignore_case) for f in want if f in value}
        matched = [f for f, s in scores.items() if s == 1.0]  # similarity is 1.0 exactly when the normalised texts are equal
        predictions.append({"expected": want, "output": got.value, "exact": {f: f in matched for f in want}})
        hits.update(matched)
        for f, s in scores.items():
            close[f] += s
        whole += len(matched) == len(want)
    n = len(expected)
    in_text: dict[str, float] = {}
    if sources is not None:
        for f in fields:
            values = [(want[f], text) for want, text in zip(expected, sources) if isinstance(want.get(f), str)]
            if values:
                in_text[f] = sum(is_run_of(v, text, ignore_case) for v, text in values) / len(values)
    return EvalReport(
        task=task,
        records=n,
        valid=sum(g.ok for g in generations),
        field_exact_match={f: hits[f] / n if n else 0.0 for f in fields},
        field_similarity={f: close[f] / n if n else 0.0 for f in fields},
        record_exact_match=whole / n if n else 0.0,
        errors_by_type=dict(errors),
        field_in_text=in_text,
        seconds=seconds,
        predictions=predictions,
    )


def evaluate(task: Task, engine: Engine, data: list[tuple[str, dict[str, Any]]], batch_size: int = 16, ignore_case: bool = False,
             on_progress: Callable[[int], None] | None = None) -> EvalReport:
    """Run ``task`` over ``data`` and score it (``field_in_text`` for extraction tasks only).

    ``on_progress`` gets the number of records answered so far, after each batch."""
    start = time.perf_counter()
    sources = [task.source(text) for text, _ in data]
    generations = engine.generate([task.prompt(text) for text, _ in data], task.compiled,
                                  max_new_tokens=task.max_new_tokens or 256, batch_size=batch_size, sources=sources,
                                  on_progress=on_progress)
    return score(task.name, [want for _, want in data], generations, ignore_case, time.perf_counter() - start,
                 sources if task.kind == "extract" else None)
