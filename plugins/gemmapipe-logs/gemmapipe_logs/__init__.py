"""gemmapipe plugin: tasks for log pipelines."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from gemmapipe import hookimpl
from gemmapipe.tasks import Task

SEVERITIES = ["debug", "info", "notice", "warning", "error", "critical"]


def _schema(name: str) -> dict:
    return json.loads(files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))


def _adapter(name: str) -> Path | None:
    """The adapter shipped in this package for ``name`` (``adapters/<name>``), if one has been trained."""
    folder = Path(__file__).resolve().parent / "adapters" / name
    return folder if (folder / "adapter_model.safetensors").is_file() else None


@hookimpl
def register_tasks(register: Callable[[Task], None]) -> None:
    """Register ``logline`` (extract) and ``log-severity`` (classify)."""
    register(
        Task(
            "logline",
            "extract",
            _schema("logline"),
            "Parse this log line (web-server access log or syslog) into its fields as JSON; null where absent.",
            description="fields of a web-server or syslog line",
            max_new_tokens=200,
            adapter=_adapter("logline"),
            schema_source="gemmapipe_logs/logline.schema.json",
        )
    )
    register(
        Task(
            "log-severity",
            "classify",
            {
                "type": "object",
                "properties": {"severity": {"enum": SEVERITIES}},
                "required": ["severity"],
                "additionalProperties": False,
            },
            "Classify the severity of this log line.",
            description="severity of a log line: " + ", ".join(SEVERITIES),
            max_new_tokens=16,
            adapter=_adapter("log-severity"),
            schema_source="(inline)",
        )
    )
