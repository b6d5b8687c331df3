"""What `gemmapipe train` gives with its defaults on public data it was never tuned to: prints figures, never asserts.

    python bench/train_defaults.py DATASET_DIR [DATASET_DIR ...] [--kind extract] [--out runs/] [--threads N] [--json]

Each DATASET_DIR holds ``schema.json``, ``train.jsonl`` and ``test.jsonl`` (labelled records, ``{"text",
"expected"}``) and, optionally, ``kind`` (a file holding the task kind; else ``--kind``) and ``reference.json``
(``{"metric": ..., "value": ..., "source": ...}``: a published strong baseline to print beside the result).
recipes/snips_slots.py writes two such folders from SNIPS, recipes/banking77_few_shot.py one from Banking77 and
recipes/wikisplit.py a rewrite set from WikiSplit.

For each: ``gemmapipe train --schema S --kind K --data train.jsonl --out OUT/NAME`` and nothing else (the defaults
pick the length, the dev split and the checkpoint), in a process of its own whose peak RSS and wall minutes are
measured (``--threads N`` is passed on, so two benches can share a machine's cores; it changes no default
that is being measured); then ``gemmapipe eval --json`` of that adapter on ``test.jsonl``. Printed: training minutes, steps, epochs,
peak RSS, the dev figures the run chose its checkpoint by, its advice lines, and on the test split: field-value
precision, recall and F1, whole-record exact match, accuracy (classification), validity and records/s, beside the
published reference when there is one (as a difference in points); for a rewrite task also what answering with the
input unchanged would score, and how often the answer is closer to the expected text than the input, or further. The test split is read only by eval, after
training: nothing here tunes on it. A run already trained in OUT/NAME is resumed or reused (delete it to retrain).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_measured(command: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``command`` with its stderr into ``log``: exit status, wall seconds, peak RSS in MB (its own, via wait4)."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024


def copy_input_floor(predictions: Path) -> dict[str, float]:
    """For a rewrite task: what answering with the input unchanged would score (exact match and similarity of the
    rewritten field, the mean over fields when there are several), and on how many records the answer is closer to the
    expected text than the input is, or further from it."""
    from gemmapipe.evaluate import normalise, similarity

    exact = close = closer = further = 0.0
    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        wanted = {f: v for f, v in row["expected"].items() if isinstance(v, str)}
        answer = row["output"] or {}
        for field, want in wanted.items():
            share = 1 / len(wanted)
            copy_score, answer_score = similarity(row["text"], want), similarity(answer.get(field) or "", want)
            exact += share * (normalise(row["text"]) == normalise(want))
            close += share * copy_score
            closer += share * (answer_score > copy_score)
            further += share * (answer_score < copy_score)
    n = len(rows) or 1
    return {"exact_match": exact / n, "similarity": close / n, "answer_closer": closer / n, "answer_further": further / n}


def bench(folder: Path, kind: str, out: Path, threads: int | None = None) -> dict[str, object]:
    kind = (folder / "kind").read_text().strip() if (folder / "kind").is_file() else kind
    name = folder.name
    adapter = out / name
    gemmapipe = [sys.executable, "-m", "gemmapipe"]
    schema = str(folder / "schema.json")
    figures: dict[str, object] = {"dataset": name, "kind": kind}
    if not (adapter / "gemmapipe-adapter.json").is_file():
        status, seconds, peak = run_measured([*gemmapipe, "train", "--schema", schema, "--kind", kind, "--data",
                                              str(folder / "train.jsonl"), "--out", str(adapter),
                                              *(["--threads", str(threads)] if threads else [])], out / f"{name}.train.log")
        if status != 0:
            raise SystemExit(f"training {name} failed ({status}); see {out / (name + '.train.log')}")
        figures.update(train_minutes=round(seconds / 60, 1), train_peak_rss_mb=round(peak))
    metadata = json.loads((adapter / "gemmapipe-adapter.json").read_text())
    metrics = metadata["metrics"]
    figures.update(steps=metadata["steps"], planned_steps=metadata.get("planned_steps"), epochs=round(metadata["epochs_total"], 2),
                   train_examples=metadata["train_examples"], dev_metric=metrics.get("dev_metric"),
                   best_dev=metrics.get("best_dev_metric"), best_step=metrics.get("best_step"), advice=metadata.get("advice", []),
                   train_seconds_in_loop=metadata["train_seconds"])
    predictions = out / f"{name}.test-predictions.jsonl"
    report = json.loads(subprocess.run([*gemmapipe, "eval", "--schema", schema, "--kind", kind, "--adapter", str(adapter),
                                        "--data", str(folder / "test.jsonl"), "--json", "--predictions", str(predictions)],
                                       check=True, capture_output=True, text=True).stdout)
    figures["test"] = {k: report[k] for k in ("records", "micro_precision", "micro_recall", "micro_f1", "macro_f1", "record_exact_match",
                                               "mean_field_exact_match", "mean_field_similarity", "schema_validity_rate",
                                               "records_per_second")}
    if kind == "rewrite":
        figures["copy_input"] = copy_input_floor(predictions)
    if (folder / "reference.json").is_file():
        figures["reference"] = json.loads((folder / "reference.json").read_text())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--kind", default="extract")
    parser.add_argument("--out", type=Path, default=Path("runs"))
    parser.add_argument("--threads", type=int, help="torch threads for each training run (default: all cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [bench(folder, args.kind, args.out, args.threads) for folder in args.datasets]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        test = r["test"]
        print(f"{r['dataset']} ({r['kind']}): {r['train_examples']} training examples, {r['steps']} of {r['planned_steps']} steps "
              f"({r['epochs']} epochs), {r.get('train_minutes', '?')} min, peak RSS {r.get('train_peak_rss_mb', '?')} MB")
        print(f"  dev {r['dev_metric']} {r['best_dev']:.1%} at step {r['best_step']}")
        for line in r["advice"]:
            print(f"  advice: {line}")
        print(f"  test ({test['records']} records): field P/R/F1 {test['micro_precision']:.1%} / {test['micro_recall']:.1%} / "
              f"{test['micro_f1']:.1%}, whole records right {test['record_exact_match']:.1%}, valid {test['schema_validity_rate']:.1%}, "
              f"{test['records_per_second']:.1f} records/s")
        if "copy_input" in r:
            copy = r["copy_input"]
            print(f"  rewrite: exact match {test['record_exact_match']:.1%}, similarity {test['mean_field_similarity']:.1%}; "
                  f"the input unchanged: {copy['exact_match']:.1%}, {copy['similarity']:.1%}; the answer is closer to the "
                  f"expected text than the input on {copy['answer_closer']:.1%} of records, further on {copy['answer_further']:.1%}")
        if "reference" in r:
            ref = r["reference"]
            ours = test["micro_f1"] if ref["metric"] == "field F1" else test["record_exact_match"]
            print(f"  reference: {ref['metric']} {ref['value']:.1%} ({ref['source']}); this: {ours:.1%}, "
                  f"{(ours - ref['value']) * 100:+.1f} points")


if __name__ == "__main__":
    main()
