"""Closed answers: when a schema allows only a few answers (a classifier's enum), the tokens they can be written with.

Gemma 3's output layer scores 262,144 tokens at every step, and on the CPU it costs more than the 18 layers
below it. A classifier can only ever write a few hundred of them: the tokens whose text occurs inside one of its
answers. Scoring only those (see :func:`gemmapipe.convert.transformers_to_ctranslate2`) leaves every answer as
it was: the grammar accepts no other token anyway, and the kept tokens' scores do not change. On 2 cores a
decoding step took half the time (banking77: 76 -> 38 ms for 16 records).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from .grammar import canonical_json

#: Schemas with more possible answers than this are treated as open (no smaller output layer).
MAX_FIXED_ANSWERS = 10_000


class _Open(Exception):
    """The schema allows more answers than can be listed."""


def fixed_answers(schema: dict[str, Any], limit: int = MAX_FIXED_ANSWERS) -> tuple[str, ...] | None:
    """Every answer text ``schema`` allows (compact JSON as the grammar writes it), or None when they are not few.

    Few means: an object whose properties are all closed (``enum``, ``const``, booleans, null), with
    ``additionalProperties: false``, at most ``limit`` combinations, and strings that JSON writes in one way only
    (printable ASCII without ``"`` and ``\\``)."""
    try:
        values = _values(schema, limit)
    except _Open:
        return None
    return tuple(sorted({canonical_json(v, schema) for v in values}))


def _values(schema: Any, limit: int) -> list[Any]:
    if not isinstance(schema, dict):
        raise _Open
    if "const" in schema:
        return [_plain(schema["const"])]
    if "enum" in schema:
        return [_plain(v) for v in schema["enum"]]
    kind = schema.get("type")
    if kind == "boolean":
        return [True, False]
    if kind == "null":
        return [None]
    if kind == "object" and schema.get("additionalProperties") is False and isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", []))
        choices: list[list[tuple[str, Any] | None]] = []
        for name, sub in schema["properties"].items():
            options: list[tuple[str, Any] | None] = [(name, v) for v in _values(sub, limit)]
            if name not in required:
                options.append(None)
            choices.append(options)
        count = 1
        for options in choices:
            count *= len(options)
            if count > limit:
                raise _Open
        return [{kv[0]: kv[1] for kv in combination if kv is not None} for combination in itertools.product(*choices)]
    raise _Open


def _plain(value: Any) -> Any:
    """``value`` if JSON writes it one way only, else :class:`_Open`."""
    if isinstance(value, str):
        if not all(" " <= ch <= "~" and ch not in '"\\' for ch in value):
            raise _Open
        return value
    if value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**53):
        return value
    raise _Open


def answer_token_ids(answers: Iterable[str], token_bytes: Sequence[bytes], always: Iterable[int] = ()) -> list[int]:
    """The ids of every token whose text occurs inside one of ``answers`` (each answer's every tokenization uses only
    those), plus ``always`` (the stop tokens), sorted."""
    pieces: set[bytes] = set()
    longest = max((len(t) for t in token_bytes), default=0)
    for answer in answers:
        data = answer.encode("utf-8")
        for start in range(len(data)):
            for end in range(start + 1, min(len(data), start + longest) + 1):
                pieces.add(data[start:end])
    ids = {i for i, token in enumerate(token_bytes) if token and token in pieces}
    return sorted(ids | set(always))
