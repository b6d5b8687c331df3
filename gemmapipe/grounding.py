"""What an answer's values rest on: each field's confidence (from the token probabilities of its value) and each
string value's place in the record's text (character offsets).

- :func:`field_confidence`: per top-level field, the **lowest** probability the model gave any token of its value.
  A value is as weak as its weakest token: one doubtful digit of a total makes the total wrong however sure the
  other digits are, and a mean would hide it. Tokens the grammar forced (keys, quotes, the rest of a label once its
  start is unique) were no choice of the model's and do not count; a value made only of forced tokens has
  confidence 1. A token the grammar made the decoder replace (a repair) counts with the probability the model gave
  it, which is low: the model wanted another.
- :func:`value_offsets`: per string value (top-level fields; nested ones as ``a.b``, array items as ``a.0``), its
  ``[start, end)`` in the record's text in code points (Python's string indices), the first place it occurs; runs
  of whitespace match as one space, as the grammar copies them (``x-copy-from-input``). None where the value is not
  in the text.

No model here: pure functions of token ids, log-probabilities, texts and values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

_SPACES = re.compile(r"\s+")


def token_ends(ids: Sequence[int], decode: Callable[[list[int]], str]) -> list[int]:
    """For each token of ``ids``, the length of the decoded text up to and including it (never decreasing: a token
    that ends inside a multi-byte character gets the length before it)."""
    ends, longest = [], 0
    for count in range(1, len(ids) + 1):
        length = len(decode(list(ids[:count])).rstrip("\ufffd"))
        longest = max(longest, length)
        ends.append(longest)
    return ends


def top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """The ``[start, end)`` of each top-level field's value in ``text``, a JSON object (as the grammar writes it)."""
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    position = text.index("{") + 1
    while True:
        position = _skip(text, position)
        if position >= len(text) or text[position] == "}":
            return spans
        key, position = decoder.raw_decode(text, position)
        position = _skip(text, position)
        position = _skip(text, position + 1)  # the colon
        _, end = decoder.raw_decode(text, position)
        spans[key] = (position, end)
        position = _skip(text, end)
        if position < len(text) and text[position] == ",":
            position += 1


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def field_confidence(
    text: str, ids: Sequence[int], logprobs: Sequence[float | None], decode: Callable[[list[int]], str]
) -> dict[str, float]:
    """Each top-level field's confidence (see the module docstring) from the answer's ``text``, its token ``ids`` and
    each token's log-probability (None for a token the grammar forced)."""
    ends = token_ends(ids, decode)
    starts = [0, *ends[:-1]]
    confidence = {}
    for name, (start, end) in top_level_spans(text).items():
        chosen = [lp for lp, a, b in zip(logprobs, starts, ends) if lp is not None and a < end and b > start]
        confidence[name] = float(f"{math.exp(min(chosen)):.4g}") if chosen else 1.0  # four significant digits
    return confidence


def _normalised(text: str) -> tuple[str, list[int]]:
    """``text`` with each run of whitespace made one space, and for each character of it its index in ``text``."""
    out: list[str] = []
    where: list[int] = []
    for match in re.finditer(r"\s+|\S+", text):
        if match.group().isspace():
            out.append(" ")
            where.append(match.start())
        else:
            out.append(match.group())
            where.extend(range(match.start(), match.end()))
    return "".join(out), where


def find_in_text(value: str, text: str) -> list[int] | None:
    """``[start, end)`` of the first place ``value`` occurs in ``text`` (whitespace runs matching as one space), or
    None; an empty or blank value has no place."""
    wanted = _SPACES.sub(" ", value).strip()
    if not wanted:
        return None
    exact = text.find(value)
    if exact >= 0 and value == value.strip():
        return [exact, exact + len(value)]
    flat, where = _normalised(text)
    found = flat.find(wanted)
    if found < 0:
        return None
    last = where[found + len(wanted) - 1]
    end = last + 1
    return [where[found], end]


def value_offsets(value: Any, text: str) -> dict[str, list[int] | None]:
    """:func:`find_in_text` of every string in ``value`` (an answer object), keyed by its path (``a``, ``a.b``,
    ``a.0``); other values (numbers, booleans, nulls) have no entry."""
    offsets: dict[str, list[int] | None] = {}

    def walk(item: Any, path: str) -> None:
        if isinstance(item, str):
            offsets[path] = find_in_text(item, text)
        elif isinstance(item, dict):
            for key, child in item.items():
                walk(child, f"{path}.{key}" if path else key)
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, f"{path}.{index}")

    walk(value, "")
    return offsets
