"""llguidance's view of the vocabulary: built from the loaded tokens, it must equal the one from tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import pytest
from llguidance import LLTokenizer
from tokenizers import Tokenizer, decoders, models

from gemmapipe.tokenizer import GemmaTokenizer, _byte_level_table, token_bytes

SAMPLES = ['{"company":"ACME SDN BHD","total":"9.00"}', "Extract the fields.\n\nTOTAL: 1,250.00 wörld ✓", "  two  spaces"]


def assert_same_vocabulary(tokenizer_json: Path) -> None:
    """The fast path (token bytes) and llguidance's own parse of the file agree on every token."""
    tokenizer = GemmaTokenizer(tokenizer_json)
    assert token_bytes(tokenizer.hf) is not None  # else the fast path is not taken and this compares nothing
    fast = tokenizer.guidance
    parsed = LLTokenizer(tokenizer_json.read_text(encoding="utf-8"), eos_token=list(tokenizer.stop_ids), slices=[])
    assert fast.vocab_size == parsed.vocab_size
    for token_id in range(parsed.vocab_size):
        assert fast.decode_bytes([token_id]) == parsed.decode_bytes([token_id]), token_id
        assert fast.is_special_token(token_id) == parsed.is_special_token(token_id), token_id
    for text in SAMPLES:
        assert fast.tokenize_str(text) == parsed.tokenize_str(text) == tokenizer.encode_text(text)
    assert fast.eos_token == parsed.eos_token


def test_the_tiny_byte_level_vocabulary_is_seen_alike(gemmapipe_tiny_model: Path):
    assert_same_vocabulary(gemmapipe_tiny_model / "tokenizer.json")


def test_byte_level_table_covers_every_byte_once():
    table = _byte_level_table()
    assert sorted(table.values()) == list(range(256)) and table["Ġ"] == ord(" ") and table["Ċ"] == ord("\n")


def test_an_unknown_vocabulary_style_falls_back_to_the_file():
    word_piece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    word_piece.decoder = decoders.WordPiece()
    assert token_bytes(word_piece) is None
    assert token_bytes(Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))) is None  # no decoder at all


def test_an_unknown_style_builds_llguidance_from_the_file(gemmapipe_tiny_model: Path, monkeypatch):
    import gemmapipe.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "token_bytes", lambda hf: None)
    tokenizer = GemmaTokenizer(gemmapipe_tiny_model / "tokenizer.json")
    assert tokenizer.guidance.tokenize_str(SAMPLES[0]) == tokenizer.encode_text(SAMPLES[0])


def test_a_gemma3_vocabulary_that_splits_text_otherwise_is_refused(gemmapipe_tiny_model: Path, monkeypatch):
    """transformers < 5.18 converted the GGUF's tokenizer without merges; the model then reads garbled text."""
    import gemmapipe.tokenizer as tokenizer_module
    from gemmapipe.errors import SetupError

    path = gemmapipe_tiny_model / "tokenizer.json"
    hf = Tokenizer.from_file(str(path))
    monkeypatch.setattr(tokenizer_module, "GEMMA3_VOCAB_SIZE", hf.get_vocab_size())  # the tiny one passes for Gemma 3's
    with pytest.raises(SetupError) as info:
        GemmaTokenizer(path)
    assert "splits text unlike Gemma 3's" in str(info.value) and "transformers>=5.18" in info.value.hint
    monkeypatch.setattr(tokenizer_module, "SPLIT_PROBE_IDS", hf.encode(tokenizer_module.SPLIT_PROBE, add_special_tokens=False).ids)
    assert GemmaTokenizer(path).hf.get_vocab_size() == hf.get_vocab_size()  # the same splitting is accepted


def test_token_bytes_file_round_trips_and_refuses_a_mismatch(tmp_path):
    from gemmapipe.tokenizer import load_token_bytes, save_token_bytes

    tokens = [b"", b"a", b"\xff\x00", "é".encode(), b"<eos>"]
    path = tmp_path / "tokens.bin"
    save_token_bytes(tokens, path)
    assert load_token_bytes(path, len(tokens)) == tokens
    assert load_token_bytes(path, len(tokens) + 1) is None  # another vocabulary
    path.write_bytes(path.read_bytes()[:-1])
    assert load_token_bytes(path, len(tokens)) is None  # cut short
    assert load_token_bytes(tmp_path / "missing.bin", 5) is None


def test_a_prepared_model_keeps_its_token_bytes_for_llguidance(tiny_store):
    from gemmapipe.tokenizer import TOKEN_BYTES_FILE, GemmaTokenizer, load_token_bytes, token_bytes

    model_dir = tiny_store.ctranslate2_dir(None, "float32")
    tokenizer = GemmaTokenizer(model_dir / "tokenizer.json")
    saved = load_token_bytes(model_dir / TOKEN_BYTES_FILE, tokenizer.hf.get_vocab_size(with_added_tokens=True))
    assert saved is not None and saved == token_bytes(tokenizer.hf)
    assert tokenizer.guidance.vocab_size == len(saved)
