"""Plugin loading: built-in plugins, then third-party ones from the ``gemmapipe`` entry-point group.

Environment variables:

- ``GEMMAPIPE_DISABLE_PLUGINS=a,b``: do not load these plugins (entry-point names, or built-in module names).
- ``GEMMAPIPE_LOAD_PLUGINS=a,b``: load only these third-party plugins (tests set it to empty to load none).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, warn
from .tasks import Registry, Task, TaskKind

DISABLE_ENV = "GEMMAPIPE_DISABLE_PLUGINS"
LOAD_ENV = "GEMMAPIPE_LOAD_PLUGINS"
ENTRY_POINT_GROUP = "gemmapipe"

DEFAULT_PLUGINS = (
    "gemmapipe.default_plugins.kinds",
    "gemmapipe.default_plugins.builtin_tasks",
    "gemmapipe.default_plugins.engines",
    "gemmapipe.default_plugins.training_commands",
    "gemmapipe.default_plugins.ray_commands",
)


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin, for ``gemmapipe plugins``."""

    name: str
    module: str
    package: str | None
    version: str | None
    hooks: tuple[str, ...]


class Plugins:
    """The plugin manager plus what was learned while loading: where each plugin came from, what failed."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("gemmapipe")
        self.pm.add_hookspecs(hookspecs)
        self.origins: dict[str, tuple[str | None, str | None]] = {}
        self.failures: dict[str, str] = {}
        self._registry: Registry | None = None

    def load(self) -> Plugins:
        disabled = _names(os.environ.get(DISABLE_ENV))
        for module_name in DEFAULT_PLUGINS:
            if module_name not in disabled:
                self._add(module_name, importlib.import_module(module_name), None, None)
        allowed = _names(os.environ[LOAD_ENV]) if LOAD_ENV in os.environ else None
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled or (allowed is not None and ep.name not in allowed) or ep.name in self.origins:
                continue
            dist = getattr(ep, "dist", None)
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party package must not break the command
                self._fail(ep.name, f"could not be imported: {type(exc).__name__}: {exc}")
                continue
            self._add(ep.name, module, dist.name if dist else None, dist.version if dist else None)
        return self

    def _add(self, name: str, module: Any, package: str | None, version: str | None) -> None:
        try:
            self.pm.register(module, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            self._fail(name, f"is invalid: {exc}")
            return
        self.origins[name] = (package, version)

    def _fail(self, name: str, message: str) -> None:
        self.failures[name] = message
        warn(f"plugin {name!r} {message}; its tasks are unavailable (disable it with {DISABLE_ENV}={name})")

    def registry(self) -> Registry:
        """Kinds, tasks and engines from every plugin; built once. Raises PluginError on duplicate kind names and
        compute types; a task name registered twice warns here and is refused only where it is used."""
        if self._registry is None:
            registry = Registry(failures=self.failures)
            self._call("register_task_kinds", lambda plugin: lambda kind: registry.add_kind(_owned(kind, plugin)))
            self._call(
                "register_tasks", lambda plugin: lambda task: registry.add_task(_checked(task, plugin, registry))
            )
            self._call(
                "register_engines", lambda plugin: lambda engine: registry.add_engine(replace(engine, plugin=plugin))
            )
            for name in registry.conflicts:
                error = registry.conflict_error(name)
                warn(f"{error.message}; it is unavailable ({error.hint})")
            self._registry = registry
        return self._registry

    def _call(self, hook_name: str, make_register: Any) -> None:
        """Call each implementation on its own, so that one plugin's exception leaves the others working."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            kwargs = {"register": make_register(impl.plugin_name)}
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                self._fail(impl.plugin_name, f"raised in {hook_name}: {type(exc).__name__}: {exc}")

    def infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            package, version = self.origins.get(name, (None, None))
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or []))
            infos.append(PluginInfo(name, getattr(plugin, "__name__", repr(plugin)), package, version, hooks))
        return infos


def _owned(kind: TaskKind, plugin: str) -> TaskKind:
    return replace(kind, plugin=plugin)


def _checked(task: Task, plugin: str, registry: Registry) -> Task:
    if task.kind not in registry.kinds:
        raise PluginError(
            f"plugin {plugin!r} registers task {task.name!r} of unknown kind {task.kind!r}",
            f"known kinds: {', '.join(registry.kinds)}",
        )
    return replace(task, plugin=plugin)


def _names(value: str | None) -> set[str]:
    return {n.strip() for n in (value or "").split(",") if n.strip()}


_loaded: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugins, loaded on first call."""
    global _loaded
    if _loaded is None:
        _loaded = Plugins().load()
    return _loaded


def reset_plugins() -> None:
    """Forget loaded plugins (tests change the environment and reload)."""
    global _loaded
    _loaded = None
