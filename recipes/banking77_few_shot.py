"""Banking77 in the few-shot setting of its paper, as a dataset for the training-defaults benchmark
(bench/train_defaults.py): classification with many labels, trained with `gemmapipe train`'s defaults on an
ad-hoc schema (the generic classify instruction, which lists the 77 labels), not the built-in task's hand-tuned run.

    python recipes/banking77_few_shot.py [--per-label 10] [--test-per-label 10] [--out data/banking77-10]

Train: ``--per-label`` messages of each label drawn (seed 0) from ../shared/datasets/banking77/train.jsonl (10 is
the paper's smallest setting); test: ``--test-per-label`` of each label from its test.jsonl (0: all 3,080; an
even sample keeps the benchmark's eval short, since each prompt lists the labels). ``reference.json``: the paper's
best 10-shot accuracy, dual sentence encoders USE+ConveRT 85.19 % (Casanueva et al. 2020, arXiv:2003.04807, Table 2;
scored on the whole test split).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from split_files import Records, write_files  # noqa: E402

DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "banking77"
REFERENCE = {"metric": "accuracy", "value": 0.8519,
             "source": "USE+ConveRT, 10 examples per label (Casanueva et al. 2020, Table 2; whole test split)"}


def per_label(records: Records, count: int, rng: random.Random) -> Records:
    """``count`` records of each label (all when 0), in a shuffled order."""
    if count <= 0:
        return list(records)
    by_label: dict[str, Records] = defaultdict(list)
    for record in records:
        by_label[record["expected"]["intent"]].append(record)  # type: ignore[index]
    chosen = [r for label in sorted(by_label) for r in rng.sample(by_label[label], min(count, len(by_label[label])))]
    rng.shuffle(chosen)
    return chosen


def read(path: Path) -> Records:
    return [{"text": r["text"], "expected": r["expected"]} for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())]


def build(out: Path, train_per_label: int = 10, test_per_label: int = 10, seed: int = 0, dataset: Path = DATASET) -> None:
    rng = random.Random(seed)
    write_files(out, {"train": per_label(read(dataset / "train.jsonl"), train_per_label, rng),
                      "test": per_label(read(dataset / "test.jsonl"), test_per_label, rng)})
    shutil.copyfile(dataset / "schema.json", out / "schema.json")
    (out / "kind").write_text("classify\n", encoding="utf-8")
    (out / "reference.json").write_text(json.dumps(REFERENCE, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=10)
    parser.add_argument("--test-per-label", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("data/banking77-10"))
    args = parser.parse_args()
    build(args.out, args.per_label, args.test_per_label, args.seed)


if __name__ == "__main__":
    main()
