"""Ray Data against the CLI pipe, same records, same run: prints figures, never asserts.

    python bench/ray_bench.py [--task invoice] [--limit 32] [--json]

Runs the first ``--limit`` records of the task's test split (bench/accuracy_bench.py's splits) through
``gemmapipe KIND`` (the pipe, all cores) and through ``gemmapipe ray KIND`` with 1 actor x 2 threads and with 2 actors
x 1 thread (a local Ray cluster started by the command), and prints records/s of each, their ratio to the pipe, and
whether the results are the pipe's. Ray's start-up (the cluster, the actors loading the model) is inside the
timing, as a user pays it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from accuracy_bench import TEST_SPLITS  # noqa: E402
from throughput import KINDS  # noqa: E402


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="invoice")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gemmapipe = [sys.executable, "-m", "gemmapipe"]
    kind = KINDS[args.task]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "records.jsonl"
        data.write_text("\n".join(TEST_SPLITS[args.task].read_text(encoding="utf-8").splitlines()[: args.limit]) + "\n")
        subprocess.run([*gemmapipe, "prepare", "--task", args.task], check=True, capture_output=True)
        out = Path(tmp) / "pipe.jsonl"
        start = time.perf_counter()
        with open(out, "wb") as handle:
            subprocess.run([*gemmapipe, kind, "--schema", args.task, "--no-progress", str(data)], stdout=handle, stderr=subprocess.DEVNULL)
        figures = {"pipe": {"seconds": time.perf_counter() - start}}
        pipe_lines = out.read_text().splitlines()
        for actors, threads in ((1, 2), (2, 1)):
            folder = Path(tmp) / f"ray-{actors}x{threads}"
            seconds = timed([*gemmapipe, "ray", kind, "--schema", args.task, "--input", str(data), "--output", str(folder),
                             "--actors", str(actors), "--threads-per-actor", str(threads)])
            lines = (folder / "records.jsonl.jsonl").read_text().splitlines() if (folder / "records.jsonl.jsonl").exists() else []
            figures[f"ray {actors} actor(s) x {threads} thread(s)"] = {"seconds": seconds, "same_as_pipe": lines == pipe_lines}
    for entry in figures.values():
        entry["records_per_second"] = round(args.limit / entry["seconds"], 3)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    base = figures["pipe"]["records_per_second"]
    print(f"{args.task}, {args.limit} records (records/s, ratio to the pipe):")
    for name, entry in figures.items():
        same = "" if name == "pipe" else f", results {'the same as' if entry['same_as_pipe'] else 'DIFFERENT from'} the pipe's"
        print(f"  {name}: {entry['records_per_second']:.3f} ({entry['records_per_second'] / base:.2f}x){same}")


if __name__ == "__main__":
    main()
