"""The built-in task kinds: extract, classify, rewrite."""

from __future__ import annotations

from collections.abc import Callable

from ..hookspecs import hookimpl
from ..tasks import TaskKind, generic_instruction


@hookimpl
def register_task_kinds(register: Callable[[TaskKind], None]) -> None:
    register(
        TaskKind(
            "extract",
            "Extract structured fields from text (receipts, invoices, log lines...).",
            generic_instruction("Extract these fields from the text."),
        )
    )
    register(
        TaskKind(
            "classify",
            "Put each text into one of a fixed set of labels.",
            generic_instruction("Classify the text."),
        )
    )
    register(
        TaskKind(
            "rewrite",
            "Rewrite each text (redact, normalise, translate...) into a JSON object.",
            generic_instruction("Rewrite the text as described."),
        )
    )
