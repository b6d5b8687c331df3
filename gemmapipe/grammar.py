"""JSON Schema -> llguidance grammar, output validation, and the canonical JSON text the grammar produces.

The grammar is compact: no optional whitespace, ``,`` and ``:`` as separators, properties in the schema's
order. :func:`canonical_json` writes exactly that text, so adapters are trained on what decoding produces.

A string property marked ``"x-copy-from-input": true`` can only take a value copied from the record's input text:
a run of whole words, digits and punctuation of it, with every run of whitespace (line breaks too) read as one
space, and no space at either end. With a ``pattern`` as well, the value is a run of the text that matches it;
with ``maxLength`` (or ``minLength``), a run that long; of type ``["string", "null"]``, such a run or null (only
null where the record's text has none). Such a schema gets a grammar per record (:meth:`CompiledSchema.grammar_for`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema import Draft202012Validator
from llguidance import LLMatcher, regex_to_lark

from .errors import SchemaError

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

#: Compact JSON: the one text the grammar allows for a value, so the model never wastes tokens on layout.
COMPILE_OPTIONS: JsonCompileOptions = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}

#: Schema keyword of a string property whose value must be copied from the input text.
COPY_KEYWORD = "x-copy-from-input"
#: Keywords a copied property may have besides ``type``: none that the copy grammar would leave unenforced.
#: (A ``pattern`` and the lengths are checked on the value as JSON writes it: the same text unless it holds ``"``,
#: ``\`` or control characters, each of which JSON writes as two or more. So the grammar's maxLength is never looser
#: than the schema's; the validator still checks the value itself, so a difference there gives an error result.)
_COPY_ALLOWED = {
    "type",
    "title",
    "description",
    "examples",
    "$comment",
    "pattern",
    "minLength",
    "maxLength",
    COPY_KEYWORD,
}
#: A copied value neither starts nor ends with a space (whitespace of the text is read as one space).
_NO_EDGE_SPACE = "(?:[^ ](?:.*[^ ])?)?"
#: What a copied value is built of: runs of letters, runs of digits, single other characters, whitespace runs.
_COPY_PIECES = re.compile(r"[^\W\d_]+|\d+|\s+|.", re.S)


@dataclass(frozen=True)
class CompiledSchema:
    """A JSON Schema ready for decoding: the llguidance grammar, a validator, and what the grammar leaves out.

    ``unenforced`` lists the schema keywords that the grammar could not enforce. Outputs are still validated
    against the full schema, so an output that breaks one of them becomes an error result, never bad output.
    """

    schema: dict[str, Any]
    grammar: str
    unenforced: tuple[str, ...] = ()
    validator: Draft202012Validator = field(repr=False, compare=False, default=None)
    #: properties marked ``x-copy-from-input``; when there are any, decode with :meth:`grammar_for`
    copied: tuple[str, ...] = ()
    _copy_lark: str = field(repr=False, compare=False, default="")

    def grammar_for(self, source: str | None) -> str:
        """The grammar for one record whose input text is ``source``: the copied properties can only take runs
        of that text. Without copied properties, :attr:`grammar` whatever ``source`` is."""
        if not self.copied:
            return self.grammar
        if source is None:
            raise ValueError(f"properties {', '.join(self.copied)} are copied from the input: give the input text")
        return LLMatcher.grammar_from_lark(
            self._copy_lark + json.dumps({"substring_chunks": copy_pieces(source)}, ensure_ascii=False)
        )

    def errors(self, value: Any) -> list[str]:
        """Messages for every way ``value`` breaks the schema (empty when it is valid)."""
        return [_describe(e) for e in self.validator.iter_errors(value)]


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def compile_schema(schema: dict[str, Any]) -> CompiledSchema:
    """Check ``schema`` (draft 2020-12) and compile it; raise :class:`SchemaError` with a hint when impossible."""
    if not isinstance(schema, dict):
        raise SchemaError("a JSON Schema must be a JSON object", 'wrap it as {"type": ..., ...}')
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(
            f"invalid JSON Schema: {_describe(exc)}", "fix the schema; see https://json-schema.org"
        ) from exc
    strict = LLMatcher.grammar_from_json_schema(schema, defaults=COMPILE_OPTIONS)
    failed, messages = LLMatcher.validate_grammar_with_warnings(strict)
    unenforced: list[str] = []
    grammar = strict
    if failed:
        lenient = LLMatcher.grammar_from_json_schema(schema, defaults={**COMPILE_OPTIONS, "lenient": True})
        lenient_failed, lenient_messages = LLMatcher.validate_grammar_with_warnings(lenient)
        if lenient_failed:
            raise SchemaError(
                f"this schema cannot be turned into a decoding grammar: {messages[0]}",
                "simplify the schema (for instance replace oneOf by anyOf, or drop the keyword named)",
            )
        grammar = lenient
        unenforced = [_strip(m) for m in lenient_messages] or [_strip(messages[0])]
    else:
        unenforced = [_strip(m) for m in messages]
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    copied = _copied_properties(schema)
    compiled = CompiledSchema(
        schema=schema,
        grammar=grammar,
        unenforced=tuple(unenforced),
        validator=validator,
        copied=copied,
        _copy_lark=_copy_lark(schema, copied) if copied else "",
    )
    if copied:
        failed, messages = LLMatcher.validate_grammar_with_warnings(compiled.grammar_for(""))
        if failed:  # a property's own schema that llguidance cannot inline
            raise SchemaError(
                f"this schema cannot be turned into a decoding grammar: {messages[0]}",
                f"simplify the schema, or drop {COPY_KEYWORD}",
            )
    return compiled


def decoding_free(schema: Any) -> Any:
    """``schema`` without the keywords that only steer decoding (``x-copy-from-input``): what an adapter learned."""
    if isinstance(schema, dict):
        return {k: decoding_free(v) for k, v in schema.items() if k != COPY_KEYWORD}
    if isinstance(schema, list):
        return [decoding_free(v) for v in schema]
    return schema


def copy_pieces(source: str) -> list[str]:
    """``source`` cut where a copied value may start or end, each piece as it is written inside a JSON string."""
    text = " ".join(source.split())
    return [json.dumps(piece, ensure_ascii=False)[1:-1] for piece in _COPY_PIECES.findall(text)]


def _copied_properties(schema: dict[str, Any]) -> tuple[str, ...]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return ()
    copied = tuple(name for name, sub in props.items() if isinstance(sub, dict) and sub.get(COPY_KEYWORD) is True)
    if not copied:
        return ()
    if (
        schema.get("type") != "object"
        or schema.get("additionalProperties") is not False
        or set(schema.get("required", [])) != set(props)
    ):
        raise SchemaError(
            f"{COPY_KEYWORD} needs a top-level object whose properties are all required and no others allowed",
            f"make every property required and set additionalProperties to false, or drop {COPY_KEYWORD}",
        )
    for name in copied:
        sub = props[name]
        extra = sorted(set(sub) - _COPY_ALLOWED)
        if string_kind(sub) is None or extra:
            raise SchemaError(
                f"property {name!r} is copied from the input, so it must be a plain string (or null)"
                + (f" (it has {', '.join(extra)})" if extra else ""),
                f'give it only "type": "string" (or ["string", "null"]), a description, and a pattern, minLength or '
                f"maxLength if needed; or drop {COPY_KEYWORD}",
            )
    return copied


def string_kind(spec: dict[str, Any]) -> str | None:
    """``"string"`` for a property of type string, ``"nullable"`` for ``["string", "null"]``, None for any other
    (the types a copied property may have, and that --swap-values swaps)."""
    kind = spec.get("type")
    if kind == "string":
        return "string"
    if isinstance(kind, list) and sorted(kind) == ["null", "string"]:
        return "nullable"
    return None


def _copy_lark(schema: dict[str, Any], copied: tuple[str, ...]) -> str:
    """A Lark grammar for the object, open at its end: the substring chunks of the input text follow."""
    members, rules = [], []
    for index, (name, sub) in enumerate(schema["properties"].items()):
        key = json.dumps(json.dumps(name, ensure_ascii=False) + ":", ensure_ascii=False)
        if name in copied:
            # quotes inside the lexeme: llguidance opens it only if some run can finish it (a bounded search of
            # the regex intersection; past its budget a record can still end in a grammar error)
            intersection = " & ".join(["SOURCE", *(f"/{regex}/" for regex in _copy_constraints(sub))])
            rules.append(f'COPIED_{index}: "\\"" ({intersection}) "\\""')
            members.append(
                f'{key} (COPIED_{index} | "null")' if string_kind(sub) == "nullable" else f"{key} COPIED_{index}"
            )
        else:
            members.append(f"{key} value_{index}")
            inline = {**sub, "x-guidance": COMPILE_OPTIONS, **({"$defs": schema["$defs"]} if "$defs" in schema else {})}
            rules.append(f"value_{index}: %json {json.dumps(inline, ensure_ascii=False)}")
    start = 'start: "{" ' + ' "," '.join(members) + ' "}"'
    return "\n".join([start, *rules, "SOURCE: %regex "])


def _copy_constraints(spec: dict[str, Any]) -> list[str]:
    """Regexes a copied value (as JSON writes it, between its quotes) must match besides being a run of the text:
    no space at either end (a run may start or end with the text's whitespace, a value should not), and the
    property's pattern and lengths."""
    constraints = [_NO_EDGE_SPACE, *([_whole_match(spec["pattern"])] if "pattern" in spec else [])]
    if "minLength" in spec or "maxLength" in spec:
        constraints.append(f".{{{spec.get('minLength', 0)},{spec.get('maxLength', '')}}}")
    return constraints


def _whole_match(pattern: str) -> str:
    """A JSON Schema ``pattern``, which may match anywhere in a value, as a Lark regex for the whole value.

    In each top-level alternative, ``^`` and ``$`` at its ends become the regex's own ends; an end without its
    anchor becomes ``.*``. (Anchors elsewhere are not supported: the grammar check then refuses the schema.)
    """
    alternatives = []
    for body in _top_level_alternatives(regex_to_lark(pattern, "dw")):  # JSON Schema's \d, \w: ASCII only
        start = body.startswith("^")
        trailing_backslashes = len(body[:-1]) - len(body[:-1].rstrip("\\"))
        end = body.endswith("$") and trailing_backslashes % 2 == 0 and len(body) > int(start)
        body = body[int(start) : len(body) - int(end)]
        alternatives.append(("" if start else ".*") + f"(?:{body})" + ("" if end else ".*"))
    return "|".join(alternatives)


def _top_level_alternatives(regex: str) -> list[str]:
    """``regex`` cut at its ``|`` that are outside groups and character classes."""
    parts, depth, in_class, escaped, begin = [], 0, False, False, 0
    for index, char in enumerate(regex):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            parts.append(regex[begin:index])
            begin = index + 1
    return parts + [regex[begin:]]


def _strip(message: str) -> str:
    return message.removeprefix("WARNING: ").removeprefix("Warning: ").strip()


def load_schema_text(text: str, origin: str) -> dict[str, Any]:
    """Parse a schema file's text, with an error that names the file and the position."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"{origin} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            "a schema file holds one JSON Schema object",
        ) from exc
    if not isinstance(value, dict):
        raise SchemaError(f"{origin} does not hold a JSON object", "a schema file holds one JSON Schema object")
    return value


def canonical_json(value: Any, schema: dict[str, Any] | None = None) -> str:
    """The compact JSON text of ``value`` with object keys in the schema's property order.

    This is the text the grammar lets the model write; train adapters on it.
    """
    return json.dumps(_order(value, schema or {}), ensure_ascii=False, separators=(",", ":"))


def _order(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        keys = [k for k in props if k in value] + [k for k in value if k not in props]
        extra = schema.get("additionalProperties", {}) if isinstance(schema, dict) else {}
        return {k: _order(value[k], props.get(k, extra if isinstance(extra, dict) else {})) for k in keys}
    if isinstance(value, list):
        items = schema.get("items", {}) if isinstance(schema, dict) else {}
        return [_order(v, items if isinstance(items, dict) else {}) for v in value]
    return value
