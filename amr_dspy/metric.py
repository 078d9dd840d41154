"""Execution metrics: score a prediction by running its code on the task's hidden tests in the sandbox.

``execution_metric`` (dspy.Evaluate and optimizers) and ``execution_feedback_metric`` (GEPA) share one
lazily created sandbox that is closed at interpreter exit; an ``ExecutionMetric`` holds its own
sandbox for callers that manage the lifetime themselves. Both are safe to call from dspy's threads.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING, Any

import dspy

from amr_dspy.errors import DataError
from amr_dspy.extract import extract_code
from amr_dspy.tasks import Task
from amr_dspy.testcases import ExecutionRequest, ExecutionResult

if TYPE_CHECKING:
    from amr_dspy.sandbox import Sandbox, SandboxLimits

__all__ = ["ExecutionMetric", "execution_metric", "execution_feedback_metric", "task_to_example", "prediction_code"]


def task_to_example(task: Task) -> dspy.Example:
    """The example a program and the metrics see: inputs ``instruction`` (+ ``entry_point``), the task kept aside."""
    if task.entry_point:
        return dspy.Example(instruction=task.instruction, entry_point=task.entry_point, task=task).with_inputs(
            "instruction", "entry_point"
        )
    return dspy.Example(instruction=task.instruction, task=task).with_inputs("instruction")


def prediction_code(prediction: Any, entry_point: str | None) -> str | None:
    """The code a prediction offers: its ``code`` field if it has one, else what its ``response`` contains."""
    try:
        return prediction.code or None
    except AttributeError:
        pass
    try:
        response = prediction.response
    except AttributeError:
        return None
    return extract_code(response, entry_point) if isinstance(response, str) else None


class ExecutionMetric:
    """Runs predictions against hidden tests in one sandbox (created on first use, closed by ``close``)."""

    def __init__(
        self, sandbox: Sandbox | None = None, *, limits: SandboxLimits | None = None, workers: int = 2
    ) -> None:
        self._sandbox = sandbox
        self._owns_sandbox = sandbox is None
        self._limits = limits
        self._workers = workers
        self._lock = threading.Lock()

    @property
    def sandbox(self) -> Sandbox:
        with self._lock:
            if self._sandbox is None:
                from amr_dspy.sandbox import Sandbox

                self._sandbox = Sandbox(self._limits, workers=self._workers)
            return self._sandbox

    def close(self) -> None:
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None and self._owns_sandbox:
            sandbox.close()

    def __enter__(self) -> ExecutionMetric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, task: Task, code: str, *, fail_fast: bool) -> ExecutionResult:
        """Run ``code`` on all of ``task``'s hidden tests."""
        if not task.tests:
            raise DataError(f"task {task.task_id!r} ({task.source}) has no hidden tests to score against")
        request = ExecutionRequest(
            code=code,
            entry_point=task.entry_point,
            tests=task.tests,
            task_id=task.task_id,
            dataset=task.dataset,
            fail_fast=fail_fast,
        )
        return self.sandbox.run(request)

    def __call__(self, example: dspy.Example, prediction: Any, trace: Any = None) -> float | bool:
        """Fraction of hidden tests passed; strictly pass/fail (bool) while an optimizer traces."""
        task = _task_of(example)
        code = prediction_code(prediction, task.entry_point)
        if trace is not None:
            return code is not None and _all_passed(self.run(task, code, fail_fast=True), task)
        if code is None:
            return 0.0
        return _fraction(self.run(task, code, fail_fast=False), task)

    def feedback(
        self,
        gold: dspy.Example,
        pred: Any,
        trace: Any = None,
        pred_name: str | None = None,
        pred_trace: Any = None,
    ) -> dspy.Prediction:
        """GEPA's metric: the fraction passed plus a sentence on the first failing test."""
        task = _task_of(gold)
        code = prediction_code(pred, task.entry_point)
        if code is None:
            target = f" defining `{task.entry_point}`" if task.entry_point else ""
            return dspy.Prediction(
                score=0.0,
                feedback=f"The response contains no Python code{target}; give the solution in one ```python block.",
            )
        result = self.run(task, code, fail_fast=False)
        score = _fraction(result, task)
        return dspy.Prediction(score=score, feedback=_describe(result, task))


def _task_of(example: Any) -> Task:
    try:
        task = example.task
    except AttributeError:
        task = None
    if not isinstance(task, Task):
        raise DataError("the execution metric needs examples built by task_to_example (no `task` field found)")
    return task


def _total(result: ExecutionResult, task: Task) -> int:
    # At least the task's tests, not just the outcomes: a crashed run may report fewer outcomes than tests; a
    # unittest module (BigCodeBench) reports one outcome per test method.
    return max(len(task.tests), len(result.outcomes))


def _fraction(result: ExecutionResult, task: Task) -> float:
    return sum(o.status == "passed" for o in result.outcomes) / _total(result, task)


def _all_passed(result: ExecutionResult, task: Task) -> bool:
    return result.passed and len(result.outcomes) >= len(task.tests)


def _describe(result: ExecutionResult, task: Task) -> str:
    total = _total(result, task)
    passed = sum(o.status == "passed" for o in result.outcomes)
    if passed == total:
        return f"Correct: all {total} hidden tests passed."
    failure = result.first_failure()
    if failure is not None:
        detail = f"test {failure.name} {failure.status}" + (f": {failure.message}" if failure.message else "")
    else:
        detail = f"the run stopped early ({result.crash_reason or 'no outcome reported'})"
    return f"Passed {passed}/{total} hidden tests. First failure, {detail}"


_shared: ExecutionMetric | None = None
_shared_lock = threading.Lock()


def _shared_metric() -> ExecutionMetric:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ExecutionMetric()
            atexit.register(_shared.close)
        return _shared


def execution_metric(example: dspy.Example, prediction: Any, trace: Any = None) -> float | bool:
    """dspy metric: fraction of hidden tests passed, or strict pass/fail (bool) when ``trace`` is given."""
    return _shared_metric()(example, prediction, trace)


def execution_feedback_metric(
    gold: dspy.Example, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
) -> dspy.Prediction:
    """GEPA metric: ``Prediction(score=fraction passed, feedback=first failing test's message)``."""
    return _shared_metric().feedback(gold, pred, trace, pred_name, pred_trace)
