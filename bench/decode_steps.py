"""Where a receipt's time goes on one CPU core: prefill and decoding steps of CTranslate2 by batch size.

    python bench/decode_steps.py [--length 370] [--steps 70] [--task invoice] [--json]

Loads the task's int8 model once per setting and, for batches of 1, 2, 4 and 8 equal-length prompts (test records
cut to ``--length`` tokens), times a prefill (one output token) and a run of ``--steps`` forced answer tokens, on one
single-threaded replica; then a batch of one on one replica of two threads. Prints each setting's seconds per record
and its ratio to a lone record on one thread, measured in the same run (the machine is shared: compare ratios).
No grammar: this is the engine's floor, what gemmapipe's decoding adds nothing to. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gemmapipe.labelled import read_labelled  # noqa: E402
from gemmapipe.models import ModelStore  # noqa: E402
from gemmapipe.plugins import get_plugins  # noqa: E402
from gemmapipe.tokenizer import GemmaTokenizer  # noqa: E402

DATA = REPO.parent / "shared" / "datasets" / "sroie" / "test.jsonl"


def measure(generator, prompts: list[list[str]], steps: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds of a prefill and of ``steps`` decoding steps for one batch."""
    start = time.perf_counter()
    generator.generate_batch(prompts, max_length=1, include_prompt_in_result=False, beam_size=1)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    generator.generate_batch(prompts, max_length=steps + 1, min_length=steps + 1, include_prompt_in_result=False,
                             beam_size=1, sampling_topk=1)
    decoding = time.perf_counter() - start - prefill
    batch = len(prompts)
    return {"batch": batch, "prefill_s": prefill, "prefill_tokens_per_s": batch * len(prompts[0]) / prefill,
            "step_ms": 1000 * decoding / steps, "step_ms_per_record": 1000 * decoding / steps / batch,
            "seconds_per_record": (prefill + decoding) / batch}


def main() -> None:
    import ctranslate2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="invoice")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--length", type=int, default=370)
    parser.add_argument("--steps", type=int, default=70)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    task = get_plugins().registry().task(args.task)
    model_dir = ModelStore().ctranslate2_dir(task.adapter, "int8", task.model_answers)
    tokenizer = GemmaTokenizer(model_dir / "tokenizer.json")
    encoded = [tokenizer.encode_prompt(task.prompt(text)) for text, _ in read_labelled(args.data, 200)]
    prompts = [tokenizer.tokens(ids[: args.length]) for ids in encoded if len(ids) >= args.length][:8]
    rows = []
    for threads, batches in ((1, (1, 2, 4, 8)), (2, (1,))):
        generator = ctranslate2.Generator(str(model_dir), device="cpu", compute_type="int8", inter_threads=1,
                                          intra_threads=threads)
        generator.generate_batch([prompts[0]], max_length=2, include_prompt_in_result=False)  # warm-up
        for batch in batches:
            rows.append({"threads": threads, **measure(generator, (prompts * 8)[:batch], args.steps)})
        del generator
    alone = rows[0]["seconds_per_record"]
    for row in rows:
        row["speed_vs_lone_record"] = alone / row["seconds_per_record"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.task}: prompts of {args.length} tokens, {args.steps} answer tokens, int8, one replica")
    print("threads batch  prefill (tokens/s)  step ms  per record ms  s/record  speed vs a lone record")
    for r in rows:
        print(f"{r['threads']:>7} {r['batch']:>5}  {r['prefill_s']:6.2f} s ({r['prefill_tokens_per_s']:5.0f})  "
              f"{r['step_ms']:7.1f}  {r['step_ms_per_record']:13.1f}  {r['seconds_per_record']:8.2f}  "
              f"{r['speed_vs_lone_record']:.2f}x")


if __name__ == "__main__":
    main()
