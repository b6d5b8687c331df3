"""``gemmapipe train`` and ``gemmapipe eval``, added through the ``register_commands`` hook."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..hookspecs import hookimpl
from ..options import adapter_options, engine_options, labelled_task_options


def _task(  # type: ignore[no-untyped-def]
    obj: dict[str, Any],
    task_name: str | None,
    schema: Path | None,
    kind: str,
    adapter: Path | None,
    no_adapter: bool = False,
):
    from ..adapter import choose_adapter
    from ..errors import UsageError
    from ..plugins import get_plugins
    from ..tasks import adhoc_task

    registry = get_plugins().registry()
    if (task_name is None) == (schema is None):
        raise click.UsageError("give either --task NAME or --schema FILE")
    if task_name is not None:
        task = registry.task(task_name)
    else:
        if kind not in registry.kinds:
            raise UsageError(f"unknown kind {kind!r}", f"choose one of: {', '.join(registry.kinds)}")
        task = adhoc_task(registry.kinds[kind], schema)  # type: ignore[arg-type]
    return choose_adapter(task, adapter, no_adapter)


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command(name="eval")
    @labelled_task_options('Labelled JSONL: {"text", "expected"} per line.')
    @click.option("--limit", type=click.IntRange(1), help="Only the first N records.")
    @adapter_options
    @engine_options
    @click.option("--ignore-case", is_flag=True, help="Compare case-insensitively (whitespace is always normalised).")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts and CI).")
    @click.option(
        "--predictions",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help="Also write every record's answer beside its expected value to this JSONL file (for error analysis).",
    )
    @click.pass_obj
    def eval_command(  # type: ignore[no-untyped-def]
        obj: dict[str, Any],
        task_name,
        schema,
        kind,
        data,
        limit,
        examples,
        adapter,
        no_adapter,
        batch_size,
        threads,
        compute_type,
        ignore_case,
        as_json,
        predictions,
    ) -> None:
        """Score a task on labelled data: per-field exact match, accuracy, schema validity, errors, speed."""
        from ..cli import EXIT_INTERRUPTED, fail, warn_of_examples_mismatch, with_examples_file
        from ..engines import load_engine
        from ..errors import GemmapipeError, UsageError, warn
        from ..evaluate import evaluate
        from ..labelled import read_labelled
        from ..models import ModelStore
        from ..progress import CountProgress

        created = False  # a --predictions file made by this run, removed again if it does not finish
        try:
            task = _task(obj, task_name, schema, kind, adapter, no_adapter)
            pairs = read_labelled(data, limit)
            if examples is not None:
                task = with_examples_file(task, examples)
                overlap = len({text for text, _ in task.examples} & {text for text, _ in pairs})
                if overlap:
                    warn(
                        f"{overlap} of the --examples texts are also records of --data; "
                        "their answers are in the prompt, so the score overstates the task"
                    )
            warn_of_examples_mismatch(task)
            # Checked first, so an unwritable path fails now, not after the whole evaluation; appending neither
            # truncates a file from an earlier run nor leaves one behind if this run does not finish.
            created = predictions is not None and not predictions.exists()
            try:
                if predictions is not None:
                    open(predictions, "a", encoding="utf-8").close()
            except OSError as exc:
                raise UsageError(
                    f"cannot write --predictions {predictions}: {exc.strerror}", "choose a writable path"
                ) from exc
            store = ModelStore(obj["cache_dir"], obj["base"])
            with load_engine(task.adapter, compute_type, threads, store=store, answers=task.model_answers) as engine:
                progress = CountProgress(len(pairs))  # on a terminal only
                try:
                    report = evaluate(task, engine, pairs, batch_size, ignore_case, progress.update)
                finally:
                    progress.close()
        except (GemmapipeError, KeyboardInterrupt) as exc:
            if created:
                predictions.unlink(missing_ok=True)
            if isinstance(exc, GemmapipeError):
                fail(exc)
            click.echo("gemmapipe: interrupted; no report (eval scores only a finished run)", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if predictions is not None:
            with open(predictions, "w", encoding="utf-8") as handle:
                for number, ((text, _), prediction) in enumerate(zip(pairs, report.predictions), start=1):
                    handle.write(json.dumps({"record": number, "text": text, **prediction}, ensure_ascii=False) + "\n")
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=2))
            return
        from ..tables import print_table

        table: list[tuple[str, str]] = []
        scores = report.field_scores()
        for name, value in report.field_exact_match.items():
            f1 = scores[name]
            table.append(
                (
                    f"exact match: {name}",
                    f"{value:.1%}  (P {f1['precision']:.1%} R {f1['recall']:.1%} F1 {f1['f1']:.1%})",
                )
            )
        for name in [n for n in scores if n not in report.field_exact_match]:  # keys only answers had
            table.append((f"invented: {name}", f"{report.field_counts[name]['fp']} values"))
        table.append(
            (
                "mean field exact match" + (" (accuracy)" if len(report.field_exact_match) == 1 else ""),
                f"{report.mean_field_exact_match:.1%}",
            )
        )
        micro = report.micro
        table.append(
            (
                "field values: precision / recall / F1",
                f"{micro['precision']:.1%} / {micro['recall']:.1%} / {micro['f1']:.1%}",
            )
        )
        table.append(("mean character similarity", f"{report.mean_field_similarity:.1%}"))
        table.append(("whole-record exact match", f"{report.record_exact_match:.1%}"))
        table.append(("schema-valid answers", f"{report.validity_rate:.1%}"))
        table.append(("error records", ", ".join(f"{k} {v}" for k, v in report.errors_by_type.items()) or "0"))
        for name, value in report.field_in_text.items():  # extraction tasks only
            table.append((f"expected value in the text: {name}", f"{value:.1%}"))
        table.append(("records/s", f"{report.records_per_second:.2f}"))
        print_table(["metric", "value"], table, title=f"{task.name} on {data} ({report.records} records)")

    @cli.command()
    @labelled_task_options(
        'Training JSONL: {"text", "expected"} per line.', "A registered task to train an adapter for."
    )
    @click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Adapter folder to write (resumes if it holds a checkpoint).",
    )
    @click.option(
        "--epochs",
        type=click.FloatRange(0, min_open=True),
        default=None,
        help="Passes over the data.  [default: from its size: about 300 steps, 1 to 8 epochs, up to twice that while the dev metric still rises; early stopping may end sooner]",
    )
    @click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop after this many optimiser steps.")
    @click.option(
        "--learning-rate",
        type=float,
        default=8e-4,
        show_default=True,
        help="Peak learning rate (after warm-up; cosine decay after).",
    )
    @click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
    @click.option(
        "--rank", type=click.IntRange(1), default=None, help="LoRA rank.  [default: 16, or the --init-adapter's]"
    )
    @click.option(
        "--init-adapter",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help="Start from this adapter's weights and train it further (same data: the next epochs).",
    )
    @click.option(
        "--dev-fraction",
        type=click.FloatRange(0, 0.5),
        default=0.1,
        show_default=True,
        help="Held out from the data for early stopping.",
    )
    @click.option(
        "--dev-data",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Or a labelled JSONL of its own for early stopping (all of --data is then trained on).",
    )
    @click.option(
        "--max-tokens", type=click.IntRange(16), default=1024, show_default=True, help="Longer examples are skipped."
    )
    @click.option(
        "--swap-values",
        type=click.FloatRange(0, 1),
        default=0.0,
        show_default=True,
        help="Extract tasks: chance, per field and epoch, that a value the text holds is swapped (in text and answer) "
        "for the field's value in another record, so the model learns to copy rather than to recall.",
    )
    @click.option(
        "--precision",
        type=click.Choice(["auto", "bf16", "float32"]),
        default="auto",
        show_default=True,
        help="bf16 autocast or float32; auto: bf16 on a GPU or a CPU with native bfloat16 (AVX-512 BF16, AMX), else float32.",
    )
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option(
        "--threads",
        type=click.IntRange(1),
        default=None,
        help="CPU threads for torch [default: all cores]; give each of two trainings on one machine half of them.",
    )
    @click.option("--checkpoint-every", type=click.IntRange(1), default=50, show_default=True)
    @click.option(
        "--eval-every",
        type=click.IntRange(1),
        default=None,
        help="Steps between dev checks (dev loss, and the dev metric of up to 64 decoded dev answers).  [default: about 8 checks a run]",
    )
    @click.option(
        "--patience",
        type=click.IntRange(1),
        default=3,
        show_default=True,
        help="Dev checks without a better dev metric before training stops.",
    )
    @click.pass_obj
    def train(  # type: ignore[no-untyped-def]
        obj: dict[str, Any],
        task_name,
        schema,
        kind,
        data,
        out,
        epochs,
        max_steps,
        learning_rate,
        batch_size,
        rank,
        init_adapter,
        dev_fraction,
        dev_data,
        max_tokens,
        swap_values,
        precision,
        seed,
        threads,
        checkpoint_every,
        eval_every,
        patience,
    ) -> None:
        """Fine-tune a LoRA adapter of Gemma 3 270M for a task (CPU; a GPU if torch sees one).

        Ctrl-C saves a checkpoint; run the same command again to resume. --init-adapter continues an adapter
        trained earlier: `--init-adapter A --epochs 1` on A's data and seed adds one epoch to A.
        """
        from ..cli import EXIT_INTERRUPTED, fail
        from ..errors import GemmapipeError
        from ..labelled import read_labelled
        from ..models import ModelStore
        from ..training import TrainConfig, adapter_settings, torch_threads
        from ..training import train as run_training

        try:  # a continued adapter brings its own rank; training refuses a --rank that differs from it
            lora = adapter_settings(init_adapter) if init_adapter is not None else {}
        except GemmapipeError as exc:
            fail(exc)
        if rank is not None:
            lora.update(rank=rank, alpha=2 * rank)
        if (
            dev_data is not None
            and click.get_current_context().get_parameter_source("dev_fraction") is click.core.ParameterSource.DEFAULT
        ):
            dev_fraction = 0.0  # the default fraction gives way to a dev file; a fraction given too is train()'s error
        config = TrainConfig(
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            dev_fraction=dev_fraction,
            max_tokens=max_tokens,
            swap_values=swap_values,
            precision=precision,
            seed=seed,
            max_steps=max_steps,
            checkpoint_every=checkpoint_every,
            eval_every=eval_every,
            patience=patience,
            **lora,
        )
        stop = {"requested": False}

        def on_sigint(signum: int, frame: object) -> None:
            if stop["requested"]:
                raise KeyboardInterrupt
            stop["requested"] = True
            click.echo("\ngemmapipe: stopping after this step (a checkpoint will be saved)", err=True)

        progress = _TrainProgress()
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            task = _task(obj, task_name, schema, kind, None)
            with torch_threads(threads):
                metadata = run_training(
                    task,
                    read_labelled(data),
                    out,
                    ModelStore(obj["cache_dir"], obj["base"]),
                    config,
                    on_step=progress.update,
                    on_dev=progress.dev_check,
                    should_stop=lambda: stop["requested"],
                    init_adapter=init_adapter,
                    dev_data=read_labelled(dev_data) if dev_data is not None else None,
                )
        except GemmapipeError as exc:
            fail(exc)
        finally:
            signal.signal(signal.SIGINT, previous)
            progress.close()
        minutes = metadata["train_seconds"] / 60
        click.echo(
            f"gemmapipe: adapter written to {out} ({metadata['steps']} steps, {metadata['epochs_total']:.1f} epochs, "
            f"{minutes:.1f} min)",
            err=True,
        )
        for line in metadata["advice"]:
            click.echo(f"gemmapipe: {line}", err=True)
        if stop["requested"]:
            click.echo("gemmapipe: interrupted; run the same command again to resume from the checkpoint", err=True)
            sys.exit(EXIT_INTERRUPTED)


class _TrainProgress:
    """A rich bar with loss and ETA on a terminal; a line with loss and time left every 10 steps otherwise."""

    def __init__(self) -> None:
        self.bar = None
        self.first: tuple[int, float] | None = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
            )
            self.task = self.bar.add_task("train", total=None, loss="-")
            self.bar.start()

    def update(self, step: int, total: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, total=total, loss=f"{loss:.4f}")
        else:
            if self.first is None:
                self.first = (step, time.monotonic())  # a resumed run starts past 0: time only this run's steps
            if step % 10 == 0 or step == total:
                done, since = step - self.first[0], time.monotonic() - self.first[1]
                eta = f", about {since / done * (total - step) / 60:.0f} min left" if done > 0 else ""
                click.echo(f"gemmapipe: step {step}/{total} loss {loss:.4f}{eta}", err=True)

    def dev_check(self, check: dict[str, Any]) -> None:
        line = (
            f"gemmapipe: dev check at step {check['step']}: {check['metric']} {check['value']:.1%}, whole answers right "
            f"{check['exact']:.1%}, dev loss {check['loss']:.4f}"
        )
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        else:
            click.echo(line, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
