"""Checking solutions in the sandbox, as ``evalplus.evaluate`` checks them: the base tests in one fresh run, then the
plus tests in another, each stopping at its first failure; and the sandbox limits each benchmark is checked under."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from amr_dspy.errors import DataError
from amr_dspy.evaluation.results import Failure, SolutionCheck
from amr_dspy.tasks import Task
from amr_dspy.testcases import ExecutionRequest, ExecutionResult, TestOutcome

if TYPE_CHECKING:
    from amr_dspy.sandbox import Sandbox, SandboxLimits

__all__ = ["evalplus_limits", "bigcodebench_limits", "execution_limits", "check_solutions"]

_STATUS_FAILURE: dict[str, Failure] = {
    "failed": "wrong_answer",
    "error": "error",
    "timeout": "timeout",
    "memory": "memory",
}


def evalplus_limits() -> SandboxLimits:
    """Sandbox limits as loose as evalplus's: 4 GiB (capped by RAM) and a phase's 60 s + grace."""
    import psutil

    from amr_dspy.sandbox import SandboxLimits

    memory_mb = min(4096, psutil.virtual_memory().total // 2**20)
    return SandboxLimits(memory_mb=memory_mb, cpu_s=62, max_wall_s=62.0)


# Imported once per worker, so each task's child forks with them loaded instead of importing them (seconds).
_BIGCODEBENCH_PRELOAD = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats", "sklearn")


def bigcodebench_limits() -> SandboxLimits:
    """Limits for BigCodeBench's unittest modules.

    A task imports pandas, matplotlib, scipy or sklearn (about 550 MB of address space once preloaded, a few
    hundred MB resident) and builds frames, plots and models on top: 2 GiB of address space per process. Its
    module gets 60 s for all its methods (``amr_dspy.bigcodebench.TIME_LIMIT_S``), the solution 60 s to load;
    the request's wall clock covers both. Some tasks run subprocesses, threads or a multiprocessing pool: 8 more
    processes or threads at most, so a request holds at most 9 x 2 GiB. Files: 64 MB each (archives, images and
    CSVs some tasks write).
    """
    from amr_dspy.bigcodebench import TIME_LIMIT_S
    from amr_dspy.sandbox import SandboxLimits

    return SandboxLimits(
        memory_mb=2048,
        cpu_s=int(2 * TIME_LIMIT_S) + 2,
        file_size_mb=64,
        max_wall_s=2 * TIME_LIMIT_S + 10,
        load_timeout_s=TIME_LIMIT_S,
        max_processes=8,
        preload=_BIGCODEBENCH_PRELOAD,
    )


def execution_limits(tasks: Sequence[Task]) -> SandboxLimits:
    """The sandbox limits for checking ``tasks``: BigCodeBench's when any task is from it, else evalplus's."""
    return bigcodebench_limits() if any(t.dataset == "bigcodebench" for t in tasks) else evalplus_limits()


def check_solutions(sandbox: Sandbox, pairs: Sequence[tuple[Task, str | None]]) -> list[SolutionCheck]:
    """Check each ``(task, code)``: base tests first, plus tests only for solutions that pass base.

    An excluded task is not run; one whose run needed a library that is not installed is skipped.
    """
    for task, _ in pairs:
        if not task.tests:
            raise DataError(
                f"task {task.task_id!r} ({task.source}) has no hidden tests; pick a benchmark such as mbpp+:test"
            )
    runnable = [i for i, (task, code) in enumerate(pairs) if code and code.strip() and task.excluded is None]
    base = _run_phase(sandbox, pairs, runnable, plus=False)
    passed_base = [i for i in runnable if _phase_passed(base[i], pairs[i][0], plus=False)]
    plus = _run_phase(sandbox, pairs, [i for i in passed_base if pairs[i][0].plus_tests], plus=True)

    checks = []
    for i, (task, _) in enumerate(pairs):
        if task.excluded is not None:
            checks.append(SolutionCheck(base_passed=False, plus_passed=False, excluded=task.excluded))
            continue
        if i not in base:
            checks.append(SolutionCheck(base_passed=False, plus_passed=False, failure="no_code"))
            continue
        exec_s = base[i].wall_s + (plus[i].wall_s if i in plus else 0.0)
        if skipped := _skipped(base[i]):
            checks.append(SolutionCheck(base_passed=False, plus_passed=False, missing_modules=skipped, exec_s=exec_s,
                                        failure_message=f"not installed here: {', '.join(skipped)}"))  # fmt: skip
            continue
        if i not in passed_base:
            failing = base[i]
        elif i in plus and not _phase_passed(plus[i], task, plus=True):
            failing = plus[i]
        else:
            checks.append(SolutionCheck(base_passed=True, plus_passed=True, exec_s=exec_s))
            continue
        failure, message, test = _classify(failing)
        checks.append(
            SolutionCheck(
                base_passed=i in passed_base,
                plus_passed=False,
                failure=failure,
                failure_message=message,
                failed_test=test,
                exec_s=exec_s,
            )
        )
    return checks


def _run_phase(
    sandbox: Sandbox, pairs: Sequence[tuple[Task, str | None]], indices: list[int], *, plus: bool
) -> dict[int, ExecutionResult]:
    requests = []
    for i in indices:
        task, code = pairs[i]
        requests.append(
            ExecutionRequest(
                code=code or "",
                entry_point=task.entry_point,
                tests=task.plus_tests if plus else task.base_tests,
                task_id=task.task_id,
                dataset=task.dataset,
                fail_fast=True,
            )
        )
    return dict(zip(indices, sandbox.run_many(requests) if requests else [], strict=True))


def _phase_passed(result: ExecutionResult, task: Task, *, plus: bool) -> bool:
    # at least one outcome per test: a unittest module has one per test method
    expected = len(task.plus_tests if plus else task.base_tests)
    return result.passed and len(result.outcomes) >= expected


def _skipped(result: ExecutionResult) -> list[str]:
    """The missing libraries of a run that failed no test on its own (a failure anywhere is the solution's)."""
    return result.missing_modules if result.first_failure() is None else []


def _classify(result: ExecutionResult) -> tuple[Failure, str | None, str | None]:
    first: TestOutcome | None = result.first_failure()
    if first is None:
        reason = result.crash_reason or "the run ended before all tests reported"
        return ("memory" if "memory" in reason.lower() else "error"), reason, None
    return _STATUS_FAILURE.get(first.status, "error"), first.message, first.name
