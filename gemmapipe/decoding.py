"""Grammar-constrained greedy decoding on CTranslate2 ("optimistic" decoding).

CTranslate2 has no logits-processor hook in Python, so the grammar is applied around it:

1. *Free run*: the model decodes greedily; a per-step callback feeds each token to the record's llguidance
   matcher and stops that record at the first token the grammar rejects (or when its answer is complete).
2. *Repair*: for every stopped record, one batched step returns the full next-token distribution for the
   accepted prefix; the grammar's mask is applied, the best allowed token is taken, plus any tokens the
   grammar forces next. Then back to 1 for those records.

A well-trained adapter makes repairs rare, so the common case is one free run per batch. Every accepted
token has passed the grammar, so the answer always parses.

A record also stops as soon as the grammar leaves it no choice up to the end of the answer (the rest of an enum
value once its prefix is unique, the closing ``"}``, the end-of-turn token): those tokens are appended without
spending a model step on each. On a classification task that is about half of the answer's steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from llguidance import LLMatcher
from llguidance.numpy import allocate_token_bitmask, apply_token_bitmask_inplace, fill_next_token_bitmask

from .tokenizer import GemmaTokenizer


class StopFlag(Protocol):
    """What decoding polls to stop early: a :class:`threading.Event`, or anything with ``is_set()``."""

    def is_set(self) -> bool: ...


class Cancelled(Exception):
    """Decoding was stopped through the ``cancel`` event (for instance on Ctrl-C)."""


@dataclass
class DecodeState:
    """One record's decoding: its prompt, the tokens accepted so far and how it ended."""

    prompt_ids: list[int]
    matcher: LLMatcher
    limit: int
    stop_ids: tuple[int, ...]
    accepted: list[int] = field(default_factory=list)
    #: for each accepted token, the log-probability the model gave it, or None where the grammar forced it
    logprobs: list[float | None] = field(default_factory=list)
    repairs: int = 0
    done: bool = False
    truncated: bool = False
    rejected: bool = False
    grammar_error: str | None = None

    def accept(self, token: int, logprob: float | None = None) -> bool:
        """Feed one token to the grammar; False (and nothing changes) if the grammar rejects it. ``logprob``: the
        model's log-probability of the token (None: the grammar forced it)."""
        if self.matcher.try_consume_tokens([token]) != 1:
            return False
        if token not in self.stop_ids:  # the stop token itself is not part of the answer
            self.accepted.append(token)
            self.logprobs.append(logprob)
        if self.matcher.is_stopped():
            self.done = True
        elif len(self.accepted) >= self.limit:
            self.done = self.truncated = True
        return True

    def finish_if_forced(self, only_stop: np.ndarray) -> bool:
        """If the grammar allows nothing but one sequence of tokens up to the end of the answer, accept them and
        return True (the record is done). ``only_stop`` is a scratch bitmask (see :func:`_only_stop_allowed`).

        Otherwise nothing changes and False is returned."""
        if self.done:
            return True
        forced = self.matcher.compute_ff_tokens()
        if not forced and not self.matcher.is_accepting():
            return False  # the common case mid-answer: the model has a choice
        consumed = self.matcher.try_consume_tokens(forced) if forced else 0
        complete = consumed == len(forced) and (
            self.matcher.is_stopped()
            or (self.matcher.is_accepting() and _only_stop_allowed(self.matcher, only_stop, self.stop_ids))
        )
        if consumed:
            self.matcher.rollback(consumed)
        if not complete:
            return False
        for token in [*forced, self.stop_ids[0]]:  # through accept(), which keeps the length limit
            if self.done or not self.accept(token):
                break
        self.done = True
        return True


def _only_stop_allowed(matcher: LLMatcher, mask: np.ndarray, stop_ids: tuple[int, ...]) -> bool:
    """Whether the grammar's next token can only be a stop token (the answer is complete)."""
    fill_next_token_bitmask(matcher, mask, 0)
    words = mask[0].view(np.uint32).copy()
    stop_allowed = False
    for token in stop_ids:
        word, bit = divmod(token, 32)
        if word < words.size and words[word] >> np.uint32(bit) & 1:
            stop_allowed = True
            words[word] &= ~np.uint32(1 << bit)
    return stop_allowed and not words.any()


def decode_batch(  # type: ignore[no-untyped-def]
    generator,  # ctranslate2.Generator
    tokenizer: GemmaTokenizer,
    states: list[DecodeState],
    cancel: StopFlag | None = None,
    output_ids: np.ndarray | None = None,
) -> None:
    """Decode every state to completion (in place). Raises :class:`Cancelled` if ``cancel`` gets set.

    ``output_ids``: for a model whose output layer scores only some tokens, the tokenizer id of each of its rows
    (see :func:`gemmapipe.convert.transformers_to_ctranslate2`)."""
    end_tokens = tokenizer.tokens(list(tokenizer.stop_ids))
    while True:
        for state in states:
            take_forced(state)
        active = [s for s in states if not s.done]
        if not active:
            return
        _free_run(generator, tokenizer, active, end_tokens, cancel, output_ids)
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        stopped = [s for s in active if not s.done]
        for state in stopped:
            if not state.rejected and state.matcher.is_accepting():
                state.done = True  # the model stopped where the grammar may stop
        to_repair = [s for s in stopped if not s.done]
        if to_repair:
            _repair(generator, tokenizer, to_repair, output_ids)


def take_forced(state: DecodeState) -> list[int]:
    """Accept the tokens the grammar allows as the only continuation (for instance ``{"`` at the start); return
    those accepted (a stop token among them ends the state)."""
    taken: list[int] = []
    if state.done:
        return taken
    for token in state.matcher.compute_ff_tokens():
        if state.done or not state.accept(token):
            break
        taken.append(token)
    return taken


def _free_run(generator, tokenizer, active, end_tokens, cancel, output_ids) -> None:  # type: ignore[no-untyped-def]
    for state in active:
        state.rejected = False
    only_stop = allocate_token_bitmask(1, tokenizer.guidance.vocab_size)

    def on_token(step) -> bool:  # type: ignore[no-untyped-def]
        if cancel is not None and cancel.is_set():
            return True
        state = active[step.batch_id]
        if state.done:
            return True
        token = step.token_id if output_ids is None else int(output_ids[step.token_id])
        if not state.accept(token, step.log_prob):
            state.rejected = True
            return True
        return state.finish_if_forced(only_stop)

    prefixes = [tokenizer.tokens(s.prompt_ids + s.accepted) for s in active]
    # CTranslate2 prefills a batch only up to its shortest prefix and feeds the rest of each longer one
    # through the decoding loop, where those steps count towards max_length (the callback does not see them).
    shortest = min(len(p) for p in prefixes)
    generator.generate_batch(
        prefixes,
        max_length=max(s.limit - len(s.accepted) + len(p) - shortest for s, p in zip(active, prefixes)) + 1,
        include_prompt_in_result=False,
        end_token=end_tokens,
        sampling_topk=1,
        beam_size=1,
        return_scores=True,  # each step's log-probability, for the answer's confidence (grounding.py)
        callback=on_token,
    )


def _repair(generator, tokenizer, states, output_ids) -> None:  # type: ignore[no-untyped-def]
    # One step of the full distribution per prefix. Prefixes of one call must have the same length: with
    # mixed lengths CTranslate2 spends the single step on the longer prefixes' remaining prompt tokens.
    by_length: dict[int, list[DecodeState]] = {}
    for state in states:
        by_length.setdefault(len(state.prompt_ids) + len(state.accepted), []).append(state)
    vocab = tokenizer.guidance.vocab_size
    mask = allocate_token_bitmask(1, vocab)
    for group in by_length.values():
        results = generator.generate_batch(
            [tokenizer.tokens(s.prompt_ids + s.accepted) for s in group],
            max_length=1,
            include_prompt_in_result=False,
            return_logits_vocab=True,
            beam_size=1,
        )
        for state, result in zip(group, results):
            logits = np.array(result.logits[0], dtype=np.float32)
            if output_ids is not None:  # rows of the output layer -> the tokenizer's ids
                scattered = np.full(vocab, -np.inf, dtype=np.float32)
                scattered[output_ids] = logits[: len(output_ids)]
                logits = scattered
            state.repairs += 1
            take_best_allowed(state, logits.reshape(1, -1), mask, vocab)


def take_best_allowed(state: DecodeState, logits: np.ndarray, mask: np.ndarray, vocab: int) -> int | None:
    """Accept the highest-scoring token of ``logits`` (one row of next-token scores) that the grammar allows, with
    its log-probability under the model's own, unmasked distribution; return it. At a dead end (no allowed token),
    the state is done with a grammar error and None is returned. ``mask`` is a scratch bitmask (one row)."""
    fill_next_token_bitmask(state.matcher, mask, 0)
    if logits.shape[1] < vocab:  # a model whose output layer is smaller than the tokenizer's vocabulary
        logits = np.pad(logits, ((0, 0), (0, vocab - logits.shape[1])), constant_values=-np.inf)
    logits = logits[:, :vocab]
    finite = logits[0][np.isfinite(logits[0])]
    top = float(finite.max()) if finite.size else 0.0
    log_total = (
        top + float(np.log(np.exp(finite - top).sum())) if finite.size else 0.0
    )  # before the mask: the model's own view
    apply_token_bitmask_inplace(logits, mask)
    best = int(np.argmax(logits[0]))
    if not np.isfinite(logits[0, best]) or not state.accept(best, float(logits[0, best]) - log_total):
        state.done = True
        state.grammar_error = state.matcher.get_error() or "the grammar allows no next token"
        return None
    return best
