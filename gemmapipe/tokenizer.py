"""The tokenizer: ``tokenizers`` for text, llguidance's view of the same vocabulary for the grammar."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from llguidance import LLTokenizer
from tokenizers import Tokenizer

from .errors import SetupError
from .prompts import END_OF_TURN, Prompt, Special

EOS_NAME = "<eos>"


class GemmaTokenizer:
    """Encodes prompts (text and special tokens) and decodes answers; built from a ``tokenizer.json``."""

    def __init__(self, tokenizer_json: Path) -> None:
        self.path = tokenizer_json
        self._json_text = tokenizer_json.read_text(encoding="utf-8")
        self.hf = Tokenizer.from_str(self._json_text)
        missing = [n for n in ("<bos>", EOS_NAME, END_OF_TURN.name, "<start_of_turn>") if self.hf.token_to_id(n) is None]
        if missing:
            raise SetupError(
                f"the tokenizer {tokenizer_json} lacks the special tokens {', '.join(missing)}",
                "use a Gemma 3 tokenizer (the model's own tokenizer.json)",
            )
        self.eos_id: int = self.hf.token_to_id(EOS_NAME)
        self.end_of_turn_id: int = self.hf.token_to_id(END_OF_TURN.name)
        #: generation stops at either token; the grammar ends the answer with ``<end_of_turn>``
        self.stop_ids: tuple[int, int] = (self.end_of_turn_id, self.eos_id)
        self._added_special = {i: t.content for i, t in self.hf.get_added_tokens_decoder().items() if t.special}

    @cached_property
    def guidance(self) -> LLTokenizer:
        """llguidance's tokenizer (about 2.5 s to build for the 262k vocabulary, so built on first use).

        Without llguidance's "slices": they speed up computing a full token mask (0.03 ms instead of 0.6 ms per
        step), but cost ~0.9 s of every start, and gemmapipe computes a mask only on a repair, whose model call
        takes far longer (see decoding.py)."""
        return LLTokenizer(self._json_text, eos_token=list(self.stop_ids), slices=[])

    def special_id(self, special: Special) -> int:
        token_id = self.hf.token_to_id(special.name)
        if token_id is None:
            raise SetupError(f"the tokenizer has no special token {special.name}", "use a Gemma 3 tokenizer")
        return token_id

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt; text pieces never turn into special tokens."""
        ids: list[int] = []
        for piece in prompt:
            if isinstance(piece, Special):
                ids.append(self.special_id(piece))
            else:
                ids.extend(self.encode_text(piece))
        return ids

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text. Special-token names inside it stay ordinary text (no prompt injection)."""
        ids = self.hf.encode(text, add_special_tokens=False).ids
        found = {self._added_special[i] for i in ids if i in self._added_special}
        if not found:
            return ids
        # tokenizers matches added tokens inside text: cut each such name after its first character
        pieces = [text]
        for name in found:
            pieces = [part for piece in pieces for part in _cut(piece, name)]
        return [i for piece in pieces if piece for i in self.hf.encode(piece, add_special_tokens=False).ids]

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True)

    def tokens(self, ids: list[int]) -> list[str]:
        """Token strings, as CTranslate2 wants them."""
        return [self.hf.id_to_token(i) for i in ids]


def _cut(text: str, name: str) -> list[str]:
    """``text`` in pieces such that no piece holds ``name`` whole (``a<eos>b`` -> ``a``, ``<``, ``eos>``, ``b``)."""
    parts = text.split(name)
    pieces: list[str] = []
    for k, part in enumerate(parts):
        pieces.append(part)
        if k < len(parts) - 1:
            pieces += [name[:1], name[1:]]
    return pieces
