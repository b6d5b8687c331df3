"""Engine benchmark on the real Gemma 3 270M (int8): prints figures, never asserts.

    python bench/engine_bench.py [--records 32] [--threads N] [--json]

Prints, all measured in this one run (the machine is shared and noisy: compare ratios, not absolute numbers):
- unconstrained decode tokens/s at batch 1, 8 and 32 (same-length prompts, fixed output length);
- prefill tokens/s (a batch of long prompts, one output token);
- constrained generation (grammar + repairs) against unconstrained generation on the same prompts at batch 32
  (banking77) and 8 (invoice), each task with its built-in adapter (``--base-model``: without):
  output tokens/s of each and their ratio, repairs per record, time in the grammar callback;
- invoice records/s with batches of prompts within ``MAX_PROMPT_SPREAD`` tokens of each other against batches cut
  from the length-sorted list whatever their spread (alternating, twice each, same engine);
- invoice records/s with its schema's copied, patterned date and total (a grammar per record) against the same
  schema without them (one grammar for all), alternating, twice each, same engine; and the time to build a
  record's grammar and matcher with each;
- peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

from llguidance import LLMatcher

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gemmapipe.engine import MAX_PROMPT_SPREAD, Engine, length_batches  # noqa: E402
from gemmapipe.grammar import COPY_KEYWORD, compile_schema  # noqa: E402
from gemmapipe.plugins import get_plugins  # noqa: E402
from gemmapipe.prompts import chat_prompt  # noqa: E402
from gemmapipe.tasks import Task  # noqa: E402

DATA = REPO.parent / "shared" / "datasets"


def load_texts(name: str, n: int) -> list[str]:
    path = DATA / name / "test.jsonl"
    if not path.exists():
        path = REPO / "examples" / "receipts.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return (texts * (n // max(1, len(texts)) + 1))[:n]


def decode_tps(engine: Engine, batch: int, new_tokens: int = 48) -> float:
    prompt = engine.tokenizer.tokens(engine.tokenizer.encode_prompt(chat_prompt("Describe.", "The capital of France is")))
    start = time.perf_counter()
    engine.generator.generate_batch([prompt] * batch, min_length=new_tokens, max_length=new_tokens,
                                    include_prompt_in_result=False, end_token=[], sampling_topk=1)
    return batch * new_tokens / (time.perf_counter() - start)


def prefill_tps(engine: Engine, texts: list[str], batch: int = 8) -> float:
    ids = [engine.tokenizer.encode_prompt(chat_prompt("Extract.", t)) for t in texts[:batch]]
    shortest = min(len(i) for i in ids)
    prompts = [engine.tokenizer.tokens(i[:shortest]) for i in ids]  # equal lengths: one prefill per batch
    start = time.perf_counter()
    engine.generator.generate_batch(prompts, max_length=1, include_prompt_in_result=False)
    return batch * shortest / (time.perf_counter() - start)


def constrained_vs_free(engine: Engine, task: Task, texts: list[str], batch: int) -> dict[str, object]:
    prompts = [task.prompt(t) for t in texts]
    import gemmapipe.decoding as decoding

    spent = [0.0]
    original = decoding.DecodeState.accept

    def timed_accept(self, token):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return original(self, token)
        finally:
            spent[0] += time.perf_counter() - t

    # warm up first (grammar compilation, the model's first allocations): a fresh engine's first call is slower
    requests = [task.request(t) for t in texts]
    engine.generate(requests[:4], task.compiled, max_new_tokens=task.max_new_tokens or 256, batch_size=4)
    decoding.DecodeState.accept = timed_accept  # type: ignore[method-assign]
    start = time.perf_counter()
    results = engine.generate(requests, task.compiled, max_new_tokens=task.max_new_tokens or 256, batch_size=batch)
    constrained_s = time.perf_counter() - start
    decoding.DecodeState.accept = original  # type: ignore[method-assign]
    out_tokens = sum(r.output_tokens for r in results)
    mean_len = max(1, round(out_tokens / len(results)))
    # the same prompts in the same batches, unconstrained, each producing the constrained run's mean answer length
    encoded = [engine.tokenizer.encode_prompt(p) for p in prompts]
    start = time.perf_counter()
    for group in length_batches([len(e) for e in encoded], range(len(encoded)), batch, MAX_PROMPT_SPREAD):
        engine.generator.generate_batch([engine.tokenizer.tokens(encoded[i]) for i in group], min_length=mean_len,
                                        max_length=mean_len, include_prompt_in_result=False, end_token=[], sampling_topk=1)
    free_s = time.perf_counter() - start
    free_tokens = mean_len * len(encoded)
    return {
        "task": task.name,
        "adapter": "built-in" if task.adapter else "none (base model)",
        "records": len(results),
        "valid_rate": sum(r.ok for r in results) / len(results),
        "repairs_per_record": sum(r.repairs for r in results) / len(results),
        "constrained_tokens_per_s": out_tokens / constrained_s,
        "free_tokens_per_s": free_tokens / free_s,
        "constrained_over_free_time_per_token": (constrained_s / out_tokens) / (free_s / free_tokens),
        "grammar_callback_share": spent[0] / constrained_s,
        "records_per_s": len(results) / constrained_s,
    }


def spread_vs_unlimited(engine: Engine, task: Task, texts: list[str], batch: int) -> dict[str, object]:
    """Records/s with the engine's length-spread limit and without it, on the same receipts, alternating."""
    import gemmapipe.engine as engine_module

    prompts = [task.prompt(t) for t in texts]
    requests = [task.request(t) for t in texts]
    limit = engine_module.MAX_PROMPT_SPREAD
    engine.generate(requests[:2], task.compiled, batch_size=2)  # warm-up
    seconds: dict[int, float] = {limit: 0.0, 10**9: 0.0}
    try:
        for _ in range(2):
            for spread in seconds:
                engine_module.MAX_PROMPT_SPREAD = spread
                start = time.perf_counter()
                engine.generate(requests, task.compiled, max_new_tokens=task.max_new_tokens or 256, batch_size=batch)
                seconds[spread] += time.perf_counter() - start
    finally:
        engine_module.MAX_PROMPT_SPREAD = limit
    lengths = [len(engine.tokenizer.encode_prompt(p)) for p in prompts]
    return {
        "records": len(prompts),
        "prompt_tokens_min_max": f"{min(lengths)}-{max(lengths)}",
        "records_per_s_spread_limited": 2 * len(prompts) / seconds[limit],
        "records_per_s_spread_unlimited": 2 * len(prompts) / seconds[10**9],
        "limited_over_unlimited_records_per_s": seconds[10**9] / seconds[limit],
    }


def copied_vs_plain(engine: Engine, task: Task, texts: list[str], batch: int) -> dict[str, object]:
    """Records/s with the task's copied properties (grammar per record) and with a plain schema, alternating."""
    copying = task.compiled
    plain_schema = {**task.schema, "properties": {
        name: {k: v for k, v in sub.items() if k not in (COPY_KEYWORD, "pattern")} if name in copying.copied else sub
        for name, sub in task.schema["properties"].items()}}
    plain = compile_schema(plain_schema)
    prompts = [task.prompt(t) for t in texts]
    sources = [task.source(t) for t in texts]
    requests = [task.request(t) for t in texts]
    engine.generate(requests[:2], copying, batch_size=2)  # warm-up (llguidance's first matcher: ~1 s)
    build_ms = {}
    for name, compiled in (("copied", copying), ("plain", plain)):
        start = time.perf_counter()
        for source in sources:  # what the engine does for each record before decoding it
            LLMatcher(engine.tokenizer.guidance, compiled.grammar_for(source), log_level=0).compute_ff_tokens()
        build_ms[name] = 1000 * (time.perf_counter() - start) / len(sources)
    seconds = {"copied": 0.0, "plain": 0.0}
    answers: dict[str, list[object]] = {}
    for _ in range(2):
        for name, compiled in (("copied", copying), ("plain", plain)):
            start = time.perf_counter()
            results = engine.generate(requests, compiled, max_new_tokens=task.max_new_tokens or 256, batch_size=batch)
            seconds[name] += time.perf_counter() - start
            answers[name] = [r.value for r in results]
    return {
        "records": len(prompts),
        "copied_properties": ", ".join(copying.copied),
        "grammar_and_matcher_ms_per_record_copied": build_ms["copied"],
        "grammar_and_matcher_ms_per_record_plain": build_ms["plain"],
        "records_per_s_copied": 2 * len(prompts) / seconds["copied"],
        "records_per_s_plain": 2 * len(prompts) / seconds["plain"],
        "copied_over_plain_records_per_s": seconds["plain"] / seconds["copied"],
        "records_answered_differently": sum(a != b for a, b in zip(answers["copied"], answers["plain"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--base-model", action="store_true", help="Measure the tasks without their adapters.")
    args = parser.parse_args()

    start = time.perf_counter()
    engine = Engine.load(threads=args.threads)
    _ = engine.tokenizer.guidance
    figures: dict[str, object] = {"load_seconds": time.perf_counter() - start}
    for batch in (1, 8, 32):
        figures[f"decode_tokens_per_s_batch{batch}"] = decode_tps(engine, batch)
    receipts = load_texts("sroie", args.records)
    figures["prefill_tokens_per_s_batch8"] = prefill_tps(engine, receipts)
    registry = get_plugins().registry()
    for name, texts, batch in (("banking77", load_texts("banking77", args.records), 32), ("invoice", receipts[: max(8, args.records // 4)], 8)):
        task = registry.task(name)
        if args.base_model:
            task = replace(task, adapter=None)
        task_engine = Engine.load(task.adapter, threads=args.threads) if task.adapter else engine  # its own merged model
        figures[f"{name}_batch{batch}"] = constrained_vs_free(task_engine, task, texts, batch)
        if name == "invoice":
            figures[f"invoice_batch16_spread{MAX_PROMPT_SPREAD}_vs_unlimited"] = spread_vs_unlimited(task_engine, task, receipts, 16)
            figures["invoice_batch16_copied_vs_plain"] = copied_vs_plain(task_engine, task, receipts, 16)
        if task_engine is not engine:
            task_engine.close()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine.close()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k:40s} {v:.3f}" if isinstance(v, float) else f"  {k:40s} {v}")
        else:
            print(f"{key:42s} {value:.2f}")


if __name__ == "__main__":
    main()
