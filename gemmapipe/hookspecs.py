"""Hook specifications: what a gemmapipe plugin can implement.

A plugin is a module with functions marked ``@gemmapipe.hookimpl`` whose names are hooks below. Built-in
kinds and tasks are registered through these same hooks. Hooks only grow by new arguments; an
implementation may accept fewer arguments than the spec lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .engines import EngineKind
    from .tasks import Task, TaskKind

hookspec = pluggy.HookspecMarker("gemmapipe")
hookimpl = pluggy.HookimplMarker("gemmapipe")


# -- registration (called once per process, when the command line is built) --------------------------------


@hookspec
def register_task_kinds(register: Callable[[TaskKind], None]) -> None:
    """Register task kinds; each becomes a subcommand (``gemmapipe extract``...).

    Called once per process, before :func:`register_tasks`. Every implementation is called.

    :param register: call it with a :class:`gemmapipe.tasks.TaskKind` for every kind this plugin adds. A kind
        name that another plugin also registers is an error that names both plugins.
    """


@hookspec
def register_tasks(register: Callable[[Task], None]) -> None:
    """Register tasks (a kind + name + JSON Schema + optional adapter + prompt).

    Called once per process, after every plugin's :func:`register_task_kinds`. Every implementation is
    called. A plugin that raises is reported on stderr and its tasks are left out; other plugins still work.

    :param register: call it with a :class:`gemmapipe.tasks.Task` for every task this plugin adds. Task names
        are global: a name that another plugin also registers is an error that names both plugins. The task's
        ``kind`` must be a registered kind.
    """


@hookspec
def register_engines(register: Callable[[EngineKind], None]) -> None:
    """Register engines: each runs some compute types (``--compute-type``) behind
    :class:`gemmapipe.engines.TextEngine`, so the pipe, ``eval`` and every task use it unchanged.

    Called once per process, when the first engine is loaded. Every implementation is called. A plugin that raises
    is reported on stderr and its engines are left out.

    :param register: call it with a :class:`gemmapipe.engines.EngineKind` for every engine this plugin adds: its
        name, its compute types, a loader and, if its model is built on first use, a preparer (``gemmapipe
        prepare`` and the Ray command call it before loading). A compute type that another plugin also registers is an error that
        names both plugins. The engine's answers must go through :func:`gemmapipe.engine.schema_checked` (or
        :func:`gemmapipe.engine.finish_generation`), so that none reaches the user unvalidated.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``gemmapipe`` command line.

    Called once per process when the command line is built. Every implementation is called.

    :param cli: the top-level click group; use ``@cli.command()`` to add commands.
    """
