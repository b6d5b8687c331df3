"""Throughput of the real CLI pipe, this checkout against a baseline commit, in the same run: prints figures, never asserts.

    python bench/throughput.py [--tasks invoice,banking77,redact,log-severity,logline] [--limit 96] [--full]
                               [--baseline 6df017c] [--repeats 1] [--envelope] [--json]

For each task (the built-in ones, and the gemmapipe-logs plugin's when it is installed), the first ``--limit``
records of its test split (all of them with ``--full``) are piped through ``python -m gemmapipe KIND --schema TASK``
of this checkout and of ``--baseline`` (a git worktree of that commit, run with the same Python and model cache;
the default is the last commit before the speed work of issue 23), alternately, ``--repeats`` times each.
Printed per task:

- records/s of each and their ratio; prompt and answer tokens/s, mean batch size and repairs per record (this
  checkout's ``--stats``); peak RSS of each;
- cold start: wall seconds of ``head -1 | gemmapipe ...`` (median of three), each;
- whether the answers are the same (the fraction of identical output lines);
- the int8 work per record (from the model's shape and the token counts) over the wall time, as a fraction of
  the int8 GEMM peak measured on this machine in the same run with torch (when torch is installed).

The machine is shared and noisy: compare the ratios, not the absolute figures. Models are prepared before anything
is timed (``gemmapipe prepare``). Test data as in bench/accuracy_bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from accuracy_bench import TEST_SPLITS  # noqa: E402

#: the last landed commit before this bench existed: the "previous release" whose engine settings it compares with
DEFAULT_BASELINE = "6df017c"
KINDS = {"invoice": "extract", "banking77": "classify", "redact": "rewrite", "log-severity": "classify", "logline": "extract"}
#: Gemma 3 270M: multiply-accumulates per token in the 18 layers (q, k, v, o and the three MLP matrices), and per
#: row of the output layer (hidden size 640); 262,144 rows unless a task's model keeps fewer.
LAYER_MACS_PER_TOKEN = 18 * (640 * 1024 + 2 * 640 * 256 + 1024 * 640 + 3 * 640 * 2048)
OUTPUT_MACS_PER_ROW = 640
VOCABULARY = 262_144


def gemm_peak_gops(threads: int) -> float | None:
    """The best int8 GEMM rate torch reaches here (oneDNN, the library CTranslate2 also uses), in GOPS."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    best = 0.0
    for m, k, n in [(512, 640, 2048), (2048, 640, 2048), (512, 2048, 640)]:
        a = torch.randint(-128, 127, (m, k), dtype=torch.int8)
        b = torch.randint(-128, 127, (k, n), dtype=torch.int8)
        torch._int_mm(a, b)
        start = time.perf_counter()
        for _ in range(10):
            torch._int_mm(a, b)
        best = max(best, 2 * m * k * n * 10 / (time.perf_counter() - start) / 1e9)
    return best


def records_file(task: str, limit: int | None, folder: Path) -> Path:
    lines = [line for line in TEST_SPLITS[task].read_text(encoding="utf-8").splitlines() if line.strip()]
    path = folder / f"{task}.jsonl"
    path.write_text("\n".join(lines[:limit] if limit else lines) + "\n", encoding="utf-8")
    return path


EXTRA: list[str] = []  # options given to both checkouts' runs (--envelope: see main)


def run_pipe(code: Path, task: str, data: Path, stats: Path | None) -> dict:
    """One run of the CLI of the checkout at ``code``: wall seconds, peak RSS (MB), output lines, --stats."""
    command = [sys.executable, "-m", "gemmapipe", KINDS[task], "--schema", task, "--no-progress", *EXTRA, str(data)]
    if stats is not None:
        command += ["--stats", str(stats)]
    out_path, err_path = data.with_suffix(".out"), data.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=code, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS, not the running maximum of all children
        seconds = time.perf_counter() - start
    code_ = os.waitstatus_to_exitcode(status)
    if code_ not in (0, 1):
        raise SystemExit(f"throughput: {' '.join(command)} (in {code}) failed ({code_}):\n{err_path.read_text()[-2000:]}")
    return {"seconds": seconds, "lines": out_path.read_text(encoding="utf-8").splitlines(),
            "stats": json.loads(stats.read_text()) if stats else None, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def cold_start(code: Path, task: str, data: Path) -> float:
    """Median wall seconds of ``head -1 DATA | gemmapipe KIND --schema TASK`` (the model already prepared)."""
    first = data.read_text(encoding="utf-8").splitlines()[0] + "\n"
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gemmapipe", KINDS[task], "--schema", task, "--no-progress"], cwd=code,
                       input=first.encode(), capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepare(code: Path, task: str) -> None:
    subprocess.run([sys.executable, "-m", "gemmapipe", "prepare", "--task", task], cwd=code, capture_output=True, check=True)


def output_rows(code: Path, task: str) -> int:
    """Rows of the output layer of ``task``'s prepared model in checkout ``code`` (fewer for a classifier)."""
    script = ("import json,sys;from gemmapipe.plugins import get_plugins;from gemmapipe.models import ModelStore;"
              f"t=get_plugins().registry().task({task!r});"
              "d=ModelStore().ctranslate2_dir(t.adapter,'int8',getattr(t,'model_answers',None));"
              "p=d/'gemmapipe-output-ids.json';print(len(json.loads(p.read_text())) if p.is_file() else 262144)")
    done = subprocess.run([sys.executable, "-c", script], cwd=code, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def worktree(rev: str, folder: Path) -> Path:
    path = folder / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), rev], capture_output=True, check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="invoice,banking77,redact,log-severity,logline")
    parser.add_argument("--limit", type=int, default=96, help="records of each test split (default 96)")
    parser.add_argument("--full", action="store_true", help="the whole test splits")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"git revision to compare with (default {DEFAULT_BASELINE})")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--envelope", action="store_true", help="both checkouts write --envelope lines (to measure what "
                        "this checkout's envelope costs: confidence, offsets, provenance); answers are compared by their result")
    args = parser.parse_args()
    if args.envelope:
        EXTRA.append("--envelope")
    threads = os.cpu_count() or 1
    peak = gemm_peak_gops(threads)
    figures: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {threads} cores",
                     "baseline": args.baseline, "gemm_peak_gops": round(peak, 1) if peak else None, "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = worktree(args.baseline, folder)
        try:
            for task in args.tasks.split(","):
                if not TEST_SPLITS[task].is_file():
                    print(f"throughput: no test split for {task} ({TEST_SPLITS[task]}); skipped", file=sys.stderr)
                    continue
                try:
                    prepare(REPO, task)
                    prepare(base, task)
                except subprocess.CalledProcessError:
                    print(f"throughput: task {task} is not available (plugin not installed?); skipped", file=sys.stderr)
                    continue
                data = records_file(task, None if args.full else args.limit, folder)
                new_runs, old_runs = [], []
                for repeat in range(args.repeats):
                    old_runs.append(run_pipe(base, task, data, None))
                    new_runs.append(run_pipe(REPO, task, data, folder / f"{task}-{repeat}.json"))
                figures["tasks"][task] = summarize(task, data, new_runs, old_runs, cold_start(REPO, task, data),
                                                   cold_start(base, task, data), output_rows(REPO, task), peak)
                if not args.json:
                    print_task(task, figures["tasks"][task], flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print(f"{figures['date']}, {figures['machine']}, baseline {args.baseline}; int8 GEMM peak "
              f"{figures['gemm_peak_gops'] or 'n/a'} GOPS (torch)")


def summarize(task: str, data: Path, new: list[dict], old: list[dict], cold_new: float, cold_old: float,
              rows: int, peak: float | None) -> dict:
    records = len(new[0]["lines"]) or 1
    n = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
    new_s = statistics.median(r["seconds"] for r in new)
    old_s = statistics.median(r["seconds"] for r in old)
    stats = new[0]["stats"]
    def answers(lines: list[str]) -> list[object]:
        return [json.loads(line).get("result") for line in lines] if EXTRA else lines

    same = sum(a == b for a, b in zip(answers(new[0]["lines"]), answers(old[0]["lines"]))) / max(len(old[0]["lines"]), 1)
    macs = stats["prompt_tokens"] * LAYER_MACS_PER_TOKEN + stats["output_tokens"] * (LAYER_MACS_PER_TOKEN + rows * OUTPUT_MACS_PER_ROW)
    macs += n * rows * OUTPUT_MACS_PER_ROW  # the prompt's last position is scored too
    achieved = 2 * macs / new_s / 1e9
    return {
        "records": n, "answered": records,
        "records_per_s": round(n / new_s, 3), "baseline_records_per_s": round(n / old_s, 3), "speedup": round(old_s / new_s, 2),
        "prompt_tokens_per_s": round(stats["prompt_tokens"] / new_s, 1), "answer_tokens_per_s": round(stats["output_tokens"] / new_s, 1),
        "mean_batch_size": stats["mean_batch_size"], "repairs_per_record": round(stats["repairs"] / n, 3),
        "peak_rss_mb": max(r["stats"]["peak_rss_mb"] for r in new), "baseline_peak_rss_mb": max(r["peak_rss_mb"] for r in old),
        "cold_start_s": round(cold_new, 2), "baseline_cold_start_s": round(cold_old, 2),
        "same_answers": round(same, 4), "output_rows": rows,
        "achieved_gops": round(achieved, 1), "fraction_of_gemm_peak": round(achieved / peak, 3) if peak else None,
    }


def print_task(task: str, f: dict, flush: bool = False) -> None:
    print(f"{task}: {f['records']} records")
    print(f"  records/s        {f['records_per_s']:8.3f}   baseline {f['baseline_records_per_s']:8.3f}   x{f['speedup']}")
    print(f"  cold start (s)   {f['cold_start_s']:8.2f}   baseline {f['baseline_cold_start_s']:8.2f}   "
          f"x{round(f['baseline_cold_start_s'] / f['cold_start_s'], 2)}")
    print(f"  peak RSS (MB)    {f['peak_rss_mb']:8.0f}   baseline {f['baseline_peak_rss_mb']:8.0f}")
    print(f"  prompt tokens/s {f['prompt_tokens_per_s']:9.1f}   answer tokens/s {f['answer_tokens_per_s']:.1f}   mean batch "
          f"{f['mean_batch_size']}   repairs/record {f['repairs_per_record']}")
    print(f"  same answers {f['same_answers']:.1%}   output layer rows {f['output_rows']:,}   int8 work {f['achieved_gops']} GOPS"
          + (f" = {f['fraction_of_gemm_peak']:.1%} of the GEMM peak" if f["fraction_of_gemm_peak"] else ""), flush=flush)


if __name__ == "__main__":
    main()
