"""``amr-dspy compare`` (run variants on identical tasks, report the differences) and ``amr-dspy report``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from amr_dspy.cli._app import app, console
from amr_dspy.cli._options import GuardOpt, LibraryOpt, NoLibraryOpt, SelectSamplesOpt, TestSetsOpt, teacher_options
from amr_dspy.errors import AmrDspyError, ConfigError, DataError
from amr_dspy.teacher import TeacherSpec  # at run time: typer reads the command's signature

if TYPE_CHECKING:
    from amr_dspy.compare import EvalRun, VariantEntry
    from amr_dspy.report import ComparisonReport
    from amr_dspy.run import Resources
    from amr_dspy.tasks import Task

__all__ = ["compare_command", "report_command"]

TaskRowsOpt = Annotated[
    int, typer.Option("--task-rows", min=0, help="Most rows in the per-task table of disagreeing tasks.")
]
ChangeTasksOpt = Annotated[
    int, typer.Option("--change-tasks", min=0, help="Most fixed (and broken) tasks listed per variant, with diffs.")
]


@app.command("compare")
@teacher_options()
def compare_command(
    variants: Annotated[
        str | None,
        typer.Option(
            "--variants",
            help="Comma-separated variants to run, e.g. direct,cot,amr; a .json path is a compiled program "
            "(its <name>.manifest.json names the variant).",
        ),
    ] = None,
    from_evals: Annotated[
        str | None,
        typer.Option(
            "--from-evals",
            help="Comma-separated eval output folders to compare instead of running (same benchmark and tasks).",
        ),
    ] = None,
    benchmark: Annotated[
        str, typer.Option("--benchmark", "-b", help="mbpp+[:test|dev|train], mbpp+stub[:test|dev|train] or humaneval+.")
    ] = "mbpp+:test",
    baseline: Annotated[
        str | None,
        typer.Option(help="Variant the others are compared against (default: the first one listed)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Run only the first N tasks of the benchmark; with "
                                                     "--from-evals, compare each run's first N tasks.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Output folder (default: artifacts/compare/<benchmark>); one subfolder "
                     "per variant holds its eval output."),
    ] = None,
    reuse: Annotated[
        bool,
        typer.Option("--reuse", help="Keep a variant's finished run in --out when it used the same benchmark, tasks, "
                     "teacher and program, instead of running it again."),
    ] = False,
    library: LibraryOpt = None,
    no_library: NoLibraryOpt = False,
    guard: GuardOpt = True,
    select_samples: SelectSamplesOpt = None,
    test_sets: TestSetsOpt = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard the checkpoints of variant runs in --out (interrupted, or "
                           "finished and kept for a larger --limit) instead of resuming them.")
    ] = False,
    threads: Annotated[
        int,
        typer.Option(min=1, help="Tasks run through a program in parallel (dspy.Evaluate threads); the local "
                     "teacher takes as many calls at once as it has slots, by prompt prefix."),  # fmt: skip
    ] = 8,
    workers: Annotated[int, typer.Option(min=1, help="Sandbox worker processes executing solutions.")] = 2,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for the intervals.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (the report is deterministic).")] = 0,
    confidence: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="Confidence level of the intervals.")
    ] = 0.95,
    task_rows: TaskRowsOpt = 40,
    change_tasks: ChangeTasksOpt = 10,
    *,
    spec: TeacherSpec,
) -> None:
    """Run program variants on identical tasks and report how each differs from the baseline.

    Per variant: pass@1 (base, base+plus) with bootstrap intervals, the paired difference and McNemar p.

    Then tokens, LM calls and seconds per task, failure categories, a win/loss matrix and fixed/broken tasks.

    Writes each run to --out/<variant>/ and report.json, .txt, .svg, .html, .md and pass_at_1.png to --out.
    """
    from amr_dspy.compare import build_report, first_tasks, load_eval_dir, parse_variant_entries
    from amr_dspy.resources import library_for

    if (variants is None) == (from_evals is None):
        raise ConfigError(
            "give exactly one of --variants A,B,... (run them) or --from-evals DIR,DIR,... (finished runs)"
        )
    out = out or Path("artifacts/compare") / _slug(benchmark)
    if from_evals is not None:
        running = (library, select_samples, test_sets) != (None,) * 3 or reuse or no_library
        if running:
            raise ConfigError(
                "--reuse, --library, --no-library, --select-samples and --test-sets apply to running "
                "variants, not to --from-evals"
            )
        directories = [Path(item.strip()) for item in from_evals.split(",") if item.strip()]
        if len(directories) < 2:
            raise ConfigError(f"--from-evals {from_evals!r}: a comparison needs at least two eval folders")
        runs = [load_eval_dir(d) for d in directories]
        if limit is not None:  # compare the first tasks of runs of different lengths, e.g. one still growing
            runs = [first_tasks(run, limit) for run in runs]
    else:
        entries = parse_variant_entries(variants or "")
        if baseline is not None and baseline not in [e.label for e in entries]:
            raise ConfigError(
                f"--baseline {baseline!r} is not among --variants: {', '.join(e.label for e in entries)}"
            )
        runs = _run_variants(
            entries, benchmark, spec, out=out, limit=limit, reuse=reuse,
            library=library_for([e.variant for e in entries], library, no_library=no_library),
            build={"guard": guard, "samples": select_samples, "test_sets": test_sets}, threads=threads,
            workers=workers, fresh=fresh,
        )  # fmt: skip
    report = build_report(runs, baseline=baseline, confidence=confidence, resamples=resamples, seed=seed,
                          instructions=_instructions(runs[0].results.benchmark))  # fmt: skip
    _show_and_export(report, out, task_rows=task_rows, change_tasks=change_tasks)


@app.command("report")
def report_command(
    directory: Annotated[
        Path, typer.Argument(help="A comparison folder written by `amr-dspy compare` (or its report.json).")
    ],
    task_rows: TaskRowsOpt = 40,
    change_tasks: ChangeTasksOpt = 10,
) -> None:
    """Re-render a saved comparison from its report.json (no re-running); rewrite its SVG, HTML, text, Markdown, PNG."""
    from amr_dspy.report import load_report

    report = load_report(directory)
    out = directory.parent if directory.is_file() else directory
    _show_and_export(report, out, task_rows=task_rows, change_tasks=change_tasks)


def _show_and_export(report: ComparisonReport, out: Path, *, task_rows: int, change_tasks: int) -> None:
    from amr_dspy.report import export_report, render_report

    render_report(report, console, task_rows=task_rows, change_tasks=change_tasks)
    files = export_report(report, out, task_rows=task_rows, change_tasks=change_tasks)
    others = (files.svg, files.html, files.text, files.markdown, files.png)
    console.print(f"wrote {files.json_path}, " + ", ".join(path.name for path in others))


def _run_variants(
    entries: list[VariantEntry],
    benchmark: str,
    spec: TeacherSpec,
    *,
    out: Path,
    limit: int | None,
    reuse: bool,
    library: Path | None,
    build: dict[str, Any],
    threads: int,
    workers: int,
    fresh: bool,
) -> list[EvalRun]:
    """Run every variant on the same tasks under one teacher session, so coinciding LM calls share DSPy's cache.

    ``library``: the directory the retrieval variants retrieve from (None: no retrieval); opened only when one of
    them has to run. ``build``: the program options every variant is built with (guard, samples), besides library
    and executor.
    """
    from amr_dspy.compare import load_eval_dir, variant_dir
    from amr_dspy.resources import library_id, retrieves
    from amr_dspy.run import open_resources
    from amr_dspy.tasks import load_tasks

    with console.status(f"loading {benchmark}"):
        tasks = load_tasks(benchmark, limit=limit)
    if not tasks or any(not t.tests for t in tasks):
        raise DataError(f"{benchmark}: compare needs tasks with hidden tests (mbpp+[:split] or humaneval+)")
    directories = [variant_dir(out, e.label) for e in entries]
    if len(set(directories)) < len(directories):
        raise ConfigError(f"--variants: two entries would share an output folder in {out}; rename an artifact")
    ident = library_id(library) if library is not None else None
    pending = []
    for entry, d in zip(entries, directories, strict=True):
        used = ident if ident is not None and retrieves(entry.variant) else None  # the id its results record
        if reuse and _reusable(d, entry, tasks, benchmark, spec, build, used):
            console.print(f"reusing {entry.label}: {d / 'results.json'}")
        else:
            pending.append((entry, d, used))
    if pending:
        with open_resources(spec, tasks=tasks, workers=workers, variants=[entry.variant for entry, *_ in pending],
                            library=library, no_library=library is None, status=console.status) as run:  # fmt: skip
            for entry, d, _ in pending:
                _run_one(entry, d, tasks, run, benchmark, spec, build, threads, fresh)
    return [load_eval_dir(d) for d in directories]


def _run_one(
    entry: VariantEntry,
    directory: Path,
    tasks: list[Task],
    run: Resources,
    benchmark: str,
    spec: TeacherSpec,
    build: dict[str, Any],
    threads: int,
    fresh: bool,
) -> None:
    """Run one entry on the comparison's sandbox, teacher and (when its variant retrieves) library."""
    from amr_dspy.evaluation import raise_if_all_failed, run_program_tasks, summary_table

    loaded = run.program(entry.variant, entry.artifact, **build)
    results, _ = run_program_tasks(
        console,
        loaded.module,
        tasks,
        run.sandbox,
        benchmark,
        variant=entry.variant,
        teacher=spec.name,
        artifact=str(entry.artifact) if entry.artifact else None,
        library=run.library_id_for(entry.variant),
        threads=threads,
        out=directory,
        fresh=fresh,
    )
    console.print(summary_table(results))
    try:
        raise_if_all_failed(results)
    except AmrDspyError as exc:
        raise AmrDspyError(f"variant {entry.label}: {exc}") from None


def _reusable(directory: Path, entry: VariantEntry, tasks: list[Task], benchmark: str, spec: TeacherSpec,
              build: dict[str, Any], library: str | None) -> bool:  # fmt: skip
    """A finished run of the same program, settings, library, teacher, benchmark and tasks: its numbers would come
    out the same.

    Results written before they recorded the program's settings are taken to match them; results written before
    they recorded the library are taken to have retrieved from none.
    """
    from amr_dspy.compare import load_eval_dir
    from amr_dspy.evaluation import program_config
    from amr_dspy.programs import build_program

    if not (directory / "results.json").is_file():
        return False
    try:
        run = load_eval_dir(directory)
    except AmrDspyError:
        return False
    results = run.results
    return (
        results.benchmark == benchmark
        and results.variant == entry.variant
        and results.artifact == (str(entry.artifact) if entry.artifact else None)
        and results.library == library
        and results.teacher == spec.name
        and [t.task_id for t in results.tasks] == [t.task_id for t in tasks]
        and (results.program_config is None or results.program_config == program_config(
            build_program(entry.variant, **build)))  # fmt: skip
    )


def _instructions(benchmark: str) -> dict[str, str] | None:
    """Task id → instruction of ``benchmark``, for the complexity split; None, with a line saying why, if unreadable."""
    from amr_dspy.tasks import load_instructions

    try:
        with console.status(f"reading {benchmark}'s instructions"):
            return load_instructions(benchmark)
    except AmrDspyError as exc:
        console.print(f"[dim]no split by instruction complexity: {exc}[/dim]")
        return None


def _slug(text: str) -> str:
    from amr_dspy.compare import variant_dir

    return variant_dir(Path(), text).name
