"""Grammar-constrained greedy decoding with a torch model: how `gemmapipe train` scores its dev split while it trains.

The answers it gives are those the engine gives (same prompts, same grammar, greedy), up to floating-point
differences between torch and CTranslate2's int8 model; so the dev figures that choose the best checkpoint measure
what users will get, which a dev loss does not (a lower loss can come with worse answers).

Here the grammar's mask is applied at every step (torch lets a logits processor see every step), so no repair
pass is needed. Only training imports this module: it needs torch and transformers.
"""

from __future__ import annotations

from collections.abc import Sequence

from llguidance import LLMatcher

from .decoding import DecodeState
from .engine import Generation, finish_generation
from .tasks import Task
from .tokenizer import GemmaTokenizer


class _GrammarMask:
    """A transformers logits processor that lets each row take only the tokens its grammar allows."""

    def __init__(self, states: list[DecodeState], pad_id: int, vocab: int) -> None:
        from llguidance.torch import allocate_token_bitmask

        self.states = states
        self.pad_id = pad_id
        self.started = False
        self.mask = allocate_token_bitmask(len(states), vocab)

    def __call__(self, input_ids, scores):  # type: ignore[no-untyped-def]
        from llguidance.torch import apply_token_bitmask_inplace, fill_next_token_bitmask

        if self.started:  # the token each row took at the step before
            for row, state in enumerate(self.states):
                if not state.done and not state.accept(int(input_ids[row, -1])):
                    state.done = True
                    state.grammar_error = state.matcher.get_error() or "the grammar rejected the model's token"
        self.started = True
        finished = []
        for row, state in enumerate(self.states):
            if state.done:
                finished.append(row)
            else:
                fill_next_token_bitmask(state.matcher, self.mask, row)
        scores = scores.float()
        apply_token_bitmask_inplace(scores, self.mask.to(scores.device))
        for row in finished:  # a finished row only pads
            scores[row] = float("-inf")
            scores[row, self.pad_id] = 0.0
        return scores


def decode(  # type: ignore[no-untyped-def]
    model,
    tokenizer: GemmaTokenizer,
    task: Task,
    texts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 16,
) -> list[Generation]:
    """Answer ``texts`` for ``task`` with ``model`` (a transformers causal LM, LoRA or not), greedily under the task's
    grammar; in the order of ``texts``. The model is put in eval mode for the call and back in train mode after."""
    import torch

    guidance = tokenizer.guidance
    pad_id = tokenizer.hf.token_to_id("<pad>") or 0
    was_training = model.training
    model.eval()
    # transformers hands the output layer a strided slice of the last positions; torch multiplies such a 3-D input by
    # copying the 262,144 x 640 weight once per row (5.4 GB and 12 s for 8 rows). A contiguous input is one product.
    output_layer = model.get_output_embeddings()
    hook = output_layer.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    device = next(model.parameters()).device
    results: list[Generation] = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            prompts = [tokenizer.encode_prompt(task.prompt(text)) for text in chunk]
            states = [
                DecodeState(
                    ids,
                    LLMatcher(guidance, task.compiled.grammar_for(task.source(text)), log_level=0),
                    max_new_tokens,
                    tokenizer.stop_ids,
                )
                for ids, text in zip(prompts, chunk)
            ]
            longest = max(len(ids) for ids in prompts)
            ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
            mask = torch.zeros((len(prompts), longest), dtype=torch.long)
            for row, prompt in enumerate(prompts):  # padded on the left: every row's next token is at the end
                ids[row, longest - len(prompt) :] = torch.tensor(prompt)
                mask[row, longest - len(prompt) :] = 1
            processor = _GrammarMask(states, pad_id, guidance.vocab_size)
            with torch.no_grad():
                output = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens + 1,
                    do_sample=False,
                    logits_processor=[processor],
                    eos_token_id=list(tokenizer.stop_ids),
                    pad_token_id=pad_id,
                )
            for row, state in enumerate(states):  # the last step's tokens, which no later call of the processor saw
                if not state.done:
                    token = int(output[row, -1])
                    if token != pad_id and not state.accept(token):
                        state.grammar_error = state.matcher.get_error() or "the grammar rejected the model's token"
                    if not state.done and not state.grammar_error:
                        state.done = state.truncated = True
            results.extend(
                finish_generation(tokenizer, state, task.compiled, len(states), scored=False) for state in states
            )
    finally:
        hook.remove()
        if was_training:
            model.train()
    return results
