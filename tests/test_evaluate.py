"""Scoring answers for every schema shape: required, optional, nullable, arrays, nested objects (hand-made cases)."""

from __future__ import annotations

import json

import pytest

from gemmapipe.engine import Generation
from gemmapipe.evaluate import score


def gen(value):
    return Generation(value, json.dumps(value)) if value is not None else Generation(None, "", "x", "output_truncated")


def counts(report, name):
    return tuple(report.field_counts[name][k] for k in ("tp", "fp", "fn"))


def test_required_fields_keep_the_figures_they_had():
    """Every record holds every field: exact match is hits over all records, as before."""
    expected = [{"a": "x", "b": "1"}, {"a": "y", "b": "2"}, {"a": "z", "b": "3"}, {"a": "w", "b": "4"}]
    got = [gen({"a": "x", "b": "1"}), gen({"a": "y", "b": "9"}), gen({"a": "q", "b": "3"}), gen(None)]
    report = score("t", expected, got)
    assert report.field_exact_match == {"a": 0.5, "b": 0.5}
    assert report.record_exact_match == 0.25
    # a wrong value counts against precision and recall; an error result misses every value
    assert counts(report, "a") == (2, 1, 2) and counts(report, "b") == (2, 1, 2)
    assert report.field_scores()["a"] == pytest.approx({"precision": 2 / 3, "recall": 0.5, "f1": 4 / 7})


def test_optional_fields_are_scored_over_the_records_that_hold_them():
    expected = [{"name": "Ann"}, {"city": "Oslo"}, {"name": "Bo", "city": "Rome"}, {}]
    got = [gen({"name": "Ann"}),                  # right
           gen({"city": "Oslo", "name": "Eve"}),  # right, plus an invented name
           gen({"name": "Bo"}),                   # misses the city
           gen({})]                               # right: nothing to find
    report = score("t", expected, got)
    assert report.field_exact_match == {"name": 1.0, "city": 0.5}  # not divided by all four records
    assert counts(report, "name") == (2, 1, 0) and counts(report, "city") == (1, 0, 1)
    assert report.micro == pytest.approx({"precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4})
    assert report.record_exact_match == 0.5  # the invented name makes record 2 wrong
    assert report.predictions[1]["exact"] == {"city": True}


def test_nulls_are_no_value_not_a_hit():
    """Slot filling with nullable fields: two nulls agree, but give no true positive (they are not a found value)."""
    expected = [{"date": None, "time": "7pm"}, {"date": "friday", "time": None}, {"date": None, "time": None}]
    got = [gen({"date": None, "time": "7pm"}), gen({"date": None, "time": "friday"}), gen({"date": "today", "time": None})]
    report = score("t", expected, got)
    assert report.field_exact_match == pytest.approx({"date": 1 / 3, "time": 2 / 3})
    assert counts(report, "date") == (0, 1, 1) and counts(report, "time") == (1, 1, 0)
    assert report.micro["recall"] == pytest.approx(1 / 2) and report.micro["precision"] == pytest.approx(1 / 3)
    assert report.record_exact_match == pytest.approx(1 / 3)
    # an empty string is no value too, like null or a key left out
    assert score("t", [{"d": ""}], [gen({})]).record_exact_match == 1.0


def test_array_items_are_matched_as_a_multiset():
    expected = [{"tags": ["a", "b", "b"]}, {"tags": []}]
    got = [gen({"tags": ["b", "a", "c"]}), gen({"tags": ["x"]})]
    report = score("t", expected, got)
    assert counts(report, "tags") == (2, 2, 1)  # a and one b found; c and x invented; the second b missed
    assert report.field_exact_match == {"tags": 0.0}
    same_order_aside = score("t", [{"tags": ["a", "b"]}], [gen({"tags": ["b", "a"]})])
    assert same_order_aside.field_exact_match == {"tags": 1.0} and same_order_aside.record_exact_match == 1.0


def test_nested_objects_are_flattened_to_paths():
    expected = [{"buyer": {"name": "Ann", "city": "Oslo"}, "total": 3}, {"buyer": {"name": "Bo"}, "total": 5}]
    got = [gen({"buyer": {"name": "Ann", "city": "Rome"}, "total": 3}), gen({"buyer": {"name": "Bo"}, "total": 5})]
    report = score("t", expected, got)
    assert set(report.field_exact_match) == {"buyer.name", "buyer.city", "total"}
    assert report.field_exact_match == {"buyer.name": 1.0, "buyer.city": 0.0, "total": 1.0}
    assert counts(report, "buyer.city") == (0, 1, 1)
    assert report.record_exact_match == 0.5


def test_classification_f1_is_its_accuracy():
    expected = [{"label": "a"}, {"label": "b"}, {"label": "a"}, {"label": "c"}]
    report = score("t", expected, [gen({"label": "a"}), gen({"label": "a"}), gen({"label": "a"}), gen({"label": "c"})])
    assert report.field_exact_match == {"label": 0.75}
    assert report.micro == pytest.approx({"precision": 0.75, "recall": 0.75, "f1": 0.75})


def test_a_field_nobody_fills_is_not_counted_wrong():
    report = score("t", [{"a": "x", "note": None}], [gen({"a": "x"})])
    assert report.field_scores()["note"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert report.macro_f1 == 1.0 and report.record_exact_match == 1.0
