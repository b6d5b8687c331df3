"""Plugin discovery through entry points, collisions, failures and disabling."""

from __future__ import annotations

import json
import textwrap

import pytest

from gemmapipe.plugins import reset_plugins


def install_fake_plugin(tmp_path, monkeypatch, name: str, body: str) -> None:
    """A plugin package as pip would leave it: a module plus a dist-info with a ``gemmapipe`` entry point."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / f"{name}.py").write_text(textwrap.dedent(body))
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[gemmapipe]\n{name} = {name}\n")
    monkeypatch.syspath_prepend(str(site))
    reset_plugins()


TASK_PLUGIN = """
from gemmapipe import hookimpl
from gemmapipe.tasks import Task

@hookimpl
def register_tasks(register):
    register(Task("{task}", "classify", {{"type": "object", "properties": {{"yes": {{"type": "boolean"}}}},
                  "required": ["yes"], "additionalProperties": False}}, "Is it true?"))
"""


def test_installed_plugin_package_is_discovered(gemmapipe_run):
    """plugins/gemmapipe-logs is pip-installed by the test command, like a stranger's package."""
    rows = {r["name"]: r for r in map(json.loads, gemmapipe_run(["plugins", "--json"]).stdout.splitlines())}
    assert rows["logs"]["package"] == "gemmapipe-logs"
    assert "register_tasks" in rows["logs"]["hooks"]


def test_fake_plugin_adds_a_runnable_task(gemmapipe_run, tmp_path, monkeypatch):
    install_fake_plugin(tmp_path, monkeypatch, "gp_truth", TASK_PLUGIN.format(task="truth"))
    rows = {r["name"]: r for r in map(json.loads, gemmapipe_run(["tasks", "--json"]).stdout.splitlines())}
    assert rows["truth"]["plugin"] == "gp_truth"
    result = gemmapipe_run(["classify", "-s", "truth"], input="the sky is green\n")
    assert result.exit_code == 0 and isinstance(json.loads(result.stdout)["yes"], bool)


def test_duplicate_task_names_name_both_plugins(gemmapipe_run, tmp_path, monkeypatch):
    install_fake_plugin(tmp_path, monkeypatch, "gp_dup", TASK_PLUGIN.format(task="invoice"))
    # the name is refused where it is used: which of the two tasks was meant is unknown
    result = gemmapipe_run(["extract", "-s", "invoice", "--no-adapter"], input="Invoice from Acme, total 3.00\n")
    assert result.exit_code == 3 and result.stdout == ""
    assert "'invoice' is registered twice" in result.stderr
    assert "gemmapipe.default_plugins.builtin_tasks" in result.stderr and "gp_dup" in result.stderr
    assert "GEMMAPIPE_DISABLE_PLUGINS" in result.stderr
    # everything else keeps working, with a warning that names both plugins (and `plugins` can diagnose it)
    reset_plugins()  # as a new process would: the warning comes when the plugins load
    listing = gemmapipe_run(["tasks", "--json"])
    assert listing.exit_code == 0 and "'invoice' is registered twice" in listing.stderr
    names = [r["name"] for r in map(json.loads, listing.stdout.splitlines())]
    assert "invoice" not in names and "banking77" in names
    plugins = gemmapipe_run(["plugins", "--json"])
    assert plugins.exit_code == 0 and "gp_dup" in [r["name"] for r in map(json.loads, plugins.stdout.splitlines())]


def test_disabling_a_plugin_by_name(gemmapipe_run, tmp_path, monkeypatch):
    install_fake_plugin(tmp_path, monkeypatch, "gp_dup2", TASK_PLUGIN.format(task="invoice"))
    monkeypatch.setenv("GEMMAPIPE_DISABLE_PLUGINS", "gp_dup2")
    reset_plugins()
    result = gemmapipe_run(["tasks", "--json"])
    assert result.exit_code == 0
    names = [r["name"] for r in map(json.loads, result.stdout.splitlines())]
    assert names.count("invoice") == 1


def test_loading_only_some_third_party_plugins(gemmapipe_run, tmp_path, monkeypatch):
    install_fake_plugin(tmp_path, monkeypatch, "gp_one", TASK_PLUGIN.format(task="one"))
    install_fake_plugin(tmp_path, monkeypatch, "gp_two", TASK_PLUGIN.format(task="two"))
    monkeypatch.setenv("GEMMAPIPE_LOAD_PLUGINS", "gp_one")
    reset_plugins()
    names = [r["name"] for r in map(json.loads, gemmapipe_run(["tasks", "--json"]).stdout.splitlines())]
    assert "one" in names and "two" not in names and "banking77" in names  # built-ins always load
    loaded = [r["name"] for r in map(json.loads, gemmapipe_run(["plugins", "--json"]).stdout.splitlines())]
    assert "gp_one" in loaded and "gp_two" not in loaded and "logs" not in loaded


@pytest.mark.parametrize(
    "name, body, message",
    [
        ("gp_broken_import", "raise RuntimeError('import went wrong')", "could not be imported: RuntimeError: import went wrong"),
        ("gp_broken_hook", "from gemmapipe import hookimpl\n@hookimpl\ndef register_tasks(register):\n    raise ValueError('bad plugin')\n",
         "raised in register_tasks: ValueError: bad plugin"),
        ("gp_broken_name", "from gemmapipe import hookimpl\n@hookimpl\ndef register_taskz(register):\n    pass\n", "is invalid"),
    ],
)
def test_a_broken_plugin_is_reported_and_the_rest_works(gemmapipe_run, tmp_path, monkeypatch, name, body, message):
    install_fake_plugin(tmp_path, monkeypatch, name, body)
    result = gemmapipe_run(["tasks", "--json"])
    assert result.exit_code == 0
    assert f"plugin '{name}'" in result.stderr and message in result.stderr
    assert f"GEMMAPIPE_DISABLE_PLUGINS={name}" in result.stderr
    assert "invoice" in result.stdout
    missing = gemmapipe_run(["classify", "-s", "truth"], input="x\n")
    assert missing.exit_code == 2 and f"failed to load: {name}" in missing.stderr


def test_unknown_kind_is_an_error(gemmapipe_run, tmp_path, monkeypatch):
    install_fake_plugin(tmp_path, monkeypatch, "gp_kind", TASK_PLUGIN.format(task="t").replace('"classify"', '"summarise"'))
    result = gemmapipe_run(["tasks"])
    assert result.exit_code == 3 and "unknown kind 'summarise'" in result.stderr


def test_builtins_use_the_public_hooks():
    """Built-in kinds and tasks come through the same hook names third-party plugins implement."""
    from gemmapipe import hookspecs
    from gemmapipe.default_plugins import builtin_tasks, kinds

    assert hasattr(hookspecs, "register_task_kinds") and hasattr(kinds, "register_task_kinds")
    assert hasattr(hookspecs, "register_tasks") and hasattr(builtin_tasks, "register_tasks")
    from gemmapipe.default_plugins import engines

    assert hasattr(hookspecs, "register_engines") and hasattr(engines, "register_engines")


def test_every_hook_is_documented():
    from gemmapipe import hookspecs

    for name in ("register_task_kinds", "register_tasks", "register_engines", "register_commands"):
        doc = getattr(hookspecs, name).__doc__
        assert doc and ":param" in doc and "Called" in doc


def test_check_task_fixture_runs_a_task_whose_adapter_needs_the_real_base(gemmapipe_check_task):
    # banking77's adapter was trained on the real Gemma 3 270M; merging it into the tiny model would fail, so the
    # plugin authors' fixture checks the task's schema and prompt without it
    results = gemmapipe_check_task("banking77", ["my card has not arrived yet"])
    assert len(results) == 1 and results[0].ok


ENGINE_PLUGIN = """
from gemmapipe import hookimpl
from gemmapipe.engines import EngineKind
from gemmapipe.testing import FakeEngine

def load(adapter, compute_type, threads, store, answers):
    return FakeEngine(lambda request: {{"label": "{label}"}})

@hookimpl
def register_engines(register):
    register(EngineKind("echo", ("{compute_type}",), load, "answers every record alike"))
"""


def test_a_plugin_engine_runs_every_task_through_the_same_pipe(gemmapipe_run, tmp_path, monkeypatch, label_schema):
    """A third party's engine, chosen with --compute-type: its answers go through the same records, checks and exit
    codes (an answer that breaks the schema is an error record, exit 1)."""
    install_fake_plugin(tmp_path, monkeypatch, "gp_echo", ENGINE_PLUGIN.format(label="spam", compute_type="echo8"))
    rows = {r["name"]: r for r in map(json.loads, gemmapipe_run(["plugins", "--json"]).stdout.splitlines())}
    assert "register_engines" in rows["gp_echo"]["hooks"]
    result = gemmapipe_run(["classify", "-s", label_schema, "--compute-type", "echo8", "--envelope"], input="a\nb\n")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["result"] for line in result.stdout.splitlines()] == [{"label": "spam"}] * 2
    assert json.loads(result.stdout.splitlines()[0])["provenance"]["compute_type"] == "echo8"
    (tmp_path / "b").mkdir()
    install_fake_plugin(tmp_path / "b", monkeypatch, "gp_echo_bad", ENGINE_PLUGIN.format(label="eggs", compute_type="echo9"))
    broken = gemmapipe_run(["classify", "-s", label_schema, "--compute-type", "echo9"], input="a\n")
    assert broken.exit_code == 1 and broken.stdout == "" and '"schema_violation"' in broken.stderr


def test_a_compute_type_registered_twice_names_both_plugins(gemmapipe_run, tmp_path, monkeypatch, label_schema):
    install_fake_plugin(tmp_path, monkeypatch, "gp_int4", ENGINE_PLUGIN.format(label="spam", compute_type="int4"))
    result = gemmapipe_run(["classify", "-s", label_schema, "--compute-type", "int4"], input="a\n")
    assert result.exit_code == 3 and "'int4' is registered twice" in result.stderr
    assert "gemmapipe.default_plugins.engines" in result.stderr and "gp_int4" in result.stderr


def test_an_unknown_compute_type_lists_the_registered_ones(gemmapipe_run, label_schema):
    result = gemmapipe_run(["classify", "-s", label_schema, "--compute-type", "int3"], input="a\n")
    assert result.exit_code == 2 and "unknown compute type 'int3'" in result.stderr
    assert "int8, int8_float32, float32, int4" in result.stderr
