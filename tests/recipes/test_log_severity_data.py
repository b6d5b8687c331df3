"""The committed log-severity dataset is what recipes/make_log_severity_data.py generates, and its test split is held out."""

from __future__ import annotations

import re

from recipe_loader import committed_split, committed_splits, load_recipe

make_log_severity_data = load_recipe("make_log_severity_data")
SEVERITIES = make_log_severity_data.SEVERITIES


def test_committed_files_are_reproduced_by_the_script():
    assert committed_splits("log-severity") == make_log_severity_data.generate()


def test_generation_depends_on_the_seed_only():
    assert make_log_severity_data.generate(50, 20, seed=3) == make_log_severity_data.generate(50, 20, seed=3)
    assert make_log_severity_data.generate(50, 20, seed=3) != make_log_severity_data.generate(50, 20, seed=4)


def test_labels_match_the_task_and_cover_every_severity():
    from gemmapipe_logs import SEVERITIES as TASK_SEVERITIES

    assert SEVERITIES == TASK_SEVERITIES
    for split in (committed_split("log-severity", "train"), committed_split("log-severity", "test")):
        assert {r["expected"]["severity"] for r in split} == set(SEVERITIES)
        assert all(list(r["expected"]) == ["severity"] and "\n" not in r["text"] for r in split)


def test_a_line_with_a_level_is_labelled_with_that_level():
    names = {"DEBUG": "debug", "INFO": "info", "NOTICE": "notice", "WARNING": "warning", "WARN": "warning", "ERROR": "error",
             "CRITICAL": "critical", "FATAL": "critical", "PANIC": "critical"}
    checked = 0
    for record in committed_split("log-severity", "train") + committed_split("log-severity", "test"):
        text, severity = record["text"], record["expected"]["severity"]
        if match := re.match(r"\d{4}-\d\d-\d\d [\d:.,]+ - [\w.]+ - ([A-Z]+) - ", text):  # Python logging
            assert names[match.group(1)] == severity, text
            checked += 1
        elif match := re.match(r"<(\d+)>1 ", text):  # RFC 5424: severity is PRI mod 8
            assert make_log_severity_data.SYSLOG_CODE[severity] == int(match.group(1)) % 8, text
            checked += 1
        elif match := re.match(r'\S+ - - \[[^]]+\] "[^"]*" (\d{3}) ', text):  # access line: by status class
            status = int(match.group(1))
            assert severity == ("info" if status < 400 else "warning" if status < 500 else "error"), text
            checked += 1
    assert checked > 200


def test_held_out_messages_hosts_and_format_occur_only_in_test():
    train_text = "\n".join(r["text"] for r in committed_split("log-severity", "train"))
    test = committed_split("log-severity", "test")
    apache = [r for r in test if r["text"].startswith("[Sat Nov ")]
    assert len(apache) > 10 and "[Sat Nov " not in train_text
    held_out = [m.template.split("{")[0] for ms in make_log_severity_data.MESSAGES.values()
                for i, m in enumerate(ms) if i % make_log_severity_data.TEST_ONLY_EVERY == 0 and len(m.template.split("{")[0]) > 12]
    assert held_out and not [h for h in held_out if h in train_text]
    assert sum(any(h in r["text"] for h in held_out) for r in test) > len(test) // 8
    test_hosts = {h for h in make_log_severity_data.HOSTS if h not in train_text}
    assert len(test_hosts) >= 4 and any(h in r["text"] for r in test for h in test_hosts)
