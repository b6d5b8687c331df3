"""JSON Schema -> llguidance grammar, output validation, and the canonical JSON text the grammar produces.

The grammar is compact: no optional whitespace, ``,`` and ``:`` as separators, properties in the schema's
order. :func:`canonical_json` writes exactly that text, so adapters are trained on what decoding produces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from llguidance import LLMatcher

from .errors import SchemaError

#: Compact JSON: the one text the grammar allows for a value, so the model never wastes tokens on layout.
COMPILE_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


@dataclass(frozen=True)
class CompiledSchema:
    """A JSON Schema ready for decoding: the llguidance grammar, a validator, and what the grammar leaves out.

    ``unenforced`` lists the schema keywords that the grammar could not enforce. Outputs are still validated
    against the full schema, so an output that breaks one of them becomes an error result, never bad output.
    """

    schema: dict[str, Any]
    grammar: str
    unenforced: tuple[str, ...] = ()
    validator: Draft202012Validator = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def errors(self, value: Any) -> list[str]:
        """Messages for every way ``value`` breaks the schema (empty when it is valid)."""
        return [_describe(e) for e in self.validator.iter_errors(value)]


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def compile_schema(schema: dict[str, Any]) -> CompiledSchema:
    """Check ``schema`` (draft 2020-12) and compile it; raise :class:`SchemaError` with a hint when impossible."""
    if not isinstance(schema, dict):
        raise SchemaError("a JSON Schema must be a JSON object", "wrap it as {\"type\": ..., ...}")
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"invalid JSON Schema: {_describe(exc)}", "fix the schema; see https://json-schema.org") from exc
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
    return CompiledSchema(schema=schema, grammar=grammar, unenforced=tuple(unenforced), validator=validator)


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
