"""Evaluation: run a task over labelled records and score the answers.

Labelled records are JSON lines ``{"text": ..., "expected": {...}}`` (the format of the shared datasets).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from .engine import Generation
from .engines import TextEngine
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
    #: per field, over the records whose expected answer has that field (a null or empty value included): how
    #: often the answer's value is the same (null, empty or left out all count as no value)
    field_exact_match: dict[str, float] = field(default_factory=dict)
    field_similarity: dict[str, float] = field(default_factory=dict)
    #: how often the whole answer is the expected one: every field right, and no field the expected answer lacks
    record_exact_match: float = 0.0
    #: per field (nested objects as ``a.b``), counts of values: right (``tp``), given but not expected or wrong
    #: (``fp``), expected but missed or wrong (``fn``); a wrong value counts as both. Array items count one by one.
    field_counts: dict[str, dict[str, int]] = field(default_factory=dict)
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

    def field_scores(self) -> dict[str, dict[str, float]]:
        """Per field: precision, recall and F1 of its values (see :attr:`field_counts`)."""
        return {f: _prf(c["tp"], c["fp"], c["fn"]) for f, c in self.field_counts.items()}

    @property
    def micro(self) -> dict[str, float]:
        """Precision, recall and F1 over the values of every field together."""
        return _prf(*(sum(c[k] for c in self.field_counts.values()) for k in ("tp", "fp", "fn")))

    @property
    def macro_f1(self) -> float:
        """The mean of the fields' F1."""
        scores = [s["f1"] for s in self.field_scores().values()]
        return sum(scores) / len(scores) if scores else 0.0

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
            "field_scores": self.field_scores(),
            "field_counts": self.field_counts,
            "micro_precision": self.micro["precision"],
            "micro_recall": self.micro["recall"],
            "micro_f1": self.micro["f1"],
            "macro_f1": self.macro_f1,
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


def score(
    task: str,
    expected: list[dict[str, Any]],
    generations: list[Generation],
    ignore_case: bool = False,
    seconds: float = 0.0,
    sources: list[str] | None = None,
) -> EvalReport:
    """Score answers against expected values, for any schema shape; an error result gives no value for any field.

    Fields are the expected and answered objects' keys, nested objects flattened to ``a.b``. A value that is null,
    empty (``""``, ``[]``, ``{}``) or left out is *no value*. Per field:

    - exact match over the records whose expected answer has the field (no value there must be answered with no
      value); for a classification task (one field) it is the accuracy;
    - precision, recall and F1 of the values (:attr:`EvalReport.field_counts`): a key the answer invents counts
      against precision, a key it misses against recall; array items are matched as a multiset;
    - ``field_similarity``: mean character-level similarity over the same records as exact match (the measure for
      rewriting, where near misses matter); no value on both sides scores 1, an error 0.

    ``record_exact_match`` needs every field right and no field the expected answer lacks. With ``sources`` (each
    record's input text), ``field_in_text`` says how often each string field's expected value is a run of that text.
    """
    fields: list[str] = []
    held: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    close: dict[str, float] = defaultdict(float)
    counts: dict[str, Counter[str]] = {}
    whole = 0
    errors: Counter[str] = Counter()
    predictions: list[dict[str, Any]] = []
    for want, got in zip(expected, generations):
        gold = _flatten(want)
        answer = _flatten(got.value) if got.ok else {}
        if not got.ok:
            errors[got.error_type or "error"] += 1
        for f in dict.fromkeys([*gold, *answer]):
            if f not in counts:
                counts[f] = Counter(tp=0, fp=0, fn=0)
                fields.append(f)
            tp, fp, fn = _value_counts(gold.get(f), answer.get(f), ignore_case)
            counts[f].update(tp=tp, fp=fp, fn=fn)
        exact: dict[str, bool] = {}
        for f in gold:
            held[f] += 1
            same = got.ok and _same(gold[f], answer.get(f), ignore_case)
            exact[f] = same
            hits[f] += same
            close[f] += (
                (1.0 if same else similarity(_or_empty(answer.get(f)), _or_empty(gold[f]), ignore_case))
                if got.ok
                else 0.0
            )
        invented = [f for f in answer if f not in gold and _has_value(answer[f])]
        whole += got.ok and all(exact.values()) and not invented
        prediction: dict[str, Any] = {
            "expected": want,
            "output": got.value if got.ok else None,
            "exact": exact,
            "confidence": got.confidence,
        }
        if not got.ok:
            prediction.update(error_type=got.error_type, error=got.error)
        predictions.append(prediction)
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
        field_exact_match={f: hits[f] / held[f] for f in fields if held[f]},
        field_similarity={f: close[f] / held[f] for f in fields if held[f]},
        record_exact_match=whole / n if n else 0.0,
        field_counts={f: dict(counts[f]) for f in fields},
        errors_by_type=dict(errors),
        field_in_text=in_text,
        seconds=seconds,
        predictions=predictions,
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """An object's fields, nested objects as ``a.b`` (an empty nested object stays one field, with no value)."""
    if not isinstance(value, dict):
        return {} if not prefix else {prefix: value}
    if not value and prefix:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, sub in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(sub, dict) and sub:
            out.update(_flatten(sub, path))
        else:
            out[path] = sub
    return out


def _has_value(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _or_empty(value: Any) -> Any:
    return value if _has_value(value) else ""


def _items(value: Any, ignore_case: bool) -> Counter[str]:
    """A value as a multiset of normalised items: an array's items, or the value itself; nothing for no value."""
    if not _has_value(value):
        return Counter()
    return Counter(normalise(v, ignore_case) for v in (value if isinstance(value, list) else [value]))


def _value_counts(want: Any, got: Any, ignore_case: bool) -> tuple[int, int, int]:
    """(right, given but not expected, expected but not given) values of one field of one record."""
    expected, answered = _items(want, ignore_case), _items(got, ignore_case)
    right = sum((expected & answered).values())
    return right, sum(answered.values()) - right, sum(expected.values()) - right


def _same(want: Any, got: Any, ignore_case: bool) -> bool:
    return _items(want, ignore_case) == _items(got, ignore_case)


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if not tp + fp + fn:  # the field never had a value on either side: nothing was wrong
        precision = recall = f1 = 1.0
    return {"precision": precision, "recall": recall, "f1": f1}


def evaluate(
    task: Task,
    engine: TextEngine,
    data: list[tuple[str, dict[str, Any]]],
    batch_size: int = 16,
    ignore_case: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Run ``task`` over ``data`` and score it (``field_in_text`` for extraction tasks only).

    ``on_progress`` gets the number of records answered so far, after each batch."""
    start = time.perf_counter()
    sources = [task.source(text) for text, _ in data]
    generations = engine.generate(
        [task.request(text) for text, _ in data],
        task.compiled,
        max_new_tokens=task.max_new_tokens or 256,
        batch_size=batch_size,
        on_progress=on_progress,
    )
    return score(
        task.name,
        [want for _, want in data],
        generations,
        ignore_case,
        time.perf_counter() - start,
        sources if task.kind == "extract" else None,
    )
