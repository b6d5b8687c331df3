"""WikiSplit split-and-rephrase (Botha et al. 2018, github.com/google-research-datasets/wiki-split, CC BY-SA 4.0) as a
gemmapipe **rewrite** dataset, for the training-defaults benchmark (bench/train_defaults.py). Not a built-in task: it
checks what `gemmapipe train` gives a new user with its defaults on a rewrite task nobody tuned to.

    python recipes/wikisplit.py --source /path/to/wiki-split --out data/wikisplit

``--source`` is a checkout of google-research-datasets/wiki-split (commit 80f5bdd, the one measured) or its bare git
directory (read with ``git show``). Each line of its TSV files is a long sentence and the same content as two
sentences (``<::::>`` between them); the text is tokenized on punctuation (``Bob 's Burgers ,``) and is kept so, since
the published figures are on that text. Written into ``--out/wikisplit``:

- ``train.jsonl``: 500 lines drawn (seed 0) from ``tune.tsv`` (the 1M-line ``train.tsv`` is not needed for a
  500-record set; the files are sorted alphabetically, hence the draw); ``test.jsonl``: 300 drawn from
  ``validation.tsv``, the split the reference was measured on. Each record is ``{"text": sentence, "expected":
  {"text": "first . second ."}}`` (the two sentences joined by one space).
- ``kind``: ``rewrite``; ``schema.json``: one required string field.
- ``reference.json``: exact match of LaserTagger_AR (a BERT-based text editor trained on the 1M training pairs) on
  ``validation.tsv``: 15.22 % (SARI 61.67), from google-research/lasertagger's README (Malmi et al. 2019). Exact match
  is low for every system on this set: each long sentence can be split many right ways and only one is the label.
  bench/train_defaults.py also prints what copying the input unchanged scores, the floor a rewrite must beat.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from split_files import Records, read_source, source_main, write_files  # noqa: E402

SEPARATOR = "<::::>"
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "description": "The sentence split into two shorter sentences that together say the same thing.",
    "properties": {"text": {"type": "string", "description": "the two sentences, in the input's tokenization (spaces around punctuation)"}},
    "required": ["text"],
    "additionalProperties": False,
}
REFERENCE = {"metric": "record exact match", "value": 0.1522,
             "source": "LaserTagger_AR trained on WikiSplit's 1M pairs, validation.tsv (Malmi et al. 2019; google-research/lasertagger README)"}


def read_tsv(source: Path, name: str) -> list[tuple[str, str]]:
    """(sentence, split) pairs of one TSV file, from a checkout or from a bare git directory."""
    pairs = []
    for line in read_source(source, name).splitlines():
        sentence, _, split = line.partition("\t")
        if split and SEPARATOR in split:
            pairs.append((sentence.strip(), split.strip()))
    return pairs


def record(sentence: str, split: str) -> dict[str, object]:
    parts = [" ".join(part.split()) for part in split.split(SEPARATOR)]
    return {"text": " ".join(sentence.split()), "expected": {"text": " ".join(p for p in parts if p)}}


def build(source: Path, out: Path, seed: int = 0, train_size: int = 500, test_size: int = 300) -> None:
    train_pool, test_pool = read_tsv(source, "tune.tsv"), read_tsv(source, "validation.tsv")
    test_sentences = {sentence for sentence, _ in test_pool}
    train_pool = [pair for pair in train_pool if pair[0] not in test_sentences]
    random.Random(seed).shuffle(train_pool)
    random.Random(seed + 1).shuffle(test_pool)
    train: Records = [record(*pair) for pair in train_pool[:train_size]]
    test: Records = [record(*pair) for pair in test_pool[:test_size]]
    folder = out / "wikisplit"
    write_files(folder, {"train": train, "test": test})
    (folder / "schema.json").write_text(json.dumps(SCHEMA, indent=2) + "\n", encoding="utf-8")
    (folder / "kind").write_text("rewrite\n", encoding="utf-8")
    (folder / "reference.json").write_text(json.dumps(REFERENCE, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    source_main(__doc__.splitlines()[0], build, "google-research-datasets/wiki-split")


if __name__ == "__main__":
    main()
