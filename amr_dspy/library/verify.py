"""Verifying the code that seeds a library in the sandbox, as evaluation checks a solution (``check_solutions``).

Each task's canonical solution runs against its own tests (MBPP+'s calls, BigCodeBench's unittest module) under
the limits evaluation uses for its benchmark; then, for the tasks that passed, the entry point's own recorded
code where it is not the whole solution. Seeding reads the verdicts back through ``SeedVerdicts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from amr_dspy.errors import ConfigError, LibraryError
from amr_dspy.library.records import code_hash
from amr_dspy.library.seed import Verdict, entry_module_code

if TYPE_CHECKING:
    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import Task

__all__ = ["SeedVerdicts", "verify_seed_tasks"]


class SeedVerdicts(BaseModel):
    """What the sandbox said of each (task, code) checked; called as seeding's ``verify``."""

    verdicts: dict[str, dict[str, Verdict]] = Field(default_factory=dict)  # task id -> code hash -> verdict

    def __call__(self, task: Any, code: str) -> Verdict:
        verdict = self.verdicts.get(task.task_id, {}).get(code_hash(code, label=task.task_id))
        if verdict is None:
            raise LibraryError(f"task {task.task_id!r}: this code was not verified before seeding")
        return verdict

    def passed(self, task: Any, code: str) -> bool:
        return self.verdicts.get(task.task_id, {}).get(code_hash(code, label=task.task_id)) == "passed"

    def record(self, task: Any, code: str, verdict: Verdict) -> None:
        self.verdicts.setdefault(task.task_id, {})[code_hash(code, label=task.task_id)] = verdict


def verify_seed_tasks(tasks: Sequence[Task], *, workers: int = 2) -> SeedVerdicts:
    """Run every canonical solution of ``tasks`` (excluded tasks aside), then the partial entry-point codes of
    those that passed, in one sandbox with ``workers`` workers; ConfigError for a task without tests."""
    from amr_dspy.evaluation import execution_limits
    from amr_dspy.sandbox import Sandbox

    runnable = [t for t in tasks if t.excluded is None and (t.canonical_solution or "").strip()]
    for task in runnable:
        if not task.tests:
            raise ConfigError(f"task {task.task_id!r} ({task.source}) has no tests to verify its canonical solution")
    verdicts = SeedVerdicts()
    if not runnable:
        return verdicts
    with Sandbox(execution_limits(runnable), workers=workers) as sandbox:
        _check(sandbox, verdicts, [(t, t.canonical_solution or "") for t in runnable])
        partial = [(t, code) for t in runnable if verdicts.passed(t, t.canonical_solution or "")
                   if (code := entry_module_code(t)) is not None]  # fmt: skip
        _check(sandbox, verdicts, partial)
    return verdicts


def _check(sandbox: Sandbox, verdicts: SeedVerdicts, pairs: list[tuple[Task, str]]) -> None:
    from amr_dspy.evaluation import check_solutions

    if not pairs:
        return
    for (task, code), check in zip(pairs, check_solutions(sandbox, pairs), strict=True):
        verdict: Verdict = "skipped" if check.missing_modules else "passed" if check.plus_passed else "failed"
        verdicts.record(task, code, verdict)
