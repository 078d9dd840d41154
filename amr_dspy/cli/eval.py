"""``amr-dspy eval``: pass@1 of a program (or of an existing samples file) on MBPP+, HumanEval+ or BigCodeBench."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from amr_dspy.cli._app import app, console
from amr_dspy.cli._options import (
    ApiBaseOpt,
    ApiKeyOpt,
    GuardOpt,
    LibraryOpt,
    MaxTokensOpt,
    NoCacheOpt,
    NoLibraryOpt,
    SelectSamplesOpt,
    TeacherOpt,
    TemperatureOpt,
    retrieval_library,
    teacher_session,
    teacher_spec,
)
from amr_dspy.errors import ConfigError, DataError

if TYPE_CHECKING:
    import dspy

    from amr_dspy.bigcodebench_crosscheck import BigCodeBenchCrossCheck
    from amr_dspy.evaluation import EvalResults
    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import Task

__all__ = ["eval_command", "run_program_tasks"]


@app.command("eval")
def eval_command(
    benchmark: Annotated[
        str,
        typer.Option("--benchmark", "-b", help="mbpp+[:test|dev|train], mbpp+stub[:test|dev|train], humaneval+ or "
                     "bigcodebench[-complete][:test|dev|train][@stdlib|core|full]."),  # fmt: skip
    ] = "mbpp+:test",
    variant: Annotated[
        str | None, typer.Option(help="Program variant to run, e.g. direct or cot (not with --samples).")
    ] = None,
    samples: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, help="Check this evalplus samples.jsonl instead of running a program (no teacher)."
        ),
    ] = None,
    canonical: Annotated[
        bool,
        typer.Option("--canonical", help="Check the benchmark's own canonical solutions (no teacher); writes them "
                     "as samples.jsonl, which --samples can check again."),  # fmt: skip
    ] = False,
    program: Annotated[
        Path | None,
        typer.Option("--program", help="Compiled program artifact (JSON saved by dspy) to load into the variant."),
    ] = None,
    library: LibraryOpt = None,
    no_library: NoLibraryOpt = False,
    guard: GuardOpt = True,
    select_samples: SelectSamplesOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N tasks of the benchmark.")] = None,
    threads: Annotated[
        int,
        typer.Option(min=1, help="Tasks run through the program in parallel (dspy.Evaluate threads); the local "
                     "teacher takes as many calls at once as it has slots, by prompt prefix."),  # fmt: skip
    ] = 8,
    workers: Annotated[int, typer.Option(min=1, help="Sandbox worker processes executing solutions.")] = 2,
    out: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Output folder (default: artifacts/eval/<variant-or-samples>-<benchmark>)."),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard the checkpoint of an interrupted run in --out instead of resuming.")
    ] = False,
    crosscheck: Annotated[
        bool,
        typer.Option("--crosscheck", help="Also run the reference harness on the same samples and show both pass@1: "
                     "evalplus.evaluate (MBPP+, HumanEval+) or bigcodebench's untrusted_check (BigCodeBench; "
                     "`make setup-bigcodebench` installs it)."),  # fmt: skip
    ] = False,
    show_tasks: Annotated[
        bool | None,
        typer.Option(
            "--show-tasks/--no-show-tasks", help="Print one row per task (default: when there are at most 30)."
        ),
    ] = None,
    teacher: TeacherOpt = None,
    api_base: ApiBaseOpt = None,
    api_key: ApiKeyOpt = None,
    max_tokens: MaxTokensOpt = 1024,
    temperature: TemperatureOpt = 0.0,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run a program variant on a benchmark (or check a samples file) and report evalplus pass@1 (base and plus).

    Writes samples.jsonl (evalplus format), predictions.jsonl and results.json to --out.
    """
    from amr_dspy.evaluation import (
        crosscheck_evalplus,
        execution_limits,
        raise_if_all_failed,
        write_results,
        write_samples,
    )
    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import load_tasks

    if sum((variant is not None, samples is not None, canonical)) != 1:
        raise ConfigError(
            "give exactly one of --variant NAME (run a program), --samples FILE (check existing samples) "
            "or --canonical (check the canonical solutions)"
        )
    if variant is None and (program or library or no_library or select_samples is not None):
        raise ConfigError(
            "--program, --library, --no-library and --select-samples need --variant; --samples and --canonical "
            "run no program"
        )
    source = variant or (samples.stem if samples is not None else "canonical")
    out = out or Path("artifacts/eval") / _slug(f"{source}-{benchmark}")

    with console.status(f"loading {benchmark}"):
        tasks = load_tasks(benchmark, limit=limit)
    if not tasks or any(not t.tests for t in tasks):
        raise DataError(f"{benchmark}: eval needs tasks with hidden tests (mbpp+[:split], humaneval+ or bigcodebench)")
    dataset = tasks[0].dataset
    if crosscheck and dataset not in ("mbpp", "humaneval", "bigcodebench"):
        raise ConfigError(f"--crosscheck needs mbpp+, humaneval+ or bigcodebench, not {benchmark!r}")
    if crosscheck and dataset == "bigcodebench":
        from amr_dspy.bigcodebench_crosscheck import require_reference

        require_reference()  # before any task runs

    with Sandbox(execution_limits(tasks), workers=workers) as sandbox:
        if samples is not None:
            results, solutions = _check_samples(samples, tasks, sandbox, benchmark)
        elif canonical:
            results, solutions = _check_canonical(tasks, sandbox, benchmark)
        else:
            spec = teacher_spec(
                teacher, api_base, api_key, max_tokens=max_tokens, temperature=temperature, no_cache=no_cache
            )
            results, solutions = _run_program(
                variant or "",
                tasks,
                sandbox,
                benchmark,
                spec=spec,
                program=program,
                library=library,
                no_library=no_library,
                guard=guard,
                select_samples=select_samples,
                threads=threads,
                out=out,
                fresh=fresh,
            )
    samples_path = out / "samples.jsonl"
    write_samples(samples_path, [t.task_id for t in tasks], solutions)
    reference: BigCodeBenchCrossCheck | None = None
    if crosscheck and dataset == "bigcodebench":
        reference = _crosscheck_bigcodebench(samples_path, results, out, workers)
        results.crosscheck = reference.summary(out / "bigcodebench" / "crosscheck.json")
    elif crosscheck and dataset in ("mbpp", "humaneval"):  # the only other datasets --crosscheck accepts
        with console.status("running evalplus.evaluate on the same samples"):
            results.crosscheck = crosscheck_evalplus(
                samples_path, results, dataset, workdir=out / "evalplus", parallel=workers
            )
    write_results(out / "results.json", results)
    raise_if_all_failed(results)
    _report(results, out, show_tasks if show_tasks is not None else len(tasks) <= 30, reference)


def _crosscheck_bigcodebench(samples_path: Path, results: EvalResults, out: Path,
                             workers: int) -> BigCodeBenchCrossCheck:  # fmt: skip
    from amr_dspy.bigcodebench import data_file
    from amr_dspy.bigcodebench_crosscheck import crosscheck_bigcodebench

    with console.status(f"running bigcodebench's untrusted_check on the same {len(results.tasks)} samples"):
        return crosscheck_bigcodebench(samples_path, results, data_file=data_file(), workdir=out / "bigcodebench",
                                       parallel=workers)  # fmt: skip


def _check_samples(
    samples: Path, tasks: list[Task], sandbox: Sandbox, benchmark: str
) -> tuple[EvalResults, dict[str, str | None]]:
    from amr_dspy.evaluation import evaluate_samples, read_samples

    solutions = read_samples(samples)
    with console.status(f"checking {len(tasks)} solutions"):
        results = evaluate_samples(tasks, solutions, sandbox, benchmark=benchmark, samples=str(samples))
    return results, dict(solutions)


def _check_canonical(tasks: list[Task], sandbox: Sandbox, benchmark: str) -> tuple[EvalResults, dict[str, str | None]]:
    from amr_dspy.evaluation import evaluate_samples

    solutions = {t.task_id: t.canonical_solution or "" for t in tasks}
    with console.status(f"checking {len(tasks)} canonical solutions"):
        results = evaluate_samples(tasks, solutions, sandbox, benchmark=benchmark, samples="canonical")
    return results, dict(solutions)


def _run_program(
    variant: str,
    tasks: list[Task],
    sandbox: Sandbox,
    benchmark: str,
    *,
    spec: object,
    program: Path | None,
    library: Path | None,
    no_library: bool,
    guard: bool,
    select_samples: int | None,
    threads: int,
    out: Path,
    fresh: bool,
) -> tuple[EvalResults, dict[str, str | None]]:
    from amr_dspy.programs import build_program

    module_library, library_id = retrieval_library([variant], library, no_library)
    module = build_program(variant, library=module_library, executor=sandbox, guard=guard, samples=select_samples)
    if program is not None:
        from optimize.artifact import load_artifact

        load_artifact(program, variant, program=module)  # refuses a mismatched variant, signatures or dspy
    with teacher_session(spec) as _lm:  # type: ignore[arg-type]
        return run_program_tasks(
            module,
            tasks,
            sandbox,
            benchmark,
            variant=variant,
            teacher=spec.name,  # type: ignore[attr-defined]
            artifact=str(program) if program else None,
            library=library_id,
            threads=threads,
            out=out,
            fresh=fresh,
        )


def run_program_tasks(
    module: dspy.Module,
    tasks: list[Task],
    sandbox: Sandbox,
    benchmark: str,
    *,
    variant: str,
    teacher: str | None,
    artifact: str | None,
    threads: int,
    out: Path,
    fresh: bool = False,
    library: str | None = None,
) -> tuple[EvalResults, dict[str, str | None]]:
    """Run a built program on ``tasks`` under the current DSPy LM, with a progress bar; write predictions.jsonl,
    samples.jsonl and results.json to ``out``.

    ``library``: the id of the library the program retrieves from (``resources.library_id``), None for none.

    Each finished task is checkpointed in ``out/progress.jsonl``; an interrupted run resumes from it (``fresh``
    discards it). Returns the results and each task's extracted code. ``amr-dspy compare`` runs each variant
    through here too, so a comparison's runs are exactly what ``eval`` would produce.
    """
    import dspy
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from amr_dspy.evaluation import TaskResult, evaluate_program, program_config, write_results, write_samples
    from amr_dspy.resume import EvalCheckpoint, lm_fingerprint, run_key
    from amr_dspy.teacher import served_by

    lm = dspy.settings.lm
    config = program_config(module)  # the -select variants' samples are in it: other samples, another run
    # the library only when there is one: checkpoints of runs without retrieval keep their key
    key = run_key(variant=variant, benchmark=benchmark, tasks=[t.task_id for t in tasks], teacher=teacher,
                  artifact=artifact, config=config, lm=lm_fingerprint(lm),
                  **({"library": library} if library else {}))  # fmt: skip
    checkpoint = EvalCheckpoint(out, key, fresh=fresh)

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("plus {task.fields[plus]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        resumed = [TaskResult.model_validate(f.result) for f in checkpoint.done.values()]
        passed = [sum(r.plus_passed for r in resumed)]
        bar = progress.add_task(f"{variant} on {benchmark}", total=len(tasks), completed=len(resumed),
                                plus=passed[0])  # fmt: skip
        if resumed:
            progress.console.print(f"resuming: {len(resumed)} tasks finished earlier ({checkpoint.path})")

        def advance(result: TaskResult) -> None:
            passed[0] += result.plus_passed
            progress.update(bar, advance=1, plus=passed[0])

        results, records = evaluate_program(
            module,
            tasks,
            sandbox,
            benchmark=benchmark,
            threads=threads,
            on_result=advance,
            variant=variant,
            teacher=teacher,
            artifact=artifact,
            library=library,
            checkpoint=checkpoint,
            server=served_by(lm),
            program_config=config,
        )
    solutions = {task_id: record["code"] for task_id, record in records.items()}
    _write_predictions(out / "predictions.jsonl", tasks, records, results)
    write_samples(out / "samples.jsonl", [t.task_id for t in tasks], solutions)
    write_results(out / "results.json", results)
    unchecked = [t.task_id for t in results.tasks if t.task_id not in checkpoint.recorded]
    if unchecked:  # the teacher could not be reached for them: the same command asks again
        console.print(f"[yellow]{len(unchecked)} task(s) could not reach the teacher (e.g. {unchecked[0]}); run the "
                      f"same command again to retry them (the others resume from {checkpoint.path})[/]")
    else:
        checkpoint.finish()
    return results, solutions


def _write_predictions(
    path: Path, tasks: list[Task], records: dict[str, dict[str, object]], results: EvalResults
) -> None:
    by_id = {r.task_id: r for r in results.tasks}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for task in tasks:
            record = records.get(task.task_id, {})
            row = {
                "task_id": task.task_id,
                "response": record.get("response"),
                "code": record.get("code"),
                "failure": by_id[task.task_id].failure,
                "failure_message": by_id[task.task_id].failure_message,
                "kept": record.get("kept"),
                "notes": record.get("notes", []),
                "retrieved": record.get("retrieved", []),
                "framed_instruction": record.get("framed_instruction"),
                "selection": record.get("selection"),
                "module_checks": record.get("module_checks"),
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _report(
    results: EvalResults, out: Path, show_tasks: bool, reference: BigCodeBenchCrossCheck | None = None
) -> None:
    from amr_dspy.evaluation import left_out_summary, results_table, summary_table

    if show_tasks:
        console.print(results_table(results))
    # without the evalplus-shaped record, whose caption would name evalplus: the reference's own lines follow
    console.print(summary_table(results if reference is None else results.model_copy(update={"crosscheck": None})))
    if (left_out := left_out_summary(results)) is not None:
        console.print(left_out, highlight=False, soft_wrap=True)
    if reference is not None:
        from amr_dspy.bigcodebench_crosscheck import crosscheck_headline, crosscheck_lines

        for line in (crosscheck_headline(reference), *crosscheck_lines(reference)):
            console.print(line, highlight=False, soft_wrap=True)
    elif results.crosscheck is not None and not results.crosscheck.agree:
        console.print(f"[red]evalplus disagrees on:[/] {', '.join(results.crosscheck.disagreements[:20])}")
    console.print(f"wrote {out / 'samples.jsonl'} and {out / 'results.json'}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-")
