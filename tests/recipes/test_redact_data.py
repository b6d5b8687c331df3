"""The committed redaction dataset is what recipes/make_redact_data.py generates, and its splits are held out."""

from __future__ import annotations

import re

from recipe_loader import committed_split, committed_splits, load_recipe

make_redact_data = load_recipe("make_redact_data")

PLACEHOLDER = make_redact_data.PLACEHOLDER


def test_committed_files_are_reproduced_by_the_script():
    assert committed_splits("redact") == make_redact_data.generate()


def test_generation_depends_on_the_seed_only():
    assert make_redact_data.generate(50, 20, seed=7) == make_redact_data.generate(50, 20, seed=7)
    assert make_redact_data.generate(50, 20, seed=7) != make_redact_data.generate(50, 20, seed=8)


def test_redaction_removes_every_personal_value_and_keeps_the_rest():
    train, test = make_redact_data.generate(300, 100)
    for record in train + test:
        source, redacted = record["text"], record["expected"]["text"]
        assert "@" not in redacted and not re.search(r"\d{4} \d{4} \d{4} \d{4}", redacted)
        # the redacted text is the source with some spans replaced: the plain parts appear in order
        pattern = ".+?".join(re.escape(part) for part in PLACEHOLDER.split(redacted))
        assert re.fullmatch(pattern, source, flags=re.S), (source, redacted)


def test_test_people_never_occur_in_train():
    train, test = make_redact_data.generate()
    train_text = " ".join(r["text"] for r in train)
    test_only = [n for n in make_redact_data.LAST if n not in train_text]
    assert test_only, "some surnames must be held out for the test split"
    assert any(n in r["text"] for r in test for n in test_only)
    assert sum(any(w in r["text"] for w in ("Meeting moved", "Name: ", "The flat at")) for r in test) > len(test) // 8
    assert not any(w in train_text for w in ("Meeting moved", "Name: ", "The flat at"))


def test_personal_values_are_the_replaced_spans():
    assert make_redact_data.personal_values("call Ana Costa on +44 20 7946 0958 re ORD-1", "call [NAME] on [PHONE] re ORD-1") == [
        "Ana Costa", "+44 20 7946 0958"]
    for record in committed_split("redact", "test"):  # the accuracy benchmark's leak rate relies on this for every test record
        source, redacted = record["text"], record["expected"]["text"]
        values = make_redact_data.personal_values(source, redacted)
        assert len(values) == len(PLACEHOLDER.findall(redacted))
        assert all(value.strip() and value not in redacted for value in values), (source, values)
