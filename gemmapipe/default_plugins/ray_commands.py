"""``gemmapipe ray KIND``: a task over files on a Ray cluster (Ray Data), added through the ``register_commands`` hook.

Each input file's results go to ``OUT/<name>.jsonl`` and its error records to ``OUT/<name>.errors.jsonl``, in the
file's line order: every line of every file is in exactly one of the two. Exit codes as the pipe's: 0 every record
succeeded, 1 some failed, 2 usage (Ray not installed included), 3 setup.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..hookspecs import hookimpl


def output_names(files: list[Path]) -> list[str]:
    """A distinct output name per input file: its name, or its path with ``/`` as ``__`` where names repeat."""
    names = [f.name for f in files]
    return [name if names.count(name) == 1 else str(f).strip("/").replace("/", "__") for name, f in zip(names, files)]


def run_on_ray(obj: dict[str, Any], kind: str, options: dict[str, Any]) -> int:
    from ..ray import TaskPredictor, read_lines, require_ray, to_pipe_lines

    ray = require_ray()
    files = [Path(p) for p in options["inputs"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise click.UsageError(f"no such input file: {', '.join(missing)}")
    out_dir: Path = options["output"]
    out_dir.mkdir(parents=True, exist_ok=True)
    names = dict(zip(map(str, files), output_names(files)))
    base = obj["base"].path
    constructor = {
        "schema": options["schema"],
        "kind": kind,
        "adapter": str(options["adapter"]) if options["adapter"] else None,
        "no_adapter": options["no_adapter"],
        "compute_type": options["compute_type"],
        "threads": options["threads_per_actor"],
        "batch_size": options["batch_size"],
        "max_new_tokens": options["max_tokens"],
        "text_field": options["text_field"],
        "id_field": options["id_field"],
        "input_format": options["input_format"],
        "cache_dir": str(obj["cache_dir"]) if obj["cache_dir"] else None,
        "base_model": str(base) if base else None,
        "min_confidence": options["min_confidence"],
    }
    # the task resolves here first: a bad schema or task name is a usage error before any actor starts
    from ..cli import resolve_task
    from ..engines import prepare_model
    from ..models import BaseSource, ModelStore
    from ..plugins import get_plugins

    task = resolve_task(
        get_plugins().registry().kinds[kind], options["schema"], None, options["adapter"], options["no_adapter"]
    )
    if not options["address"]:  # a local cluster shares this machine's cache: prepare the model once, before the actors
        store = ModelStore(obj["cache_dir"], obj["base"] or BaseSource.from_env())
        prepare_model(task.adapter, options["compute_type"], store, task.model_answers)
    # a local cluster: a CPU for each actor's threads, and one for reading the files (with none left, the actors
    # would hold every CPU and the reading tasks would wait for them forever)
    ray.init(
        address=options["address"] or None,
        num_cpus=None if options["address"] else options["actors"] * options["threads_per_actor"] + 1,
        include_dashboard=False,
        ignore_reinit_error=True,
        log_to_driver=False,
        configure_logging=False,
    )
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # each file's rows come back in line order
    context.enable_progress_bars = sys.stderr.isatty()
    dataset = read_lines(files).map_batches(
        TaskPredictor,
        fn_constructor_kwargs=constructor,
        batch_size=options["batch_size"] * 4,
        compute=ray.data.ActorPoolStrategy(size=options["actors"]),
        num_cpus=options["threads_per_actor"],
    )
    # Ray Data restarts an actor that dies and runs its batch again (max_restarts and max_task_retries -1 by default)
    handles: dict[str, tuple[Any, Any]] = {}
    ok = failed = 0
    try:
        for row in dataset.iter_rows():
            path = str(row["path"])
            if path not in handles:
                name = names.get(path) or names.get(str(Path(path))) or Path(path).name
                handles[path] = (
                    open(out_dir / f"{name}.jsonl", "w", encoding="utf-8"),
                    open(out_dir / f"{name}.errors.jsonl", "w", encoding="utf-8"),
                )
            result, error = to_pipe_lines(row, options["envelope"])
            if result is not None:
                handles[path][0].write(result + "\n")
                ok += 1
            else:
                handles[path][1].write(f"{error}\n")
                failed += 1
    finally:
        for results, errors in handles.values():
            results.close()
            errors.close()
        ray.shutdown()
    for name in output_names(files):  # a file with no lines still gets its (empty) outputs
        for suffix in (".jsonl", ".errors.jsonl"):
            (out_dir / f"{name}{suffix}").touch()
    click.echo(f"gemmapipe: {ok + failed:,} records: {ok:,} ok, {failed:,} failed; results in {out_dir}", err=True)
    return 1 if failed else 0


@hookimpl
def register_commands(cli: click.Group) -> None:
    from ..plugins import get_plugins

    @cli.group(name="ray")
    def ray_group() -> None:
        """Run a task over files on a Ray cluster (Ray Data): pip install 'gemmapipe[ray]'.

        \b
        One subcommand per task kind, as for the pipe:
          gemmapipe ray extract --schema invoice --output out/ --actors 4 receipts/*.jsonl
        Local cluster by default; --address joins an existing one (each node prepares the model on first use, or
        share a cache folder with --cache-dir).
        """

    for kind in get_plugins().registry().kinds.values():
        ray_group.add_command(_kind_command(kind.name, kind.help))


def _kind_command(kind: str, help_text: str) -> click.Command:
    @click.command(
        name=kind,
        help=f"{help_text}\n\nOn Ray: each --input file's results go to OUTPUT/<name>.jsonl and its error records to OUTPUT/<name>.errors.jsonl, in line order.",
    )
    @click.option("--schema", "-s", required=True, help="A registered task name or a JSON Schema file.")
    @click.option(
        "--input",
        "inputs",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="An input file of lines (repeatable). Files can also follow the options: --input receipts/*.jsonl, "
        "which the shell expands into one --input and more arguments, takes them all.",
    )
    @click.option(
        "--output",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for the results and error records.",
    )
    @click.option(
        "--actors",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="Model replicas (Ray actors); each loads the model once.",
    )
    @click.option(
        "--threads-per-actor", type=click.IntRange(1), default=1, show_default=True, help="CPU threads of each actor."
    )
    @click.option(
        "--address", default=None, help="An existing Ray cluster (e.g. ray://head:10001); default: a local one."
    )
    @click.option(
        "--adapter",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help="A LoRA adapter folder instead of the task's own.",
    )
    @click.option("--no-adapter", is_flag=True, help="The base model without the task's adapter.")
    @click.option(
        "--envelope", is_flag=True, help='Write {"line", "id", "result", "confidence", "key", "provenance"} lines.'
    )
    @click.option(
        "--min-confidence",
        type=click.FloatRange(0, 1),
        default=None,
        help="Answers with a weaker field become low_confidence error records.",
    )
    @click.option("--text-field", default="text", show_default=True)
    @click.option("--id-field", default="id", show_default=True)
    @click.option(
        "--format", "input_format", type=click.Choice(["auto", "json", "text"]), default="auto", show_default=True
    )
    @click.option("--batch-size", type=click.IntRange(1, 256), default=16, show_default=True)
    @click.option("--max-tokens", type=click.IntRange(1), default=None)
    @click.option("--compute-type", default="int8", show_default=True)
    @click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
    @click.pass_obj
    def command(obj: dict[str, Any], **options: Any) -> None:
        from ..cli import fail
        from ..errors import GemmapipeError

        options["inputs"] = (*options["inputs"], *options.pop("files"))
        if not options["inputs"]:
            raise click.UsageError("no input files: give --input FILE (repeatable) or the files after the options")
        try:
            code = run_on_ray(obj, kind, options)
        except GemmapipeError as exc:
            fail(exc)
        sys.exit(code)

    return command
