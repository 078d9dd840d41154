"""``amr-dspy eval``: pass@1 of a program (or of an existing samples file) on MBPP+, HumanEval+ or BigCodeBench."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from amr_dspy.cli._app import app, console
from amr_dspy.cli._options import GuardOpt, LibraryOpt, NoLibraryOpt, SelectSamplesOpt, TestSetsOpt, teacher_options
from amr_dspy.errors import ConfigError, DataError
from amr_dspy.teacher import TeacherSpec  # at run time: typer reads the command's signature

if TYPE_CHECKING:

    from amr_dspy.bigcodebench_crosscheck import BigCodeBenchCrossCheck
    from amr_dspy.evaluation import EvalResults
    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import Task

__all__ = ["eval_command"]


@app.command("eval")
@teacher_options()
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
    test_sets: TestSetsOpt = None,
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
        bool, typer.Option("--fresh", help="Discard the checkpoint of the run in --out (interrupted, or finished and "
                                        "kept for a larger --limit) instead of resuming it.")
    ] = False,
    recheck: Annotated[
        bool,
        typer.Option("--recheck", help="Re-read the finished program run in --out with today's code extraction and "
                     "execute again the tasks whose code changed; no teacher is called, and the run's tokens, calls "
                     "and time are kept."),  # fmt: skip
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
    *,
    spec: TeacherSpec,
) -> None:
    """Run a program variant on a benchmark (or check a samples file) and report evalplus pass@1 (base and plus).

    Writes samples.jsonl (evalplus format), predictions.jsonl and results.json to --out.
    """
    from amr_dspy.evaluation import (
        crosscheck_evalplus,
        raise_if_all_failed,
        run_program_tasks,
        write_results,
        write_samples,
    )
    from amr_dspy.run import load_program, open_resources
    from amr_dspy.tasks import load_tasks

    if sum((variant is not None, samples is not None, canonical, recheck)) != 1:
        raise ConfigError(
            "give exactly one of --variant NAME (run a program), --samples FILE (check existing samples), "
            "--canonical (check the canonical solutions) or --recheck (a finished run in --out)"
        )
    if recheck and out is None:
        raise ConfigError("--recheck needs --out, the folder of the finished run to check again")
    if variant is None and (program or library or no_library or (select_samples, test_sets) != (None, None)):
        raise ConfigError(
            "--program, --library, --no-library, --select-samples and --test-sets need --variant; --samples and "
            "--canonical "
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

    if variant is not None:  # an unknown variant or a mismatched artifact fails here, before the teacher starts
        load_program(variant, program, samples=select_samples, test_sets=test_sets)
    with open_resources(spec if variant else None, tasks=tasks, workers=workers, variants=[variant] if variant else [],
                        library=library, no_library=no_library, status=console.status) as run:  # fmt: skip
        if recheck:
            results, solutions = _recheck(out, tasks, run.sandbox)
        elif samples is not None:
            results, solutions = _check_samples(samples, tasks, run.sandbox, benchmark)
        elif canonical:
            results, solutions = _check_canonical(tasks, run.sandbox, benchmark)
        else:
            loaded = run.program(variant or "", program, guard=guard, samples=select_samples,
                                 test_sets=test_sets)
            results, solutions = run_program_tasks(
                console,
                loaded.module,
                tasks,
                run.sandbox,
                benchmark,
                variant=loaded.variant,
                teacher=spec.name,
                artifact=str(program) if program else None,
                library=run.library_id_for(loaded.variant),
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


def _recheck(out: Path, tasks: list[Task], sandbox: Sandbox) -> tuple[EvalResults, dict[str, str | None]]:
    from amr_dspy.evaluation.program_run import write_predictions
    from amr_dspy.evaluation.recheck import recheck_run

    with console.status(f"checking again the responses in {out}"):
        results, records, changed = recheck_run(out, tasks, sandbox)
    write_predictions(out / "predictions.jsonl", tasks, records, results)  # failures from the rechecked results
    console.print(f"{changed} of {len(tasks)} tasks' code read differently today; those ran again")
    return results, {t.task_id: records[t.task_id].get("code") for t in tasks}


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
