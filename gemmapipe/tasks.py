"""Tasks and task kinds: what plugins register and what the command runs.

A :class:`TaskKind` (``extract``, ``classify``, ``rewrite``...) becomes a subcommand. A :class:`Task` is a
kind + name + JSON Schema + optional LoRA adapter + prompt (instruction and optional examples).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PluginError, SchemaError, TaskNotFound
from .grammar import CompiledSchema, canonical_json, compile_schema, load_schema_text
from .prompts import Prompt, Request, chat_prompt, describe_schema
from .vocabulary import fixed_answers

if TYPE_CHECKING:
    from .engines import EngineKind


@dataclass(frozen=True)
class TaskKind:
    """A family of tasks with its own subcommand, e.g. ``extract``.

    ``instruction`` builds the instruction for an ad-hoc ``--schema FILE.json`` from that schema (which runs the
    base model, or the adapter given with ``--adapter``).
    """

    name: str
    help: str
    instruction: Callable[[dict[str, Any]], str]
    plugin: str = ""


@dataclass(frozen=True)
class Task:
    """One runnable task. Fields:

    - ``schema``: the JSON Schema every answer validates against (draft 2020-12).
    - ``instruction``: opens the prompt; an adapter is trained with it, so keep it fixed once trained.
    - ``adapter``: a PEFT LoRA folder (see ``gemmapipe train``); ``None`` runs the base model.
    - ``examples``: few-shot (input text, answer value) pairs put in the prompt before the record.
    - ``input_text``: builds the model's input from a JSON record (default: the text field alone); it lets a
      task use the record's other fields.
    """

    name: str
    kind: str
    schema: dict[str, Any]
    instruction: str
    adapter: Path | None = None
    examples: tuple[tuple[str, Any], ...] = ()
    description: str = ""
    max_new_tokens: int | None = None
    input_text: Callable[[str, Mapping[str, Any] | None], str] | None = None
    plugin: str = ""
    schema_source: str = ""

    @cached_property
    def compiled(self) -> CompiledSchema:
        return compile_schema(self.schema)

    @cached_property
    def model_answers(self) -> tuple[str, ...] | None:
        """The answers to build this task's model for (``answers`` of :meth:`gemmapipe.engine.Engine.load`).

        All the answers the schema allows when they are few (a classifier's labels, see
        :func:`gemmapipe.vocabulary.fixed_answers`) and the task has its own adapter, hence its own model anyway;
        else None: the model shared by every task without an adapter."""
        return fixed_answers(self.schema) if self.adapter is not None else None

    def source(self, text: str, record: Mapping[str, Any] | None = None) -> str:
        """The model's input for one record (``text`` from the text field; ``record`` the whole JSON object if any).

        Copied properties (``x-copy-from-input``) take their values from it."""
        return self.input_text(text, record) if self.input_text else text

    def prompt(self, text: str, record: Mapping[str, Any] | None = None) -> Prompt:
        """The prompt for one record (``text`` from the text field; ``record`` the whole JSON object if any)."""
        return self.request(text, record).prompt

    def request(self, text: str, record: Mapping[str, Any] | None = None) -> Request:
        """What an engine answers for one record: its prompt and its source text (:meth:`prompt`, :meth:`source`)."""
        source = self.source(text, record)
        shots = [(t, canonical_json(v, self.schema)) for t, v in self.examples]
        return Request(chat_prompt(self.instruction, source, shots), source)

    def with_examples(self, examples: list[tuple[str, Any]]) -> Task:
        return replace(self, examples=tuple(examples))


def adhoc_task(kind: TaskKind, schema_path: Path, name: str | None = None) -> Task:
    """A task for a schema file that no plugin registered: the kind's generic instruction, no adapter."""
    try:
        text = schema_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"cannot read the schema file {schema_path}: {exc.strerror}", "check the path") from exc
    schema = load_schema_text(text, str(schema_path))
    return Task(
        name=name or schema_path.stem,
        kind=kind.name,
        schema=schema,
        instruction=kind.instruction(schema),
        description=f"ad-hoc schema {schema_path}",
        plugin="(ad-hoc)",
        schema_source=str(schema_path),
    )


def generic_instruction(verb: str) -> Callable[[dict[str, Any]], str]:
    """An instruction builder for ad-hoc schemas: the verb, then the fields the schema asks for."""

    def build(schema: dict[str, Any]) -> str:
        title = schema.get("title") or schema.get("description") or ""
        fields = describe_schema(schema)
        return " ".join(part for part in (verb, title, fields, "Answer with JSON.") if part)

    return build


@dataclass
class Registry:
    """Everything plugins registered: kinds, tasks and engines, and the plugins that failed to load."""

    kinds: dict[str, TaskKind] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    #: Task names that more than one plugin registers, with those plugins. Such a name is refused when used
    #: (which of the two was meant is unknown); every other task keeps working.
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    #: engines by the compute types they run
    engines: dict[str, EngineKind] = field(default_factory=dict)

    def add_kind(self, kind: TaskKind) -> None:
        if kind.name in self.kinds:
            other = self.kinds[kind.name].plugin
            raise PluginError(
                f"task kind {kind.name!r} is registered twice: by plugin {other!r} and by plugin {kind.plugin!r}",
                f"disable one of them with GEMMAPIPE_DISABLE_PLUGINS={kind.plugin}",
            )
        self.kinds[kind.name] = kind

    def add_engine(self, engine: EngineKind) -> None:
        for compute_type in engine.compute_types:
            if compute_type in self.engines:
                other = self.engines[compute_type].plugin
                raise PluginError(
                    f"compute type {compute_type!r} is registered twice: by plugin {other!r} and by plugin {engine.plugin!r}",
                    f"disable one of them with GEMMAPIPE_DISABLE_PLUGINS={engine.plugin}",
                )
        for compute_type in engine.compute_types:
            self.engines[compute_type] = engine

    def add_task(self, task: Task) -> None:
        if task.name in self.conflicts:
            self.conflicts[task.name].append(str(task.plugin))
        elif task.name in self.tasks:
            self.conflicts[task.name] = [str(self.tasks.pop(task.name).plugin), str(task.plugin)]
        else:
            self.tasks[task.name] = task

    def conflict_error(self, name: str) -> PluginError:
        plugins = self.conflicts[name]
        return PluginError(
            f"task {name!r} is registered twice: by plugin " + " and by plugin ".join(repr(p) for p in plugins),
            f"disable all but one of them, e.g. GEMMAPIPE_DISABLE_PLUGINS={plugins[-1]} (or {', '.join(plugins[:-1])})",
        )

    def task(self, name: str, kind: str | None = None) -> Task:
        """The task called ``name`` (of ``kind``, if given), or :class:`TaskNotFound` listing the choices.

        A name that several plugins register raises :class:`PluginError` naming them all."""
        if name in self.conflicts:
            raise self.conflict_error(name)
        task = self.tasks.get(name)
        if task is None or (kind is not None and task.kind != kind):
            choices = sorted(t.name for t in self.tasks.values() if kind is None or t.kind == kind)
            broken = f" (plugins that failed to load: {', '.join(self.failures)})" if self.failures else ""
            raise TaskNotFound(
                f"no {kind + ' ' if kind else ''}task named {name!r}{broken}",
                f"choose one of: {', '.join(choices) or '(none)'}, or pass a schema file: --schema path/to/schema.json",
            )
        return task
