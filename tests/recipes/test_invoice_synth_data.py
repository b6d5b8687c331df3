"""recipes/make_invoice_synth_data.py: reproducible receipts whose labels are valid and always runs of their text."""

from __future__ import annotations

import json
import re

import jsonschema

from gemmapipe.evaluate import is_run_of, normalise

from recipe_loader import REPO, load_recipe

synth = load_recipe("make_invoice_synth_data")

TRAIN, TEST = synth.generate(300, 50, seed=0)


def test_generation_depends_on_the_seed_only():
    assert synth.generate(20, 5, seed=3) == synth.generate(20, 5, seed=3)
    assert synth.generate(20, 5, seed=3) != synth.generate(20, 5, seed=4)


def test_labels_validate_against_the_invoice_schema_and_are_runs_of_the_text():
    schema = json.loads((REPO / "schemas" / "invoice.json").read_text())
    for record in TRAIN + TEST:
        jsonschema.validate(record["expected"], schema)
        assert list(record["expected"]) == ["company", "date", "address", "total"]
        for field, value in record["expected"].items():
            assert value and is_run_of(value, record["text"]), (field, value, record["text"])


def test_the_company_is_the_legal_name_not_the_brand_line_above_it():
    with_brand = [r for r in TRAIN if r["text"].split("\n")[0].startswith(tuple(synth.BRANDS))]
    assert len(with_brand) > 30
    for record in with_brand:
        first_line = record["text"].split("\n")[0]
        assert not normalise(record["expected"]["company"]).startswith(first_line)
    two_lines = [r for r in TRAIN if any(f"{a} {b}" == r["expected"]["company"]
                                         for a, b in zip(r["text"].split("\n"), r["text"].split("\n")[1:]))]
    assert len(two_lines) > 10  # names printed on two lines occur too


def test_the_address_stops_before_phone_gst_and_heading_lines():
    for record in TRAIN:
        assert not re.search(r"TEL|FAX|H/P|GST|INVOICE|RECEIPT|EMAIL", record["expected"]["address"])


def test_the_total_is_the_amount_after_rounding():
    rounded = [r for r in TRAIN if "ROUNDING" in r["text"]]
    assert len(rounded) > 50
    for record in rounded:
        lines = record["text"].split("\n")
        total = record["expected"]["total"].replace("RM", "").strip()
        before_rounding = next(i for i, line in enumerate(lines) if "ROUNDING" in line)
        # the label is printed after the rounding line, not before it (where the unrounded total stands)
        assert any(total in line for line in lines[before_rounding + 1:])
    assert len([r for r in TRAIN if "CHANGE" in r["text"]]) > 100  # cash tendered and change stand beside the total
