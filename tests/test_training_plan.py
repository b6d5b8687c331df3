"""The training plan and the verdict `gemmapipe train` prints: hand-made cases, no model."""

from __future__ import annotations

import math

import pytest

from gemmapipe.engine import Generation
from gemmapipe.evaluate import score
from gemmapipe.training_plan import (MAX_AUTO_EPOCHS, TARGET_STEPS, advice, copy_advice, copy_rates, dev_metric, eval_interval,
                                     extension_steps, learning_rate_at, learning_rate_in, plan_steps, still_rising)


def test_small_sets_get_more_epochs_large_sets_fewer():
    small_steps, small_epochs = plan_steps(450, 8, None, None)  # 57 steps an epoch
    assert small_steps == pytest.approx(TARGET_STEPS, abs=1) and 5 < small_epochs < 6
    tiny_steps, tiny_epochs = plan_steps(40, 8, None, None)  # would need 60 epochs for TARGET_STEPS
    assert tiny_epochs == MAX_AUTO_EPOCHS and tiny_steps == 40
    large_steps, large_epochs = plan_steps(20_000, 8, None, None)
    assert large_epochs == 1.0 and large_steps == 2500
    assert plan_steps(450, 8, 2.0, None) == (114, 2.0)  # --epochs given
    assert plan_steps(450, 8, None, 10)[0] == 10  # --max-steps wins


def test_dev_checks_spread_over_the_run():
    assert eval_interval(300) == 38 and eval_interval(20) == 5 and eval_interval(10_000) == 100


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    rates = [learning_rate_at(step, 100, 1.0) for step in range(100)]
    assert rates[0] == pytest.approx(1 / 6) and rates[5] == pytest.approx(1.0)  # 6 warm-up steps
    assert all(a >= b for a, b in zip(rates[5:], rates[6:]))  # never rises after the warm-up
    assert rates[-1] == pytest.approx(0.1, abs=0.01) and learning_rate_at(100, 100, 1.0) == pytest.approx(0.1)
    assert learning_rate_at(0, 1, 2e-4) == pytest.approx(2e-4)  # a one-step run takes the whole rate at once


def gen(value):
    return Generation(value, "") if value is not None else Generation(None, "", "x", "output_truncated")


def test_the_dev_metric_of_each_kind():
    expected = [{"a": "x", "b": "y"}, {"a": "z"}]
    answers = [gen({"a": "x", "b": "wrong"}), gen({"a": "z", "c": "invented"})]
    report = score("t", expected, answers)
    extract = dev_metric("extract", report)  # values: 2 right, 2 wrong or invented, 1 missed
    assert extract.name == "field F1" and extract.value == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert dev_metric("classify", report).value == 0.0  # no record wholly right
    assert dev_metric("rewrite", report).name == "similarity"


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": ["string", "null"]},
                                           "code": {"type": "string"}, "n": {"type": "integer"},
                                           "copied": {"type": "string", "x-copy-from-input": True}}}


def test_copy_rates_count_labels_that_are_runs_of_the_text():
    data = [("Ann lives in Paris", {"name": "Ann", "city": "Paris", "code": "FR-75", "n": 1, "copied": "Ann"}),
            ("Bob, Rome", {"name": "Bob", "city": None, "code": "IT", "n": 2, "copied": ""}),
            ("Cy in Oslo", {"name": "Cy", "city": "oslo", "code": "", "n": 3})]
    rates = copy_rates(SCHEMA, data)
    assert rates == {"name": 1.0, "city": 0.5, "code": 0.0, "copied": 1.0}  # null and empty values are not counted
    lines = copy_advice(SCHEMA, rates)
    assert "name 100%" in lines[0] and "copied" not in lines[0] and "only in a schema whose fields are all required" in lines[0]
    ready = {**SCHEMA, "required": list(SCHEMA["properties"]), "additionalProperties": False}  # x-copy-from-input allowed
    assert "Mark these fields" in copy_advice(ready, rates)[0]
    assert "code 0%" in lines[1] and "city" not in lines[1]
    many = {f"f{i}": {"type": "string"} for i in range(10)}
    rates = {f"f{i}": 1.0 if i < 8 else 0.9 for i in range(10)}
    assert "8 fields (f0, f1, f2, ...) at 100%. " in copy_advice({"properties": many}, rates)[0]
    assert "all of 10 fields (f0, f1, f2, ...) at 97% or more" in copy_advice({"properties": many}, {**dict.fromkeys(many, 0.98), "f9": 0.97})[0]


def check(step, value, loss):
    return {"step": step, "loss": loss, "metric": "field F1", "value": value}


def test_the_verdict_names_undertraining_overfitting_and_weak_adapters():
    rising = [check(10, 0.5, 0.4), check(20, 0.7, 0.3)]
    lines = advice(rising, 20, stopped_early=False, patience=3, final_train_loss=0.25)
    assert "best dev field F1 70.0% at step 20" in lines[0] and "undertrained" in lines[1]
    overfit = [check(10, 0.8, 0.20), check(20, 0.9, 0.15), check(30, 0.85, 0.25), check(40, 0.85, 0.3), check(50, 0.84, 0.35)]
    lines = advice(overfit, 20, stopped_early=True, patience=3, final_train_loss=0.01)
    assert "step 20" in lines[0] and "overfit" in lines[1] and not any("undertrained" in line for line in lines)
    slow = [check(10, 0.70, 0.3), check(20, 0.722, 0.2), check(30, 0.762, 0.15), check(40, 0.763, 0.14)]  # +4 points over two checks
    assert "undertrained" in advice(slow, 40, stopped_early=False, patience=3, final_train_loss=0.1)[1]
    plateau = [check(10, 0.8, 0.2), check(20, 0.9, 0.15), check(30, 0.9, 0.16)]
    assert len(advice(plateau, 20, stopped_early=False, patience=3, final_train_loss=0.1)) == 1  # nothing to say
    weak = advice([check(10, 0.4, 1.0)], 10, stopped_early=False, patience=3, final_train_loss=0.9, invalid_dev=2)
    assert any("low" in line for line in weak) and "2 dev answers were errors" in weak[-1]
    assert "no dev set" in advice([], None, False, 3, 0.1)[0]
    assert not math.isnan(plan_steps(1, 1, None, None)[1])


def test_an_extension_restarts_the_schedule_at_half_the_peak():
    extensions = [(100, 50), (150, 50)]
    assert learning_rate_in(99, 100, extensions, 1.0) == learning_rate_at(99, 100, 1.0)
    assert learning_rate_in(100, 100, extensions, 1.0) == pytest.approx(0.5 / 5)  # warm-up again: 5 steps at least
    assert max(learning_rate_in(s, 100, extensions, 1.0) for s in range(100, 150)) == pytest.approx(0.5)
    assert learning_rate_in(160, 100, extensions, 1.0) == learning_rate_at(10, 50, 0.5)
    assert extension_steps(300) == 150 and extension_steps(1) == 1


def test_still_rising_needs_the_last_check_to_be_the_best_and_a_real_gain():
    assert still_rising([check(10, 0.5, 0.4), check(20, 0.52, 0.3)])
    assert not still_rising([check(10, 0.5, 0.4), check(20, 0.505, 0.3)])  # half a point
    assert still_rising([check(10, 0.70, 0.3), check(20, 0.71, 0.2), check(30, 0.721, 0.15)])  # +2.1 over three checks
    assert not still_rising([check(10, 0.8, 0.3), check(20, 0.7, 0.2), check(30, 0.75, 0.15)])  # below the best
    assert not still_rising([check(10, 0.5, 0.4)])
    # after an extension (a warm restart from step 300): its dip and recovery are no rise; a gain over step 300 is
    restarted = [check(266, 0.809, 0.13), check(300, 0.809, 0.14), check(338, 0.808, 0.16), check(376, 0.79, 0.17),
                 check(414, 0.805, 0.15), check(450, 0.810, 0.15)]
    assert still_rising(restarted) and not still_rising(restarted, since=300)
    assert still_rising([*restarted[:-1], check(450, 0.83, 0.15)], since=300)
    lines = advice([check(300, 0.7, 0.3), check(450, 0.8, 0.2), check(600, 0.81, 0.2)], 600, False, 3, 0.1, planned=300, extensions=[(300, 150), (450, 150)])
    assert "still rising at the planned end (step 300), so the run went on for 300 more steps (2 extensions" in lines[1]
