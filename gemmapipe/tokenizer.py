"""The tokenizer: ``tokenizers`` for text, llguidance's view of the same vocabulary for the grammar."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache, cached_property
from pathlib import Path
from typing import Protocol

from llguidance import LLTokenizer, TokenizerWrapper
from tokenizers import Tokenizer

from .errors import SetupError
from .memory import release_free_memory
from .prompts import END_OF_TURN, Prompt, Special

EOS_NAME = "<eos>"

#: Gemma 3's vocabulary size, and how its tokenizer splits a probe text. transformers before 5.18 converted the GGUF's
#: tokenizer without its merges: words came out in pieces ("hello" as 5 tokens), which the model never saw in
#: training, so answers were garbled while every file looked fine. A tokenizer of this vocabulary must split alike.
GEMMA3_VOCAB_SIZE = 262144
SPLIT_PROBE = "Total: 39.80 at KUALA LUMPUR, hello world"
SPLIT_PROBE_IDS = [
    9640,
    236787,
    236743,
    236800,
    236819,
    236761,
    236828,
    236771,
    657,
    751,
    200471,
    226448,
    236764,
    29104,
    1902,
]


class GemmaTokenizer:
    """Encodes prompts (text and special tokens) and decodes answers; built from a ``tokenizer.json``."""

    def __init__(self, tokenizer_json: Path) -> None:
        self.path = tokenizer_json
        self.hf = Tokenizer.from_file(str(tokenizer_json))
        missing = [
            n for n in ("<bos>", EOS_NAME, END_OF_TURN.name, "<start_of_turn>") if self.hf.token_to_id(n) is None
        ]
        if missing:
            raise SetupError(
                f"the tokenizer {tokenizer_json} lacks the special tokens {', '.join(missing)}",
                "use a Gemma 3 tokenizer (the model's own tokenizer.json)",
            )
        self.eos_id: int = self._id(EOS_NAME)
        self.end_of_turn_id: int = self._id(END_OF_TURN.name)
        #: generation stops at either token; the grammar ends the answer with ``<end_of_turn>``
        self.stop_ids: tuple[int, int] = (self.end_of_turn_id, self.eos_id)
        self._added_special = {i: t.content for i, t in self.hf.get_added_tokens_decoder().items() if t.special}
        self._check_splitting()
        # Parsing Gemma 3's 33 MB tokenizer.json leaves ~190 MB of freed heap resident (316 MB after the load, 123 MB
        # once trimmed): give it back before the model is loaded, so it does not add to the peak.
        release_free_memory()

    def _check_splitting(self) -> None:
        """Refuse a Gemma 3 vocabulary whose tokenizer splits text unlike Gemma 3's (a faulty conversion)."""
        if self.hf.get_vocab_size() != GEMMA3_VOCAB_SIZE:
            return  # another model's vocabulary (the tests' tiny model): nothing to compare with
        if self.hf.encode(SPLIT_PROBE, add_special_tokens=False).ids != SPLIT_PROBE_IDS:
            raise SetupError(
                f"the tokenizer {self.path} splits text unlike Gemma 3's tokenizer (it was converted by a transformers "
                "older than 5.18, or is damaged); the model would read and write garbled text",
                "pip install -U 'transformers>=5.18', then delete the base/ and ct2/ folders of gemmapipe's cache "
                "($GEMMAPIPE_CACHE, else $XDG_CACHE_HOME/gemmapipe or ~/.cache/gemmapipe) so the model is prepared again",
            )

    @cached_property
    def guidance(self) -> LLTokenizer:
        """llguidance's tokenizer, built on first use.

        From the byte strings of the tokens already loaded here where the vocabulary's style is known (about 1.5 s
        for the 262k vocabulary); otherwise llguidance parses ``tokenizer.json`` a second time (about 3 s).
        Without llguidance's "slices": they speed up computing a full token mask (0.03 ms instead of 0.6 ms per
        step), but cost ~0.9 s of every start, and gemmapipe computes a mask only on a repair, whose model call
        takes far longer (see decoding.py)."""
        saved = self.path.parent / TOKEN_BYTES_FILE
        tokens = load_token_bytes(saved, self.hf.get_vocab_size(with_added_tokens=True))
        if tokens is None:
            tokens = token_bytes(self.hf)
            if tokens is not None:
                _save_quietly(tokens, saved)  # a model prepared before the file existed: next runs read it
        if tokens is None:
            return LLTokenizer(self.path.read_text(encoding="utf-8"), eos_token=list(self.stop_ids), slices=[])
        added = self.hf.get_added_tokens_decoder().items()
        special = {i for i, t in added if special_to_guidance(t.special, t.content)}
        return guidance_tokenizer(tokens, self.eos_id, self._id("<bos>"), special, self.stop_ids, self.encode_text)

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

    @cached_property
    def longest_token(self) -> int:
        """The most characters one token of the vocabulary stands for (31 for Gemma 3: a run of spaces)."""
        return max(len(token.replace("\u2581", " ")) for token in self.hf.get_vocab())

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True)

    def tokens(self, ids: list[int]) -> list[str]:
        """Token strings, as CTranslate2 wants them."""
        tokens = [self.hf.id_to_token(i) for i in ids]
        if None in tokens:
            raise ValueError(f"token ids outside the vocabulary: {[i for i, t in zip(ids, tokens) if t is None][:5]}")
        return tokens  # type: ignore[return-value]

    def _id(self, name: str) -> int:
        """The id of a token the constructor checked is there."""
        found = self.hf.token_to_id(name)
        assert found is not None
        return found


class TextTokenizer(Protocol):
    """What the engines and decoding use of a tokenizer: :class:`GemmaTokenizer` (from ``tokenizer.json``), or
    :class:`gemmapipe.llama_vocabulary.LlamaVocabulary` (llama.cpp's copy of the same vocabulary)."""

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Generation stops at any of these tokens."""
        ...

    @property
    def guidance(self) -> LLTokenizer: ...

    @property
    def longest_token(self) -> int: ...

    def encode_prompt(self, prompt: Prompt) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def special_to_guidance(special: bool, text: str) -> bool:
    """Whether llguidance treats an added token as special (never part of text), as its own parse of tokenizer.json
    does: the special ones, and those written like a tag (Gemma's <table>, <h1>, ... are not "special" to tokenizers,
    but are to llguidance)."""
    return special or (text.startswith("<") and text.endswith(">"))


def guidance_tokenizer(
    tokens: list[bytes],
    eos_id: int,
    bos_id: int,
    special_ids: set[int],
    stop_ids: tuple[int, ...],
    encode: Callable[[str], list[int]],
) -> LLTokenizer:
    """llguidance's tokenizer from each token's bytes, the ids llguidance treats as special (never text) and the
    function that encodes plain text."""
    return LLTokenizer(
        TokenizerWrapper(_Vocabulary(tokens, eos_id, bos_id, special_ids, encode)), eos_token=list(stop_ids), slices=[]
    )


class _Vocabulary:
    """What llguidance's ``TokenizerWrapper`` reads: the token bytes, the special tokens and an encoder."""

    def __init__(
        self, tokens: list[bytes], eos_id: int, bos_id: int, special_ids: set[int], encode: Callable[[str], list[int]]
    ) -> None:
        self.tokens = tokens
        self.eos_token_id = eos_id
        self.bos_token_id = bos_id
        self.special_token_ids = sorted(special_ids)
        self._encode = encode

    def __call__(self, text: str) -> list[int]:
        return self._encode(text)


#: Beside a prepared model's ``tokenizer.json``: each token's bytes (:func:`token_bytes`), so that a run reads them in
#: ~0.05 s instead of working them out of the tokenizer (~0.5 s of every start for Gemma 3's 262k tokens).
TOKEN_BYTES_FILE = "gemmapipe-token-bytes.bin"


def save_token_bytes(tokens: list[bytes], path: Path) -> None:
    """Write ``tokens`` as a count, each length (4 bytes, little-endian) and then all the bytes."""
    import numpy as np

    lengths = np.array([len(t) for t in tokens], dtype="<u4")
    with open(path, "wb") as handle:
        handle.write(np.array([len(tokens)], dtype="<u4").tobytes())
        handle.write(lengths.tobytes())
        handle.write(b"".join(tokens))


def _save_quietly(tokens: list[bytes], path: Path) -> None:
    """:func:`save_token_bytes` through a temporary file and a rename; nothing happens where the folder is read-only."""
    import os

    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        save_token_bytes(tokens, temporary)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)


def load_token_bytes(path: Path, expected: int) -> list[bytes] | None:
    """The tokens written by :func:`save_token_bytes`, or None if the file is missing or not for ``expected`` tokens."""
    import numpy as np

    try:
        data = path.read_bytes()
    except OSError:
        return None
    count = int(np.frombuffer(data[:4], dtype="<u4")[0]) if len(data) >= 4 else -1
    if count != expected or len(data) < 4 + 4 * count:
        return None
    lengths = np.frombuffer(data[4 : 4 + 4 * count], dtype="<u4")
    ends = np.cumsum(lengths, dtype=np.int64) + 4 + 4 * count
    if count and int(ends[-1]) != len(data):
        return None
    starts = (ends - lengths).tolist()
    return [data[a:b] for a, b in zip(starts, ends.tolist())]


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def token_bytes(hf: Tokenizer) -> list[bytes] | None:
    """Each token's bytes, by the vocabulary's style: SentencePiece with byte fallback (Gemma: ``▁`` is a space,
    ``<0x0A>`` the byte 0x0A) or GPT-2's byte-level BPE; None for any other style."""
    decoder = json.loads(hf.decoder.__getstate__()) if hf.decoder is not None else {}
    steps = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    kinds = [step.get("type") for step in steps]
    names = [hf.id_to_token(i) or "" for i in range(hf.get_vocab_size(with_added_tokens=True))]
    added = hf.get_added_tokens_decoder()
    special = {i for i, t in added.items() if t.special}
    if kinds == ["ByteLevel"]:  # added tokens are plain text, the others written in GPT-2's stand-ins for bytes
        table = _byte_level_table()
        if not all(ch in table for i, name in enumerate(names) if i not in added for ch in name):
            return None
        return [name.encode() if i in added else bytes(table[ch] for ch in name) for i, name in enumerate(names)]
    sentencepiece = kinds == ["Replace", "ByteFallback", "Fuse"] and steps[0].get("pattern") == {"String": "\u2581"}
    if sentencepiece and steps[0].get("content") == " ":
        out = []
        for i, name in enumerate(names):
            byte = None if i in special else _BYTE_FALLBACK.fullmatch(name)
            out.append(bytes([int(byte.group(1), 16)]) if byte else name.replace("\u2581", " ").encode())
        return out
    return None


@cache
def _byte_level_table() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes, inverted: character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _cut(text: str, name: str) -> list[str]:
    """``text`` in pieces such that no piece holds ``name`` whole (``a<eos>b`` -> ``a``, ``<``, ``eos>``, ``b``)."""
    parts = text.split(name)
    pieces: list[str] = []
    for k, part in enumerate(parts):
        pieces.append(part)
        if k < len(parts) - 1:
            pieces += [name[:1], name[1:]]
    return pieces
