"""A program's checkpointed run over a benchmark's tasks, as ``eval`` and ``compare`` do it: a progress bar on the
console, each finished task in ``progress.jsonl`` (an interrupted run resumes), and predictions.jsonl,
samples.jsonl and results.json written at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from amr_dspy.evaluation.files import write_results, write_samples
from amr_dspy.evaluation.results import EvalResults, TaskResult
from amr_dspy.evaluation.runner import evaluate_program, program_config

if TYPE_CHECKING:
    import dspy

    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import Task

__all__ = ["run_program_tasks", "write_predictions"]


def run_program_tasks(
    console: Console,
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

    from amr_dspy.resume import EvalCheckpoint, lm_fingerprint, run_key
    from amr_dspy.teacher import served_by

    lm = dspy.settings.lm
    config = program_config(module)  # the -select variants' samples are in it: other samples, another run
    # the library only when there is one: checkpoints of runs without retrieval keep their key
    parts = dict(variant=variant, benchmark=benchmark, teacher=teacher, artifact=artifact, config=config,
                 lm=lm_fingerprint(lm), **({"library": library} if library else {}))  # fmt: skip
    ids = [t.task_id for t in tasks]
    checkpoint = EvalCheckpoint(out, run_key(**parts), tasks=ids, legacy_key=run_key(tasks=ids, **parts), fresh=fresh)

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
    write_predictions(out / "predictions.jsonl", tasks, records, results)
    write_samples(out / "samples.jsonl", [t.task_id for t in tasks], solutions)
    write_results(out / "results.json", results)
    unchecked = [t.task_id for t in results.tasks if t.task_id not in checkpoint.recorded]
    if unchecked:  # the teacher could not be reached for them: the same command asks again
        console.print(f"[yellow]{len(unchecked)} task(s) could not reach the teacher (e.g. {unchecked[0]}); run the "
                      f"same command again to retry them (the others resume from {checkpoint.path})[/]")
    else:
        checkpoint.finish()
    return results, solutions


def write_predictions(
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
