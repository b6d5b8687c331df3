"""Prompt formats: how a task turns a record into the tokens the model reads.

A prompt is a list of pieces: plain text, or :class:`Special` tokens such as ``<start_of_turn>``. Special
tokens are never parsed out of text, so a record that contains the string ``<end_of_turn>`` cannot end the
user's turn early. Training and inference build prompts with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Special:
    """A special token, by its name in the vocabulary (for instance ``<start_of_turn>``)."""

    name: str


BOS = Special("<bos>")
START_OF_TURN = Special("<start_of_turn>")
END_OF_TURN = Special("<end_of_turn>")

Piece = str | Special
Prompt = list[Piece]


@dataclass(frozen=True)
class Request:
    """One record for an engine to answer: its prompt, and its input text (``source``), from which a schema's
    copied properties (``x-copy-from-input``) take their values. :meth:`gemmapipe.tasks.Task.request` builds both."""

    prompt: Prompt
    source: str | None = None


def as_request(item: Request | Prompt) -> Request:
    """A :class:`Request`; a bare prompt becomes one without a source."""
    return item if isinstance(item, Request) else Request(item)


#: Version of the layout below; adapters record it and the engine refuses a mismatch.
PROMPT_FORMAT = "gemma-turns-v1"


def chat_prompt(instruction: str, text: str, examples: list[tuple[str, str]] | None = None) -> Prompt:
    """Gemma's turn layout: an optional series of (input, answer) example turns, then the record.

    ``instruction`` opens every user turn; the model answers after ``<start_of_turn>model\\n``.
    """
    pieces: Prompt = [BOS]
    for example_text, example_answer in examples or []:
        pieces += _user_turn(instruction, example_text)
        pieces += [START_OF_TURN, "model\n" + example_answer, END_OF_TURN, "\n"]
    pieces += _user_turn(instruction, text)
    pieces += [START_OF_TURN, "model\n"]
    return pieces


def _user_turn(instruction: str, text: str) -> Prompt:
    return [START_OF_TURN, f"user\n{instruction}\n\n{text}", END_OF_TURN, "\n"]


def describe_schema(schema: dict[str, Any]) -> str:
    """A short description of the fields a schema asks for, for instructions of ad-hoc tasks."""
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return ""
    parts = []
    for name, sub in props.items():
        sub = sub if isinstance(sub, dict) else {}
        kind = sub.get("type", "value")
        note = sub.get("description")
        if "enum" in sub:
            kind = "one of " + ", ".join(str(v) for v in sub["enum"][:20])
        parts.append(f"{name} ({kind}{'; ' + note if note else ''})")
    return "Fields: " + "; ".join(parts) + "."
