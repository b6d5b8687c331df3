"""The README's promises: its test command is what CI runs, and the documented exit codes are the real ones."""

from __future__ import annotations

from pathlib import Path

from gemmapipe import cli

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    command = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if "pytest" in line][0].strip()
    assert command in readme


def test_exit_codes_are_documented():
    readme = (REPO / "README.md").read_text()
    for code in (cli.EXIT_OK, cli.EXIT_RECORDS_FAILED, cli.EXIT_USAGE, cli.EXIT_SETUP, cli.EXIT_WRITE_FAILED, cli.EXIT_INTERRUPTED,
                 cli.EXIT_OUTPUT_CLOSED, cli.EXIT_TERMINATED):
        assert f"| {code} |" in readme


def test_every_hook_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    from gemmapipe import hookspecs

    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert hooks and all(f"`{h}(" in readme for h in hooks)
