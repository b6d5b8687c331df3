"""Value swapping: new training examples for an extraction task from the ones it has.

A small extraction dataset is learned by heart long before it is learned: the invoice adapter's training loss
falls to 0.006 while its dev loss stays near 0.06. Swapping teaches the model to copy instead. Where a record's
text holds the value of one of its string fields (the same words, any whitespace between them), that value is
replaced, in the text and in the answer alike, by the same field's value from another record of the data. The
receipt keeps its layout and its cue words ("TOTAL", "DATE:"); only the value the model must copy is new.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any

from .grammar import COPY_KEYWORD, string_kind


def _edge(char: str, before: bool) -> str:
    """What may not touch a value at this end: "9.80" in "39.80" or "1.2" in "1.25" is no occurrence of it, nor
    "SDN" in "SDNBHD"; "39.80" in "RM39.80" is one."""
    if char.isdigit():
        return r"(?<![0-9])(?<![0-9][.,])" if before else r"(?![0-9])(?![.,][0-9])"
    if char.isalpha():
        return r"(?<![0-9A-Za-z])" if before else r"(?![0-9A-Za-z])"
    return ""


def value_pattern(value: str) -> re.Pattern[str] | None:
    """The occurrences of ``value`` in a text: its words in order, any whitespace (line breaks too) between them."""
    words = value.split()
    if not words:
        return None
    body = r"\s+".join(re.escape(w) for w in words)
    return re.compile(_edge(words[0][0], before=True) + body + _edge(words[-1][-1], before=False))


def swappable_fields(schema: dict[str, Any]) -> list[str]:
    """Top-level string fields whose values are spans of the text: those without an enum, pattern or format, and
    those copied from the input (``x-copy-from-input``), whose values are spans whatever their pattern. A field of
    type ``["string", "null"]`` counts too; its nulls are never swapped."""
    fields = []
    for name, spec in (schema.get("properties") or {}).items():
        if not isinstance(spec, dict) or string_kind(spec) is None:
            continue
        if spec.get(COPY_KEYWORD) is True or not {"enum", "const", "pattern", "format"} & spec.keys():
            fields.append(name)
    return fields


def swap_values(
    data: list[tuple[str, dict[str, Any]]],
    schema: dict[str, Any],
    rng: random.Random,
    probability: float,
    donors: list[tuple[str, dict[str, Any]]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``data`` with each swappable field's value, where the text holds it, swapped with ``probability``.

    The replacement is the same field's value from another record (drawn with ``rng``) of ``donors``, or of
    ``data`` itself when none are given, so it has the shape the field's values have. Every occurrence is replaced,
    so the text never contradicts the answer. Records whose text does not hold a value keep that value.
    """
    fields = swappable_fields(schema)
    source = data if donors is None else donors
    pools = {f: sorted({e[f] for _, e in source if isinstance(e.get(f), str) and e[f].strip()}) for f in fields}
    swapped = []
    for text, expected in data:
        expected = dict(expected)
        for field in fields:
            value = expected.get(field)
            if not isinstance(value, str) or len(pools[field]) < 2 or rng.random() >= probability:
                continue
            pattern = value_pattern(value)
            if pattern is None or not pattern.search(text):
                continue
            replacement = rng.choice(pools[field])
            while replacement == value:
                replacement = rng.choice(pools[field])
            text = pattern.sub(functools.partial(_replace_laid_out, replacement), text)
            expected[field] = replacement
        swapped.append((text, expected))
    return swapped


def _replace_laid_out(value: str, match: re.Match[str]) -> str:
    return _laid_out_like(value, match.group())


def _laid_out_like(value: str, occurrence: str) -> str:
    """``value`` broken into as many lines as ``occurrence`` spans (an address printed on three lines stays on three)."""
    lines = occurrence.count("\n") + 1
    words = value.split()
    if lines == 1 or len(words) < lines:
        return value
    per_line = len(value) / lines
    out: list[list[str]] = [[]]
    length = 0
    for index, word in enumerate(words):
        left = len(words) - index
        if out[-1] and len(out) < lines and (length >= per_line * len(out) or left <= lines - len(out)):
            out.append([])
        out[-1].append(word)
        length += len(word) + 1
    return "\n".join(" ".join(line) for line in out)
