"""Split SROIE's train split by vendor, to measure how the invoice task does on shops it has never seen.

A random dev split of SROIE flatters an adapter: 462 of the 626 training receipts share their shop (the company
label) with another receipt, so most dev receipts come from shops the adapter has learnt by heart. This writes,
into --out:

- ``rest.jsonl``: the training receipts of every shop not held out (train on this);
- ``dev_unseen.jsonl``: every receipt of shops drawn at random (seeded; shops with at most 5 receipts, until at
  least --size receipts), none of which ``rest.jsonl`` holds;
- ``dev_seen.jsonl``: the dev split ``gemmapipe train --dev-fraction 0.05 --seed 0`` holds out of ``rest.jsonl``
  (mostly shops the rest has).

Then train on ``rest.jsonl`` and score both dev files with ``gemmapipe eval``. The test split is never read.
Usage: python recipes/sroie_vendor_split.py --out /tmp/vendor-split
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from gemmapipe.evaluate import normalise
from gemmapipe.labelled import read_labelled
from gemmapipe.labelled import split_dev

Pair = tuple[str, dict[str, Any]]  # (text, expected), as read_labelled gives them

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sroie" / "train.jsonl"


def shop(record: Pair) -> str:
    return normalise(record[1]["company"]).upper()


def vendor_split(records: list[Pair], size: int, seed: int, largest_shop: int = 5) -> tuple[list[Pair], list[Pair]]:
    """(rest, held-out) with every receipt of a held-out shop in held-out."""
    by_shop: dict[str, list[Pair]] = defaultdict(list)
    for record in records:
        by_shop[shop(record)].append(record)
    names = sorted(by_shop)
    random.Random(seed).shuffle(names)
    held: set[str] = set()
    count = 0
    for name in names:
        if count >= size:
            break
        if len(by_shop[name]) <= largest_shop:
            held.add(name)
            count += len(by_shop[name])
    return [r for r in records if shop(r) not in held], [r for r in records if shop(r) in held]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from split_files import write_files  # recipes/ is on sys.path when this file runs as a script

    rest, unseen = vendor_split(read_labelled(args.data), args.size, args.seed)
    _, seen = split_dev(rest, 0.05, 0)  # what gemmapipe train --dev-fraction 0.05 --seed 0 holds out of rest
    write_files(args.out, {name: [{"text": text, "expected": expected} for text, expected in part]
                           for name, part in (("rest", rest), ("dev_unseen", unseen), ("dev_seen", seen))})


if __name__ == "__main__":
    main()
