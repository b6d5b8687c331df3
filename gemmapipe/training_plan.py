"""What `gemmapipe train` decides from the data before it starts, and what it tells the user when it ends.

- :func:`plan_steps`: the run's length from the dataset's size when ``--epochs`` is not given: enough optimiser
  steps for a small set (several epochs), one epoch or a little more for a large one;
- :func:`learning_rate_at`: linear warm-up, then cosine decay; :func:`extension_steps` and :func:`still_rising`: a
  default-length run whose dev metric still rises at its planned end goes on (a warm restart, at most twice);
- :func:`dev_metric`: the dev figure that picks the checkpoint (field F1, accuracy or similarity; see below);
- :func:`copy_rates` and :func:`advice`: how often each field's labels are runs of the text, and plain words on
  whether the adapter looks undertrained, overfitted or weak, with what to try.

No torch here: these are pure functions of counts and curves, tested by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .evaluate import EvalReport, is_run_of
from .grammar import COPY_KEYWORD

#: Optimiser steps a run aims at when the epochs are not given: a 500-record set gets ~5 epochs, a 2,000-record set
#: ~1.3, a larger one a single epoch. Early stopping on the dev metric ends a run sooner when it stops improving.
TARGET_STEPS = 300
MAX_AUTO_EPOCHS = 8.0
#: Dev checks a run aims at (:func:`eval_interval`), each decoding at most ``DEV_DECODE_RECORDS`` dev records.
EVAL_CHECKS = 8
DEV_DECODE_RECORDS = 64
WARMUP_FRACTION = 0.06
#: A default-length run whose dev metric is still rising at its planned end (:func:`still_rising`) goes on for
#: ``EXTENSION_FRACTION`` of its planned steps more, at most ``MAX_EXTENSIONS`` times: each extension is a warm restart
#: of the schedule (warm-up, cosine decay) at ``EXTENSION_PEAK`` of the peak learning rate. Many labels or many fields
#: take more steps than a fixed plan gives; the dev curve says when, where the data's size cannot.
MAX_EXTENSIONS = 2
EXTENSION_FRACTION = 0.5
EXTENSION_PEAK = 0.5
#: A field whose labels are runs of the text at least this often is proposed for ``x-copy-from-input``.
COPY_PROPOSAL = 0.95


def plan_steps(train_examples: int, batch_size: int, epochs: float | None, max_steps: int | None) -> tuple[int, float]:
    """The run's optimiser steps and the epochs they make: ``max_steps``, else ``epochs`` of the data, else (the
    default) about :data:`TARGET_STEPS` steps but at least one epoch and at most :data:`MAX_AUTO_EPOCHS`."""
    per_epoch = max(1, math.ceil(train_examples / batch_size))
    if max_steps:
        return max_steps, max_steps / per_epoch
    if epochs is None:
        epochs = min(MAX_AUTO_EPOCHS, max(1.0, TARGET_STEPS / per_epoch))
    total = max(1, round(per_epoch * epochs))
    return total, total / per_epoch


def eval_interval(total_steps: int) -> int:
    """Steps between dev checks when ``--eval-every`` is not given: about :data:`EVAL_CHECKS` checks a run."""
    return max(5, min(100, math.ceil(total_steps / EVAL_CHECKS)))


def learning_rate_at(step: int, total: int, peak: float) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total``: a linear warm-up over the first
    :data:`WARMUP_FRACTION` of the run (at least 5 steps), then a cosine decay to a tenth of ``peak``."""
    warmup = min(max(5, round(total * WARMUP_FRACTION)), max(1, total // 2))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def extension_steps(planned: int) -> int:
    """Steps one extension of a run planned for ``planned`` steps adds."""
    return max(1, round(planned * EXTENSION_FRACTION))


def learning_rate_in(step: int, planned: int, extensions: Sequence[Sequence[int]], peak: float) -> float:
    """The learning rate of step ``step`` (0-based) of a run planned for ``planned`` steps and extended by
    ``extensions`` (``(first step, steps)`` each): the planned run's schedule, then in each extension a schedule of its
    own (:func:`learning_rate_at` over the extension's steps) peaking at ``EXTENSION_PEAK`` of ``peak``."""
    for start, length in reversed(extensions):
        if step >= start:
            return learning_rate_at(step - start, length, peak * EXTENSION_PEAK)
    return learning_rate_at(step, planned, peak)


def still_rising(curve: list[dict[str, Any]], since: int | None = None) -> bool:
    """Whether the dev metric was still rising at the last check of ``curve``: it is the best so far, and gained more
    than a point over the check before or more than two over the last three checks. With ``since`` (the first step of
    the extension that just ended): more than a point over the best check up to that step, since a warm restart dips
    the figure and the decay brings it back, which looks like a rise over the last checks without being one."""
    if len(curve) < 2:
        return False
    last, earlier = curve[-1], curve[-3] if len(curve) >= 3 else curve[0]
    if any(c["value"] > last["value"] for c in curve[:-1]):
        return False
    if since is not None:
        before = [c["value"] for c in curve if c["step"] <= since]
        return bool(before) and last["value"] - max(before) > 0.01
    return last["value"] - curve[-2]["value"] > 0.01 or last["value"] - earlier["value"] > 0.02


@dataclass(frozen=True)
class DevMetric:
    name: str
    value: float


def dev_metric(kind: str, report: EvalReport) -> DevMetric:
    """The dev figure a run keeps its best checkpoint by: accuracy for ``classify`` (every field right), mean
    character similarity for ``rewrite`` (near misses matter), field-value F1 (micro) for anything else."""
    if kind == "classify":
        return DevMetric("accuracy", report.record_exact_match)
    if kind == "rewrite":
        return DevMetric("similarity", report.mean_field_similarity)
    return DevMetric("field F1", report.micro["f1"])


def copy_rates(schema: dict[str, Any], data: list[tuple[str, Any]]) -> dict[str, float]:
    """For each top-level string field of ``schema``: how often its labels in ``data`` are runs of their record's
    text (see :func:`gemmapipe.evaluate.is_run_of`), over the records that give it a non-empty string."""
    rates = {}
    for name, spec in (schema.get("properties") or {}).items():
        types = spec.get("type") if isinstance(spec, dict) else None
        if not (types == "string" or (isinstance(types, list) and "string" in types)):
            continue
        values = [
            (expected[name], text)
            for text, expected in data
            if isinstance(expected, dict) and isinstance(expected.get(name), str) and expected[name].strip()
        ]
        if values:
            rates[name] = sum(is_run_of(value, text) for value, text in values) / len(values)
    return rates


def _at_least(rates: dict[str, float], fields: list[str]) -> str:
    lowest = min(rates[f] for f in fields)
    return "100%" if lowest >= 1.0 else f"{lowest:.0%} or more"


def copy_advice(schema: dict[str, Any], rates: dict[str, float]) -> list[str]:
    """Lines on the fields whose labels are (nearly always, or mostly not) runs of the text."""
    properties = schema.get("properties") or {}
    lines = []
    copyable = [f for f, r in rates.items() if r >= COPY_PROPOSAL and not properties[f].get(COPY_KEYWORD)]
    if copyable:
        shown = (
            ", ".join(f"{f} {rates[f]:.0%}" for f in copyable)
            if len(copyable) <= 6
            else f"all of {len(copyable)} fields ({', '.join(copyable[:3])}, ...) at {_at_least(rates, copyable)}"
            if len(copyable) == len(rates)
            else f"{len(copyable)} fields ({', '.join(copyable[:3])}, ...) at {_at_least(rates, copyable)}"
        )
        copy_ready = (
            set(schema.get("required") or []) == set(properties) and schema.get("additionalProperties") is False
        )
        how = (
            f'Mark these fields "{COPY_KEYWORD}": true in the schema and decoding can only copy them from each record\'s '
            "text, never invent them (the adapter need not be retrained)"
            if copy_ready
            else f'Decoding could copy them from each record\'s text ("{COPY_KEYWORD}": true), but only in a schema whose fields '
            "are all required and no others allowed: a field that may be absent would be required and nullable "
            '("type": ["string", "null"]), which changes the answers, so the adapter would be trained again'
        )
        lines.append(f"labels that are runs of the text: {shown}. {how}")
    rare = [f for f, r in rates.items() if r < 0.5]
    if rare:
        lines.append(
            "labels mostly not found in the text: "
            + ", ".join(f"{f} {rates[f]:.0%}" for f in rare)
            + "; the adapter must write these from what it learned, which takes more examples than copying"
        )
    return lines


def advice(
    curve: list[dict[str, Any]],
    best_step: int | None,
    stopped_early: bool,
    patience: int,
    final_train_loss: float | None,
    invalid_dev: int = 0,
    planned: int | None = None,
    extensions: Sequence[Sequence[int]] = (),
) -> list[str]:
    """Plain-language verdict on a finished run from its dev checks (``curve``: dicts with ``step``, ``loss``,
    ``metric``, ``value``), in the order they were made, and the run's plan (``planned`` steps, ``extensions`` as in
    :func:`learning_rate_in`). Empty when there was no dev set."""
    if not curve:
        return ["no dev set, so nothing says how good the adapter is: keep --dev-fraction above 0 or give --dev-data"]
    best = next(c for c in curve if c["step"] == best_step) if best_step is not None else curve[-1]
    name = best["metric"]
    lines = [
        f"best dev {name} {best['value']:.1%} at step {best['step']} (dev loss {best['loss']:.3f}); that checkpoint is the adapter"
    ]
    if extensions:
        lines.append(
            f"dev {name} was still rising at the planned end (step {planned}), so the run went on for "
            f"{sum(length for _, length in extensions)} more steps ({len(extensions)} extension{'s' * (len(extensions) > 1)} "
            f"of at most {MAX_EXTENSIONS}, each a fresh warm-up and decay at {EXTENSION_PEAK:.0%} of the learning rate)"
        )
    last = curve[-1]
    earlier = curve[-3] if len(curve) >= 3 else curve[0]
    if extensions and best["step"] <= extensions[-1][0]:
        lines.append(
            f"the last extension (steps {extensions[-1][0]}-{extensions[-1][0] + extensions[-1][1]}) did not beat it: more "
            "steps do not help this data; more labelled records would"
        )
    elif best is last and still_rising(curve, extensions[-1][0] if extensions else None):
        lines.append(
            f"looks undertrained: dev {name} was still rising at the end ({earlier['value']:.1%} at step {earlier['step']}, "
            f"{last['value']:.1%} at step {last['step']}); train longer: continue this adapter with --init-adapter "
            "(the same data and seed: the next epochs), or run again with a higher --epochs"
        )
    elif stopped_early:
        overfit = (
            final_train_loss is not None
            and best["loss"] > 0
            and min(c["loss"] for c in curve) < last["loss"] * 0.9
            and final_train_loss < 0.5 * last["loss"]
        )
        lines.append(
            f"dev {name} stopped improving after step {best['step']} ({patience} checks without a gain), so training stopped"
            + (
                "; dev loss rose while training loss kept falling: it started to overfit. More labelled records would "
                "help more than more epochs"
                if overfit
                else ""
            )
        )
    if best["value"] < 0.6:
        lines.append(
            f"dev {name} is low: check that the labels follow from the text (see the field lines above), that the schema's "
            "field names and descriptions say what each field holds, and add labelled records (a few hundred per field or label)"
        )
    if invalid_dev:
        lines.append(f"{invalid_dev} dev answers were errors (too long for the answer limit, or a grammar dead end)")
    return lines
