"""Training benchmark on the real Gemma 3 270M: a batch of long receipts run whole against the same batch run in
parts (``gemmapipe.training.MICRO_BATCH_TOKENS``). Prints figures, never asserts.

    python bench/train_bench.py [--steps 3] [--rounds 2] [--json]

Each run is ``gemmapipe.training.train`` on the 8 longest receipts of SROIE's training split (one batch of 8, the
invoice recipe's batch size, so every step is the worst case), in a process of its own so that its peak RSS is its
own. The two settings alternate, ``--rounds`` times each. Prints seconds per step and peak RSS of each run, and
the ratios of parts to whole (the machine is shared and noisy: compare ratios within one run, not absolute numbers).
The losses of both settings are printed too: the same batch gives the same loss either way.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "datasets" / "sroie" / "train.jsonl"


def run_once(whole: bool, steps: int) -> dict[str, object]:
    """One training run in this process; its figures as a dict."""
    import gemmapipe.training as training
    from gemmapipe.models import ModelStore
    from gemmapipe.plugins import get_plugins
    from gemmapipe.labelled import read_labelled

    if whole:
        training.MICRO_BATCH_TOKENS = 10**9
    records = sorted(read_labelled(DATA), key=lambda r: len(r[0]), reverse=True)[:8]
    task = get_plugins().registry().task("invoice")
    config = training.TrainConfig(max_steps=steps, batch_size=8, dev_fraction=0.0, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as out:
        metadata = training.train(task, records, Path(out) / "adapter", ModelStore(notify=lambda message: None), config)
        history = json.loads((Path(out) / "adapter" / "checkpoint" / "state.json").read_text())["state"]["history"]
    return {"setting": "whole" if whole else "parts", "seconds_per_step": metadata["train_seconds"] / steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "first_loss": history[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["whole", "parts"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.child == "whole", args.steps)))
        return
    runs = []
    for _ in range(args.rounds):
        for setting in ("whole", "parts"):
            out = subprocess.run([sys.executable, __file__, "--child", setting, "--steps", str(args.steps)],
                                 check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    figures: dict[str, dict[str, float]] = {}
    for setting in ("whole", "parts"):
        mine = [r for r in runs if r["setting"] == setting]
        figures[setting] = {key: median(float(r[key]) for r in mine) for key in ("seconds_per_step", "peak_rss_mb", "first_loss")}
    from gemmapipe.training import MICRO_BATCH_TOKENS

    report = {"runs": runs, "median": figures, "micro_batch_tokens": MICRO_BATCH_TOKENS,
              "parts_over_whole": {key: figures["parts"][key] / figures["whole"][key] for key in ("seconds_per_step", "peak_rss_mb")}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for run in runs:
        print(f"{run['setting']:>5}: {run['seconds_per_step']:.1f} s/step, peak RSS {run['peak_rss_mb']:.0f} MB, "
              f"first loss {run['first_loss']:.4f}")
    ratio = report["parts_over_whole"]
    print(f"parts ({report['micro_batch_tokens']} tokens) / whole batch: {ratio['seconds_per_step']:.2f}x the time per step, "
          f"{ratio['peak_rss_mb']:.2f}x the peak RSS")


if __name__ == "__main__":
    main()
