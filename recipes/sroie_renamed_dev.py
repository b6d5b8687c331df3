"""Dev receipts renamed to other shops, to measure how the invoice task copies names and addresses it never saw.

The dev split that ``gemmapipe train --dev-fraction 0.05 --seed 0`` holds out of SROIE's train split (the built-in
adapter's) mostly holds shops the adapter trained on, so it measures recall more than copying. This writes each of
those dev receipts --draws times into ``--out/dev_renamed.jsonl``, each time with its company and address swapped,
where its text prints them, for those of other training receipts (``gemmapipe.augment.swap_values`` with every value
swapped: in the text and the answer alike; a value printed over three lines is replaced over three lines). Receipts
whose text prints neither value are left out. The date and total stay as they were.

Score an adapter on it with ``gemmapipe eval --task invoice --data OUT/dev_renamed.jsonl``. The test split is never
read. Usage: python recipes/sroie_renamed_dev.py --out /tmp/renamed
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from gemmapipe.augment import swap_values
from gemmapipe.resources import builtin_schema
from gemmapipe.labelled import read_labelled
from gemmapipe.labelled import split_dev

Pair = tuple[str, dict[str, Any]]  # (text, expected), as read_labelled gives them

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sroie" / "train.jsonl"
RENAMED_FIELDS = ("company", "address")


def renamed(dev: list[Pair], donors: list[Pair], draws: int, seed: int) -> list[Pair]:
    """Every dev receipt ``draws`` times with its company and address taken from ``donors``; unchanged ones left out."""
    properties = builtin_schema("invoice")["properties"]
    schema = {"type": "object", "properties": {field: properties[field] for field in RENAMED_FIELDS}}
    out: list[Pair] = []
    for draw in range(draws):
        swapped = swap_values(dev, schema, random.Random(seed + draw), probability=1.0, donors=donors)
        out.extend(new for old, new in zip(dev, swapped) if new != old)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    from split_files import write_files  # recipes/ is on sys.path when this file runs as a script

    train, dev = split_dev(read_labelled(args.data), 0.05, 0)  # as gemmapipe train --dev-fraction 0.05 --seed 0
    records = renamed(dev, train, args.draws, args.seed)
    write_files(args.out, {"dev_renamed": [{"text": text, "expected": expected} for text, expected in records]})


if __name__ == "__main__":
    main()
