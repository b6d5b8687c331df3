"""Accuracy benchmark of the built-in tasks: ``gemmapipe eval`` on each test split, against the base model.

    python bench/accuracy_bench.py [--tasks invoice,banking77,redact,log-severity,logline] [--baseline-records 60] [--limit N] [--json]

For every built-in task with a trained adapter (and ``log-severity`` and ``logline`` of the gemmapipe-logs plugin,
when installed), runs ``gemmapipe eval --task NAME --data TEST --json`` (the real Gemma 3 270M, int8) and prints its
figures: mean field exact match (accuracy for classification), per-field exact match, mean character similarity,
schema validity, error records and records/s; for extraction tasks, what ``--min-confidence`` buys (exact match of the
fields at or above and below a few thresholds, and of the records kept and routed away). In the same run, the base model without the adapter is scored on an
evenly spaced sample of the same test split (``--baseline-records``) and each adapter figure is printed as a ratio to
it. For ``redact`` it also counts leaks: answers that still contain a personal value the reference replaced (names,
emails, phones, numbers, addresses). Test data: ../shared/datasets/{sroie,banking77}/test.jsonl and
recipes/{redact,log-severity,logline}/test.jsonl (written by the make_*_data.py scripts in recipes/). Never asserts:
it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("GEMMAPIPE_DATASETS", REPO.parent / "shared" / "datasets"))
TEST_SPLITS = {
    "invoice": DATASETS / "sroie" / "test.jsonl",
    "banking77": DATASETS / "banking77" / "test.jsonl",
    "redact": REPO / "recipes" / "redact" / "test.jsonl",
    "log-severity": REPO / "recipes" / "log-severity" / "test.jsonl",
    "logline": REPO / "recipes" / "logline" / "test.jsonl",
}


def run_eval(task: str, data: Path, extra: list[str]) -> dict:
    """``gemmapipe eval --json`` in a fresh process; for redact, with the leak count from its predictions."""
    with tempfile.TemporaryDirectory() as tmp:
        predictions = Path(tmp) / "predictions.jsonl"
        command = [sys.executable, "-m", "gemmapipe", "eval", "--task", task, "--data", str(data), "--json",
                   "--predictions", str(predictions), *extra]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"accuracy_bench: {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        report = json.loads(done.stdout)
        rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
        if task == "redact":
            report["leaks"] = count_leaks(rows)
        report["calibration"] = calibration(rows)
    return report


THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def calibration(predictions: list[dict]) -> list[dict]:
    """What ``--min-confidence T`` buys: for each threshold, the fields (of answered records) at or above it and
    below it, and the exact match of each group. An answer routed away by T is the record of its weakest field, so
    the record figures are given too: records kept (every field at or above T) and their whole-record exact match."""
    table = []
    for threshold in THRESHOLDS:
        counts = {"above": [0, 0], "below": [0, 0], "records_kept": [0, 0], "records_routed": [0, 0]}
        for row in predictions:
            confidence, exact = row.get("confidence"), row.get("exact") or {}
            if not confidence or row.get("output") is None:
                continue
            for field, right in exact.items():
                side = "above" if confidence.get(field, 1.0) >= threshold else "below"
                counts[side][0] += 1
                counts[side][1] += bool(right)
            kept = "records_kept" if min(confidence.values()) >= threshold else "records_routed"
            counts[kept][0] += 1
            counts[kept][1] += all(exact.values())
        table.append({"threshold": threshold, **{k: {"n": n, "exact_match": right / n if n else None} for k, (n, right) in counts.items()}})
    return table


def count_leaks(predictions: list[dict]) -> dict:
    """Personal values of the source that an answer kept (an error record shows nothing, so it leaks nothing)."""
    if str(REPO / "recipes") not in sys.path:
        sys.path.insert(0, str(REPO / "recipes"))
    from make_redact_data import personal_values

    values = leaked = records = 0
    for item in predictions:
        found = personal_values(item["text"], item["expected"]["text"])
        answer = (item["output"] or {}).get("text", "")
        kept = [value for value in found if value in answer]
        values, leaked, records = values + len(found), leaked + len(kept), records + bool(kept)
    return {"personal_values": values, "leaked_values": leaked, "records_with_a_leak": records,
            "leak_rate": leaked / values if values else 0.0, "records_leaking_rate": records / len(predictions) if predictions else 0.0}


def even_sample(path: Path, n: int, folder: Path) -> Path:
    """Every k-th record, so that a sample of a label-sorted file still covers every label."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(lines) // n)
    sample = folder / f"{path.parent.name}-{path.stem}-sample.jsonl"
    sample.write_text("\n".join(lines[::step][:n]) + "\n", encoding="utf-8")
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TEST_SPLITS))
    parser.add_argument("--baseline-records", type=int, default=60, help="Test records the base model is scored on (0: skip).")
    parser.add_argument("--limit", type=int, help="Score the adapters on an even sample of N test records instead of all.")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from gemmapipe.errors import GemmapipeError
    from gemmapipe.plugins import get_plugins

    common = ["--threads", str(args.threads)] if args.threads else []
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}", "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            data = TEST_SPLITS[task]
            try:
                adapter = get_plugins().registry().task(task).adapter
            except GemmapipeError as exc:
                print(f"accuracy_bench: {exc}; skipped {task} (log-severity, logline: pip install ./plugins/gemmapipe-logs)", file=sys.stderr)
                continue
            if adapter is None:
                print(f"accuracy_bench: {task} has no trained adapter yet; skipped", file=sys.stderr)
                continue
            if not data.exists():
                print(f"accuracy_bench: {data} is missing; skipped {task}", file=sys.stderr)
                continue
            adapter_data = even_sample(data, args.limit, Path(tmp)) if args.limit else data
            entry = {"adapter": run_eval(task, adapter_data, common)}
            if args.baseline_records:
                sample = even_sample(data, args.baseline_records, Path(tmp))
                entry["base_model"] = run_eval(task, sample, [*common, "--no-adapter"])
                entry["adapter_on_baseline_sample"] = run_eval(task, sample, common)
            results["tasks"][task] = entry
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"accuracy benchmark, {results['date']}, {results['machine']} (real Gemma 3 270M, int8)")
    for task, entry in results["tasks"].items():
        report = entry["adapter"]
        print(f"\n{task}: {report['records']} test records")
        print(f"  mean field exact match {report['mean_field_exact_match']:.1%}  " +
              "  ".join(f"{k} {v:.1%}" for k, v in report["field_exact_match"].items()))
        print(f"  mean character similarity {report['mean_field_similarity']:.1%}   whole-record exact match {report['record_exact_match']:.1%}")
        if "micro_f1" in report:
            print(f"  field values: precision {report['micro_precision']:.1%}  recall {report['micro_recall']:.1%}  F1 "
                  f"{report['micro_f1']:.1%} (macro F1 {report['macro_f1']:.1%})")
        print(f"  schema-valid {report['schema_validity_rate']:.1%}   errors {report['errors_by_type'] or 0}   {report['records_per_second']:.2f} records/s")
        if report["field_exact_match"] and len(report["field_exact_match"]) > 1:  # extraction: what a confidence threshold buys
            for row in report["calibration"]:
                def share(key: str) -> str:
                    group = row[key]
                    return f"{group['n']} at {group['exact_match']:.1%}" if group["n"] else "0"
                print(f"  --min-confidence {row['threshold']}: fields at or above {share('above')} right, below {share('below')};"
                      f" records kept {share('records_kept')} all right, routed to a person {share('records_routed')}")
        if "leaks" in report:
            leaks = report["leaks"]
            print(f"  leaked personal values {leaks['leaked_values']} of {leaks['personal_values']} ({leaks['leak_rate']:.1%});"
                  f" records with a leak {leaks['records_with_a_leak']} ({leaks['records_leaking_rate']:.1%})")
        if "base_model" in entry:
            base, same = entry["base_model"], entry["adapter_on_baseline_sample"]
            def ratio(key: str) -> str:
                return f"{same[key] / base[key]:.2f}x" if base[key] else "n/a (base 0)"
            print(f"  vs base model on {base['records']} of them (adapter vs base): exact match {same['mean_field_exact_match']:.1%} vs"
                  f" {base['mean_field_exact_match']:.1%} ({ratio('mean_field_exact_match')}), records/s {same['records_per_second']:.2f} vs"
                  f" {base['records_per_second']:.2f} ({ratio('records_per_second')}), schema-valid {same['schema_validity_rate']:.1%} vs"
                  f" {base['schema_validity_rate']:.1%} ({ratio('schema_validity_rate')}), base model errors {base['errors_by_type'] or 0}")
            if "leaks" in base:
                print(f"  leak rate vs base model: {same['leaks']['leak_rate']:.1%} vs {base['leaks']['leak_rate']:.1%}")


if __name__ == "__main__":
    main()
