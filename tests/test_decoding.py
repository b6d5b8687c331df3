"""Grammar-constrained decoding details, on the tiny model's tokenizer: a forced tail costs no model steps."""

from __future__ import annotations

import numpy as np
from llguidance import LLMatcher
from llguidance.numpy import allocate_token_bitmask

from gemmapipe.decoding import DecodeState
from gemmapipe.grammar import compile_schema
from gemmapipe.prompts import chat_prompt

LABELS = compile_schema({"type": "object", "properties": {"label": {"enum": ["alpha tango", "beta"]}},
                         "required": ["label"], "additionalProperties": False})
NUMBER = compile_schema({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
                         "additionalProperties": False})


def _state(engine, compiled, limit=64) -> tuple[DecodeState, np.ndarray]:
    tokenizer = engine.tokenizer
    matcher = LLMatcher(tokenizer.guidance, compiled.grammar, log_level=0)
    state = DecodeState(tokenizer.encode_prompt(chat_prompt("Classify.", "x")), matcher, limit, tokenizer.stop_ids)
    return state, allocate_token_bitmask(1, tokenizer.guidance.vocab_size)


def _feed(state: DecodeState, engine, text: str) -> None:
    for token in engine.tokenizer.encode_text(text):
        assert state.accept(token), text


def test_the_rest_of_an_enum_value_is_taken_once_its_prefix_is_unique(tiny_engine):
    state, mask = _state(tiny_engine, LABELS)
    _feed(state, tiny_engine, '{"label":"al')
    assert state.finish_if_forced(mask)
    assert state.done and not state.truncated and state.matcher.is_stopped()
    assert tiny_engine.tokenizer.decode(state.accepted) == '{"label":"alpha tango"}'


def test_nothing_is_taken_while_the_model_still_has_a_choice(tiny_engine):
    state, mask = _state(tiny_engine, LABELS)
    _feed(state, tiny_engine, '{"label":"')  # alpha or beta: the model chooses
    before = list(state.accepted)
    assert not state.finish_if_forced(mask)
    assert state.accepted == before and not state.done
    _feed(state, tiny_engine, 'beta')  # the matcher was left where it was: the answer goes on as usual
    assert state.finish_if_forced(mask)
    assert tiny_engine.tokenizer.decode(state.accepted) == '{"label":"beta"}'


def test_an_accepting_state_that_may_go_on_is_not_ended(tiny_engine):
    state, mask = _state(tiny_engine, NUMBER)
    _feed(state, tiny_engine, '{"n":12')  # "12" may become "123": not the end
    assert not state.finish_if_forced(mask) and not state.done
    _feed(state, tiny_engine, '}')  # now only the end of the turn may follow
    assert state.finish_if_forced(mask) and state.matcher.is_stopped()
    assert tiny_engine.tokenizer.decode(state.accepted) == '{"n":12}'


def test_a_forced_tail_still_keeps_the_length_limit(tiny_engine):
    state, mask = _state(tiny_engine, LABELS, limit=7)
    _feed(state, tiny_engine, '{"label":"al')
    assert len(state.accepted) < 7
    assert state.finish_if_forced(mask)
    assert state.truncated and len(state.accepted) == 7
