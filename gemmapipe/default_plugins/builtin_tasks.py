"""The built-in tasks. Their schemas are in the top-level ``schemas/`` folder; adapters in ``gemmapipe/adapters``."""

from __future__ import annotations

from collections.abc import Callable

from ..hookspecs import hookimpl
from ..resources import builtin_adapter, builtin_schema
from ..tasks import Task

INVOICE_INSTRUCTION = "Extract the company, date, address and total of this receipt as JSON."
BANKING77_INSTRUCTION = "Classify the intent of this banking customer message."
REDACT_INSTRUCTION = (
    "Rewrite the text with personal data replaced: names by [NAME], emails by [EMAIL], phone numbers by "
    "[PHONE], card and account numbers by [NUMBER], street addresses by [ADDRESS]."
)


@hookimpl
def register_tasks(register: Callable[[Task], None]) -> None:
    register(
        Task(
            "invoice",
            "extract",
            builtin_schema("invoice"),
            INVOICE_INSTRUCTION,
            adapter=builtin_adapter("invoice"),
            description="company, date, address and total of a receipt (SROIE)",
            max_new_tokens=160,
            schema_source="schemas/invoice.json",
        )
    )
    register(
        Task(
            "banking77",
            "classify",
            builtin_schema("banking77"),
            BANKING77_INSTRUCTION,
            adapter=builtin_adapter("banking77"),
            description="intent of an online-banking customer message, one of 77 (Banking77)",
            max_new_tokens=32,
            schema_source="schemas/banking77.json",
        )
    )
    register(
        Task(
            "redact",
            "rewrite",
            builtin_schema("redact"),
            REDACT_INSTRUCTION,
            adapter=builtin_adapter("redact"),
            description="the text with names, emails, phones, numbers and addresses replaced by placeholders",
            max_new_tokens=384,
            schema_source="schemas/redact.json",
        )
    )
