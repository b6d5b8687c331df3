"""Generate the logline dataset of the ``logline`` task (plugin gemmapipe-logs), reproducibly.

    python recipes/make_logline_data.py --out recipes/logline

writes ``train.jsonl`` and ``test.jsonl`` of ``{"text": <one log line>, "expected": {<every logline field>}}`` records:
the lines of recipes/make_log_severity_data.py (same seed, same splits, so the test split holds out the same
messages, host names and the Apache error-log format), each answered with the fields as the line writes them —
timestamp, host, program (or logger, service, component), client IP, method, path, status and bytes of a request,
and the message — null where the line does not say, and the severity the log-severity dataset gives it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from make_log_severity_data import generate  # recipes/ is on sys.path when this file runs as a script


def main() -> None:
    from split_files import main as write_splits

    write_splits(__doc__.split("\n\n")[0], partial(generate, task="logline"), Path(__file__).parent / "logline")


if __name__ == "__main__":
    main()
