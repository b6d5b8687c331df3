"""Error types of gemmapipe. Every error carries a message (what went wrong) and a hint (what to do)."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """A warning on stderr, in the one form every command uses (``gemmapipe: warning: ...``)."""
    print(f"gemmapipe: warning: {message}", file=sys.stderr)


class GemmapipeError(Exception):
    """Base class: ``message`` says what went wrong, ``hint`` what the user can do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class SetupError(GemmapipeError):
    """The model, cache or an adapter could not be prepared or loaded."""

    exit_code = 3


class SchemaError(GemmapipeError):
    """A JSON Schema is invalid or cannot be turned into a grammar."""

    exit_code = 2


class PluginError(GemmapipeError):
    """A plugin failed to load, or two plugins disagree (for instance on a task name)."""

    exit_code = 3


class TaskNotFound(GemmapipeError):
    """No registered task has the requested name."""

    exit_code = 2


class ComputeTypeError(GemmapipeError):
    """The requested compute type is not available on this device."""

    exit_code = 2


class MissingExtra(GemmapipeError):
    """An optional dependency a command needs is not installed (the hint names the extra)."""

    exit_code = 2


class UsageError(GemmapipeError):
    """The command was asked for something it cannot do as asked (options that exclude each other, a file it cannot
    write, data that does not fit): a usage error, exit 2 like click's own."""

    exit_code = 2
