"""The command line shared by the dataset generators in recipes/ (make_redact_data.py, make_log_severity_data.py,
make_logline_data.py).

Each generator has ``generate(train_size, test_size, seed) -> (train, test)``; :func:`main` parses ``--out``,
``--train-size``, ``--test-size`` and ``--seed`` (defaults: the generator's own) and writes ``train.jsonl`` and
``test.jsonl`` into ``--out``, one JSON record per line (:func:`write_files`, which recipes that split data
otherwise use too). The recipes that read a public dataset's repository (snips_slots.py, wikisplit.py) read its
files with :func:`read_source` and take ``--source``, ``--out`` and ``--seed`` through :func:`source_main`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

Records = list[dict[str, object]]


def main(description: str, generate: Callable[..., tuple[Records, Records]], default_out: Path) -> None:
    defaults = {name: p.default for name, p in inspect.signature(generate).parameters.items()}
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--train-size", type=int, default=defaults["train_size"])
    parser.add_argument("--test-size", type=int, default=defaults["test_size"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    args = parser.parse_args()
    train, test = generate(args.train_size, args.test_size, args.seed)
    write_files(args.out, {"train": train, "test": test})


def read_source(source: Path, path: str) -> str:
    """The text of ``path`` in a public dataset's repository: a checkout, or its bare git directory (``git show``)."""
    if (source / path).is_file():
        return (source / path).read_text(encoding="utf-8")
    return subprocess.run(["git", f"--git-dir={source}", "show", f"HEAD:{path}"], check=True, capture_output=True, text=True).stdout


def source_main(description: str, build: Callable[[Path, Path, int], None], repository: str) -> None:
    """The command line of the recipes that read a public dataset's repository: ``--source`` (a checkout or bare git
    directory of ``repository``), ``--out`` and ``--seed``; then ``build(source, out, seed)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", type=Path, required=True, help=f"a checkout (or bare git directory) of {repository}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.source, args.out, args.seed)


def write_files(out: Path, parts: dict[str, Records]) -> None:
    """Each part as ``<out>/<name>.jsonl``, one JSON record per line, and a line on stdout saying so."""
    out.mkdir(parents=True, exist_ok=True)
    for name, records in parts.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{out / (name + '.jsonl')}: {len(records)} records")
