"""Command-line options that several commands share, declared once (the run commands, ``eval`` and ``train``).

Each is a decorator that adds its options to a click command in the order listed, so a command's ``--help`` reads
the same wherever an option appears.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .models import COMPUTE_TYPES

F = TypeVar("F", bound=Callable[..., Any])

_EXISTING_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
_EXISTING_FOLDER = click.Path(file_okay=False, exists=True, path_type=Path)


def apply_options(options: list[Callable[[F], F]], f: F) -> F:
    """Add ``options`` (click decorators) to ``f`` so that they appear in ``--help`` in the order listed."""
    for option in reversed(options):
        f = option(f)
    return f


def adapter_options(f: F) -> F:
    """``--examples``, ``--adapter``, ``--no-adapter``: what the model is given besides the task's prompt."""
    return apply_options(
        [
            click.option(
                "--examples",
                type=_EXISTING_FILE,
                help='JSONL of {"text", "expected"} few-shot examples put in every prompt (with --no-adapter: a few-shot baseline).',
            ),
            click.option(
                "--adapter", type=_EXISTING_FOLDER, help="A LoRA adapter folder to use instead of the task's own."
            ),
            click.option(
                "--no-adapter", is_flag=True, help="Run the base model without the task's adapter (a baseline)."
            ),
        ],
        f,
    )


def engine_options(f: F) -> F:
    """``--batch-size``, ``--threads``, ``--compute-type``: how the engine runs."""
    return apply_options(
        [
            click.option(
                "--batch-size",
                type=click.IntRange(1, 256),
                default=16,
                show_default=True,
                help="Records decoded together.",
            ),
            click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads [default: all cores]."),
            click.option(
                "--compute-type",
                default="int8",
                show_default=True,
                help=f"One of {', '.join(COMPUTE_TYPES)} (CTranslate2), or int4 (llama.cpp: pip install 'gemmapipe[int4]').",
            ),
        ],
        f,
    )


def labelled_task_options(data_help: str, task_help: str = "A registered task.") -> Callable[[F], F]:
    """``--task`` or ``--schema`` with ``--kind``, and ``--data``: a task and its labelled records (``eval``, ``train``)."""

    def decorate(f: F) -> F:
        return apply_options(
            [
                click.option("--task", "task_name", help=task_help),
                click.option("--schema", type=_EXISTING_FILE, help="Or an ad-hoc schema file."),
                click.option("--kind", default="extract", show_default=True, help="Kind of the ad-hoc schema."),
                click.option("--data", type=_EXISTING_FILE, required=True, help=data_help),
            ],
            f,
        )

    return decorate
