"""Running a program on a benchmark's tasks (``dspy.Evaluate``'s executor), recording each task's LM usage, time
and checked solution; and checking an existing samples file's solutions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel

from amr_dspy.errors import AmrDspyError, DataError
from amr_dspy.evaluation.checking import check_solutions
from amr_dspy.evaluation.results import EvalResults, Kept, SolutionCheck, TaskResult
from amr_dspy.evaluation.tables import _clip
from amr_dspy.rows import check_unique_id
from amr_dspy.tasks import Task
from amr_dspy.usage import Usage, metered

if TYPE_CHECKING:
    import dspy

    from amr_dspy.resume import EvalCheckpoint
    from amr_dspy.sandbox import Sandbox

__all__ = ["evaluate_program", "run_parallel", "program_config", "evaluate_samples", "raise_if_all_failed"]


class _RunStats(Usage):
    wall_s: float = 0.0
    error: str | None = None
    teacher_unreachable: bool = False


def _instrumented(program: dspy.Module) -> dspy.Module:
    """Wrap ``program`` so each call records its LM usage (``amr_dspy.usage``: used and paid), time and any
    exception on the prediction."""
    import dspy
    from dspy.utils.exceptions import LMTransportError

    class Instrumented(dspy.Module):  # type: ignore[misc]  # dspy ships no types
        def __init__(self, inner: dspy.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: Any) -> dspy.Prediction:
            started = time.perf_counter()
            error, unreachable = None, False
            with metered() as meter:
                try:
                    prediction = self.inner(**inputs)
                except Exception as exc:  # a failing task is a recorded outcome, not the end of the run
                    prediction, error = dspy.Prediction(response="", code=None), f"{type(exc).__name__}: {exc}"
                    unreachable = isinstance(exc, LMTransportError)
            prediction._amr_stats = _RunStats(**meter.usage().model_dump(), wall_s=time.perf_counter() - started,
                                              error=error, teacher_unreachable=unreachable)  # fmt: skip
            return prediction

    return Instrumented(program)


class _Recorder:
    """dspy.Evaluate's metric: checks each prediction and keeps the per-task record."""

    def __init__(self, sandbox: Sandbox, on_result: Callable[[TaskResult], None] | None,
                 checkpoint: EvalCheckpoint | None = None) -> None:  # fmt: skip
        self.sandbox = sandbox
        self.on_result = on_result
        self.checkpoint = checkpoint
        self.started = time.perf_counter()
        self.results: dict[str, TaskResult] = {}
        self.solutions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.interrupted = threading.Event()

    def run(self, example: dspy.Example, program: Callable[..., Any]) -> float | None:
        """Answer and check one task; after an interrupt, a task still in flight ends quietly, unrecorded (its
        teacher and sandbox are going away, so what it raises says nothing about the task)."""
        if self.interrupted.is_set():
            return None
        try:
            prediction = program(**example.inputs())
            return None if self.interrupted.is_set() else self(example, prediction)
        except Exception:
            if self.interrupted.is_set():
                return None
            raise

    def __call__(self, example: dspy.Example, prediction: Any, trace: Any = None) -> float:
        from amr_dspy.metric import prediction_code

        task: Task = example.task
        stats: _RunStats = getattr(prediction, "_amr_stats", None) or _RunStats()
        code = None if stats.error else prediction_code(prediction, task.entry_point)
        if stats.error and task.excluded is None:  # an excluded task is reported as excluded, whatever happened
            check = SolutionCheck(
                base_passed=False, plus_passed=False, failure="program_error", failure_message=stats.error
            )
        else:
            check = check_solutions(self.sandbox, [(task, code)])[0]
        details = _program_details(prediction, task.instruction)
        kept = details["kept"] if details["kept"] in get_args(Kept) else None
        measured = stats.model_dump(exclude={"error", "teacher_unreachable"})
        result = TaskResult(task_id=task.task_id, **check.model_dump(), **measured, kept=kept)
        response = prediction.get("response") if hasattr(prediction, "get") else None
        record = {"code": code, "response": response, **details}
        with self._lock:
            self.results[task.task_id] = result
            self.solutions[task.task_id] = record
        # a teacher that could not be reached (a server that went down) says nothing about the task: a resumed run
        # asks again instead of taking the error as the task's outcome
        if self.checkpoint is not None and not stats.teacher_unreachable:
            self.checkpoint.add(result, record, time.perf_counter() - self.started)
        if self.on_result is not None:
            self.on_result(result)
        return float(result.plus_passed)


def _program_details(prediction: Any, instruction: str) -> dict[str, Any]:
    """What a program says about its own steps: notes, which answer was kept (AMR, -select), what was retrieved,
    the text the teacher saw when the program framed ``instruction`` (None when it saw the instruction as it is),
    the -select variants' ``selection`` and amr-verified's ``module_checks`` (None when the program has none)."""
    get = prediction.get if hasattr(prediction, "get") else lambda key, default=None: default
    retrieved = [{"id": r.id, "name": r.name, "score": round(r.score, 4)} for r in get("retrieved", None) or []]
    framed, selection, checks = get("framed_instruction", None), get("selection", None), get("module_checks", None)
    kept = get("kept", None) or getattr(selection, "kind", None)  # direct-select says it only in its selection
    return {"notes": list(get("notes", None) or []), "kept": kept, "retrieved": retrieved,
            "framed_instruction": framed if framed != instruction else None, "selection": _as_json(selection),
            "module_checks": None if checks is None else [_as_json(c) for c in checks]}  # fmt: skip


def _as_json(value: Any) -> Any:
    """A pydantic record as plain JSON (predictions.jsonl and the checkpoint are JSON); anything else as it is."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def program_config(program: Any) -> dict[str, Any] | None:
    """A program's settings (its pydantic ``config``), or None for a program without one."""
    config = getattr(program, "config", None)
    return config.model_dump() if isinstance(config, BaseModel) else None


def run_parallel(function: Callable[[Any], Any], items: Sequence[Any], *, threads: int,
                 provide_traceback: bool = True) -> list[Any]:  # fmt: skip
    """``function`` over ``items`` on ``threads`` threads with DSPy's settings (``dspy.Evaluate``'s executor).

    Without its straggler re-submission: when at most 3 items are left and one has run 120 s, DSPy starts it
    again beside itself. A long AMR task on the local teacher always takes that long, so the copy only took slots
    from the original (it was recorded twice, and the teacher did the work twice). An item that raises gives None.
    """
    from dspy.utils.parallelizer import ParallelExecutor

    if not items:
        return []
    executor = ParallelExecutor(num_threads=threads, max_errors=len(items) + 1, disable_progress_bar=True,
                                provide_traceback=provide_traceback, timeout=0)  # fmt: skip
    results: list[Any] = executor.execute(function, list(items))
    return results


def evaluate_program(
    program: dspy.Module,
    tasks: Sequence[Task],
    sandbox: Sandbox,
    *,
    benchmark: str,
    threads: int = 4,
    on_result: Callable[[TaskResult], None] | None = None,
    checkpoint: EvalCheckpoint | None = None,
    **meta: Any,
) -> tuple[EvalResults, dict[str, dict[str, Any]]]:
    """Run ``program`` on every task, ``threads`` at a time; return the results and each task's code/response.

    With a ``checkpoint``, tasks an earlier session finished are taken from it and each new one is appended.
    """
    from amr_dspy.metric import task_to_example

    _check_unique(tasks)
    recorder = _Recorder(sandbox, on_result, checkpoint)
    if checkpoint is not None:
        for task in tasks:
            if (done := checkpoint.done.get(task.task_id)) is not None:
                recorder.results[task.task_id] = TaskResult.model_validate(done.result)
                recorder.solutions[task.task_id] = done.record
    pending = [t for t in tasks if t.task_id not in recorder.results]
    instrumented = _instrumented(program)
    started = time.perf_counter()
    try:
        run_parallel(lambda example: recorder.run(example, instrumented),
                     [task_to_example(t) for t in pending], threads=threads)  # fmt: skip
    except BaseException:
        recorder.interrupted.set()
        if checkpoint is not None:
            checkpoint.close()  # before the caller closes the sandbox under the threads still running
        raise
    wall_s = time.perf_counter() - started + (checkpoint.prior_wall_s if checkpoint else 0.0)
    for task in tasks:  # only a bug in checking itself leaves a task unrecorded
        if task.task_id not in recorder.results:
            recorder.results[task.task_id] = TaskResult(
                task_id=task.task_id,
                base_passed=False,
                plus_passed=False,
                failure="error",
                failure_message="the evaluation of this task raised; see the log",
            )
            recorder.solutions[task.task_id] = {"code": None, "response": None}
    ordered = [recorder.results[t.task_id] for t in tasks]
    return EvalResults.collect(benchmark, ordered, wall_s, **meta), recorder.solutions


def evaluate_samples(
    tasks: Sequence[Task],
    solutions: dict[str, str],
    sandbox: Sandbox,
    *,
    benchmark: str,
    **meta: Any,
) -> EvalResults:
    """Check existing solutions (one per task, as in an evalplus samples file)."""
    _check_unique(tasks)
    missing = [t.task_id for t in tasks if t.task_id not in solutions]
    if missing:
        raise DataError(
            f"{meta.get('samples') or 'samples'}: no solution for {len(missing)} task(s) of {benchmark}, "
            f"e.g. {missing[0]}"
        )
    started = time.perf_counter()
    checks = check_solutions(sandbox, [(t, solutions[t.task_id]) for t in tasks])
    wall_s = time.perf_counter() - started
    results = [TaskResult(task_id=t.task_id, **c.model_dump()) for t, c in zip(tasks, checks, strict=True)]
    return EvalResults.collect(benchmark, results, wall_s, **meta)


def _check_unique(tasks: Sequence[Task]) -> None:
    seen: set[str] = set()
    for task in tasks:
        check_unique_id(seen, task.source, task.task_id)


def raise_if_all_failed(results: EvalResults) -> None:
    """A run where the program failed on every task measured nothing; say why instead of reporting 0%."""
    errors = [t for t in results.tasks if t.failure == "program_error"]
    if results.tasks and len(errors) == len(results.tasks):
        raise AmrDspyError(
            f"the program failed on all {len(errors)} tasks; first error: {_clip(errors[0].failure_message or '', 200)}"
        )
