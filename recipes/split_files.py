"""The command line shared by the dataset generators in recipes/ (make_redact_data.py, make_log_severity_data.py,
make_logline_data.py).

Each generator has ``generate(train_size, test_size, seed) -> (train, test)``; :func:`main` parses ``--out``,
``--train-size``, ``--test-size`` and ``--seed`` (defaults: the generator's own) and writes ``train.jsonl`` and
``test.jsonl`` into ``--out``, one JSON record per line (:func:`write_files`, which recipes that split data
otherwise use too).
"""

from __future__ import annotations

import argparse
import inspect
import json
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


def write_files(out: Path, parts: dict[str, Records]) -> None:
    """Each part as ``<out>/<name>.jsonl``, one JSON record per line, and a line on stdout saying so."""
    out.mkdir(parents=True, exist_ok=True)
    for name, records in parts.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{out / (name + '.jsonl')}: {len(records)} records")
