"""int4 (llama.cpp) against int8 (CTranslate2) in the same run: prints figures, never asserts.

    python bench/int4_bench.py [--tasks invoice,banking77,redact,log-severity,logline] [--limit N] [--stream-records 20] [--json]

For each task, on its test split (bench/accuracy_bench.py's splits; ``--limit N``: an even sample of N records), with
the task's own adapter, int8 then int4:

- accuracy, records/s and peak RSS of ``gemmapipe eval --compute-type T`` on those records (the engine as the pipe
  runs it: int8 in batches on two replicas, int4 one record at a time; peak RSS of the process, via wait4);
- single-stream latency: ``gemmapipe KIND --schema TASK`` is given one record, its answer is awaited, then the next (as
  ``tail -f`` gives them), for the first ``--stream-records`` records after one that warms the process up: the median
  and mean seconds from a record written to its answer, and the pipe's peak RSS;
- first-record latency: wall seconds of ``head -1 | gemmapipe ...`` with the model prepared (median of three);
- the prepared model's size on disk.

Ratios are int4 / int8. The machine is shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from accuracy_bench import TEST_SPLITS, even_sample  # noqa: E402
from throughput import KINDS  # noqa: E402


def single_stream(task: str, data: Path, compute_type: str, records: int) -> dict:
    """Feed the pipe one record at a time, each after the previous one's answer (stdout) or error record (stderr)."""
    import queue
    import threading

    lines = data.read_text(encoding="utf-8").splitlines()[:records]
    command = [sys.executable, "-m", "gemmapipe", KINDS[task], "--schema", task, "--no-progress", "--compute-type", compute_type]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    answers: queue.Queue[str] = queue.Queue()

    def collect(stream, only_json: bool) -> None:
        for line in stream:
            if not only_json or line.startswith("{"):
                answers.put(line)

    for stream, only_json in ((process.stdout, False), (process.stderr, True)):
        threading.Thread(target=collect, args=(stream, only_json), daemon=True).start()
    latencies = []
    for index, line in enumerate([lines[0]] + lines):  # the first one warms up (the model is loaded by then)
        start = time.perf_counter()
        process.stdin.write(line + "\n")
        process.stdin.flush()
        answers.get(timeout=300)
        if index:
            latencies.append(time.perf_counter() - start)
    process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)
    return {"median_s": statistics.median(latencies), "mean_s": statistics.mean(latencies),
            "records_per_second": len(latencies) / sum(latencies), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "exit": os.waitstatus_to_exitcode(status)}


def first_record(task: str, data: Path, compute_type: str) -> float:
    line = data.read_text(encoding="utf-8").splitlines()[0] + "\n"
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gemmapipe", KINDS[task], "--schema", task, "--no-progress", "--compute-type", compute_type],
                       input=line.encode(), capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def evaluated(task: str, data: Path, compute_type: str) -> dict:
    command = [sys.executable, "-m", "gemmapipe", "eval", "--task", task, "--data", str(data), "--json", "--compute-type", compute_type]
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        report = json.loads(out.read())
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"int4_bench: eval of {task} ({compute_type}) failed")
    return {"accuracy": report["mean_field_exact_match"], "records_per_second": report["records_per_second"],
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "errors": report["errors_by_type"], "records": report["records"]}


def model_size_mb(task: str, compute_type: str) -> float:
    """What a run of ``task`` reads from disk: int8, the task's own CTranslate2 folder (the base merged in); int4, the
    base GGUF folder plus the task's GGUF LoRA (applied at run time)."""
    done = subprocess.run([sys.executable, "-m", "gemmapipe", "prepare", "--task", task, "--compute-type", compute_type],
                          capture_output=True, text=True, check=True)
    paths = [Path(line.split(": ", 1)[1]) for line in done.stdout.strip().splitlines()]
    used = paths if compute_type == "int4" else paths[-1:]
    return round(sum(f.stat().st_size for p in used for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()) / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TEST_SPLITS))
    parser.add_argument("--limit", type=int, help="An even sample of N test records instead of all.")
    parser.add_argument("--stream-records", type=int, default=20, help="Records of the single-stream measure.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            if not TEST_SPLITS[task].exists():
                print(f"int4_bench: {TEST_SPLITS[task]} is missing; skipped {task}", file=sys.stderr)
                continue
            data = even_sample(TEST_SPLITS[task], args.limit, Path(tmp)) if args.limit else TEST_SPLITS[task]
            entry: dict = {"records": len(data.read_text(encoding="utf-8").splitlines())}
            for compute_type in ("int8", "int4"):
                figures = {"model_mb": model_size_mb(task, compute_type)}  # prepares it, before anything is timed
                figures["batched"] = evaluated(task, data, compute_type)
                figures["accuracy"] = figures["batched"]["accuracy"]
                figures["single_stream"] = single_stream(task, data, compute_type, args.stream_records)
                figures["first_record_s"] = first_record(task, data, compute_type)
                entry[compute_type] = figures
            results[task] = entry
            if not args.json:
                show(task, entry)
    if args.json:
        print(json.dumps(results, indent=2))


def show(task: str, entry: dict) -> None:
    a, b = entry["int8"], entry["int4"]
    print(f"{task} ({entry['records']} test records): int8 -> int4")
    for name in ("int8", "int4"):
        if entry[name]["batched"]["errors"]:
            print(f"  {name} error records: {entry[name]['batched']['errors']}")
    print(f"  accuracy {a['accuracy']:.1%} -> {b['accuracy']:.1%} ({(b['accuracy'] - a['accuracy']) * 100:+.1f} points)")
    for mode in ("batched", "single_stream"):
        print(f"  records/s {mode}: {a[mode]['records_per_second']:.2f} -> {b[mode]['records_per_second']:.2f} "
              f"({b[mode]['records_per_second'] / a[mode]['records_per_second']:.2f}x); peak RSS {a[mode]['peak_rss_mb']} -> "
              f"{b[mode]['peak_rss_mb']} MB ({b[mode]['peak_rss_mb'] / a[mode]['peak_rss_mb']:.2f}x)")
    x, y = a["single_stream"]["median_s"], b["single_stream"]["median_s"]
    print(f"  single-stream latency (median a record): {x:.2f} -> {y:.2f} s ({y / x:.2f}x)")
    print(f"  first record {a['first_record_s']:.2f} -> {b['first_record_s']:.2f} s ({b['first_record_s'] / a['first_record_s']:.2f}x); "
          f"model on disk {a['model_mb']} -> {b['model_mb']} MB", flush=True)


if __name__ == "__main__":
    main()
