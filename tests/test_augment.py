"""Value swapping (gemmapipe/augment.py) and its use by training on the tiny model."""

from __future__ import annotations

import json
import random

import pytest

from gemmapipe.augment import swap_values, swappable_fields, value_pattern
from gemmapipe.errors import GemmapipeError
from gemmapipe.tasks import Task
from gemmapipe.tokenizer import GemmaTokenizer
from gemmapipe.training import TrainConfig, build_examples, swapped_examples, train

RECEIPT_SCHEMA = {
    "type": "object",
    "properties": {"company": {"type": "string"}, "address": {"type": "string"}, "total": {"type": "string"},
                   "currency": {"enum": ["RM", "USD"]}, "items": {"type": "integer"}},
    "required": ["company", "address", "total", "currency", "items"],
}
RECEIPTS = [
    ("ACME SDN BHD\nNO 1, JALAN SATU,\nTAMAN DUA,\n81100 JOHOR\nSUBTOTAL 139.80\nTOTAL RM39.80\nCASH 39.80",
     {"company": "ACME SDN BHD", "address": "NO 1, JALAN SATU, TAMAN DUA, 81100 JOHOR", "total": "39.80", "currency": "RM", "items": 2}),
    ("KEDAI BUKU MAJU\nLOT 5 JALAN EMPAT 43300 SERI KEMBANGAN\nTOTAL 7.00",
     {"company": "KEDAI BUKU MAJU", "address": "LOT 5 JALAN EMPAT 43300 SERI KEMBANGAN", "total": "7.00", "currency": "RM", "items": 1}),
    ("99 SPEED MART\nTOTAL 12.50",  # the annotators wrote an address this receipt does not print
     {"company": "99 SPEED MART", "address": "LOT 9, JALAN LAMA", "total": "12.50", "currency": "USD", "items": 3}),
]


def test_a_value_is_found_on_its_own_across_line_breaks():
    assert value_pattern("ACME SDN BHD").search("x\nACME  SDN\nBHD\ny")
    assert value_pattern("39.80").search("TOTAL RM39.80")  # a currency prefix is not part of the number
    assert not value_pattern("9.80").search("TOTAL 39.80")
    assert not value_pattern("39.8").search("TOTAL 39.80")
    assert not value_pattern("1,2").search("1,25")
    assert not value_pattern("SDN").search("SDNBHD")
    assert value_pattern("  ") is None


def test_only_free_text_fields_are_swapped():
    assert swappable_fields(RECEIPT_SCHEMA) == ["company", "address", "total"]
    assert swappable_fields({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}}) == []
    nullable = {"host": {"type": ["string", "null"]}, "n": {"type": ["integer", "null"]}, "code": {"type": ["null", "string"]}}
    assert swappable_fields({"type": "object", "properties": nullable}) == ["host", "code"]
    lines = [("web-01 sshd: ok", {"host": "web-01"}), ("db-2 cron: ok", {"host": "db-2"}), ("kernel: oom", {"host": None})]
    swapped = swap_values(lines, {"type": "object", "properties": nullable}, random.Random(0), probability=1.0)
    assert [e["host"] for _, e in swapped] == ["db-2", "web-01", None] and swapped[2] == lines[2]  # a null stays null


def test_copied_fields_are_swapped_whatever_their_pattern():
    """The built-in invoice copies its date and total under patterns; they are spans, so they are still swapped."""
    from gemmapipe.resources import builtin_schema

    copied = {"type": "string", "x-copy-from-input": True, "pattern": "^[0-9.]+$"}
    assert swappable_fields({"type": "object", "properties": {"total": copied}}) == ["total"]
    assert swappable_fields(builtin_schema("invoice")) == ["company", "date", "address", "total"]


def test_every_value_the_text_holds_is_swapped_in_text_and_answer_alike():
    swapped = swap_values(RECEIPTS, RECEIPT_SCHEMA, random.Random(1), probability=1.0)
    for (text, expected), (new_text, new_expected) in zip(RECEIPTS, swapped):
        for field in ("company", "total"):
            assert new_expected[field] != expected[field]
            assert new_expected[field] in {e[field] for _, e in RECEIPTS}  # another record's value of that field
            assert value_pattern(new_expected[field]).search(new_text)
            assert not value_pattern(expected[field]).search(new_text)  # every occurrence replaced
        assert (new_expected["currency"], new_expected["items"]) == (expected["currency"], expected["items"])
    first_text = swapped[0][0]
    assert "SUBTOTAL 139.80" in first_text  # a number that only contains the total is not the total
    assert first_text.count(swapped[0][1]["total"]) == 2  # "RM39.80" and "CASH 39.80" both became the new total
    # the third receipt does not print its address: nothing to copy, so the answer keeps it
    assert swapped[2][1]["address"] == "LOT 9, JALAN LAMA"


def test_an_address_printed_on_several_lines_stays_on_as_many():
    text, expected = swap_values(RECEIPTS[:2], RECEIPT_SCHEMA, random.Random(0), probability=1.0)[0]
    assert expected["address"] == "LOT 5 JALAN EMPAT 43300 SERI KEMBANGAN"
    printed = text.split("\n")[1:4]  # printed on three lines, as the address it replaced was
    assert " ".join(printed) == expected["address"] and all(printed)


def test_values_come_from_the_donors_when_given():
    donors = [("SHOP A\nTOTAL 1.00", {"company": "NEW SHOP A", "total": "1.00"}),
              ("SHOP B\nTOTAL 2.00", {"company": "NEW SHOP B", "total": "2.00"})]
    for seed in range(5):
        swapped = swap_values(RECEIPTS, RECEIPT_SCHEMA, random.Random(seed), probability=1.0, donors=donors)
        for (text, expected), (new_text, new_expected) in zip(RECEIPTS, swapped):
            assert new_expected["company"] in {"NEW SHOP A", "NEW SHOP B"}  # never another record of the data's
            assert value_pattern(new_expected["company"]).search(new_text)
            assert not value_pattern(expected["company"]).search(new_text)
            assert new_expected["address"] == expected["address"]  # the donors have no address to give
    assert swapped[0][1]["total"] in {"1.00", "2.00"}


def test_swapping_is_seeded_and_probability_zero_changes_nothing():
    assert swap_values(RECEIPTS, RECEIPT_SCHEMA, random.Random(3), 0.5) == swap_values(RECEIPTS, RECEIPT_SCHEMA, random.Random(3), 0.5)
    assert swap_values(RECEIPTS, RECEIPT_SCHEMA, random.Random(3), 0.0) == RECEIPTS


ORDER_SCHEMA = {"type": "object", "properties": {"customer": {"type": "string"}}, "required": ["customer"], "additionalProperties": False}
ORDER_TASK = Task("tiny-order", "extract", ORDER_SCHEMA, "Extract the customer.")
NAMES = ["ana", "bo", "cid", "dee", "eli", "fay", "gus", "hal"]
ORDERS = [(f"order {i} from {name} paid", {"customer": name}) for i, name in enumerate(NAMES * 2)]


def _history(out):
    return json.loads((out / "checkpoint" / "state.json").read_text())["state"]["history"]


def test_training_swaps_values_each_epoch_and_reproducibly(tiny_store, tmp_path):
    def run(name, swap):
        config = TrainConfig(max_steps=4, batch_size=4, learning_rate=5e-3, rank=4, alpha=8, dev_fraction=0.0, swap_values=swap)
        metadata = train(ORDER_TASK, ORDERS, tmp_path / name, tiny_store, config)
        return metadata, _history(tmp_path / name)

    metadata, swapped = run("a", 1.0)
    _, again = run("b", 1.0)
    _, plain = run("c", 0.0)
    assert swapped == again  # the draw depends on the seed and the epoch only, so a resumed run sees the same one
    assert swapped != plain
    assert metadata["hyperparameters"]["swap_values"] == 1.0


def test_a_record_its_swap_makes_too_long_keeps_its_own_values(tiny_store):
    tokenizer = GemmaTokenizer(tiny_store.base_dir() / "tokenizer.json")
    data, long_name = ORDERS[:3], " ".join(["zed"] * 60)
    swapped = [(f"order 0 from {long_name} paid", {"customer": long_name}), ORDERS[5], ORDERS[6]]
    fits = build_examples(ORDER_TASK, tokenizer, data + swapped[1:], max_tokens=10_000)
    limit = max(len(e.prompt) + len(e.answer) for e in fits)
    assert len(build_examples(ORDER_TASK, tokenizer, swapped, limit)) == 2  # the swapped first record is too long
    examples = swapped_examples(ORDER_TASK, tokenizer, data, swapped, limit)
    assert examples == build_examples(ORDER_TASK, tokenizer, [data[0], ORDERS[5], ORDERS[6]], limit)
    too_long = [(f"order 0 from {long_name} paid", {"customer": long_name})] + data[1:]  # too long with its own values
    assert swapped_examples(ORDER_TASK, tokenizer, too_long, too_long, limit) == build_examples(ORDER_TASK, tokenizer, data[1:], limit)


def test_swapping_is_refused_for_a_task_that_does_not_copy(tiny_store, tmp_path):
    task = Task("tiny-label", "classify", {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}}, "Classify.")
    with pytest.raises(GemmapipeError, match="value swapping is for extract tasks"):
        train(task, [("x", {"label": "a"})] * 4, tmp_path / "a", tiny_store, TrainConfig(max_steps=1, dev_fraction=0.0, swap_values=0.5))
