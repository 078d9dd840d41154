"""The results schema: one solution's check, one task's result, a run's results and the evalplus cross-check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "Failure",
    "Kept",
    "PassAt1",
    "SolutionCheck",
    "TaskResult",
    "CrossCheck",
    "EvalResults",
    "package_versions",
]

Failure = Literal["no_code", "wrong_answer", "error", "timeout", "memory", "program_error"]
Kept = Literal["direct", "evolved", "sample"]


class PassAt1(BaseModel):
    base: float
    plus: float


class SolutionCheck(BaseModel):
    """How one solution fared on a task's base and plus tests."""

    base_passed: bool
    plus_passed: bool
    failure: Failure | None = None
    failure_message: str | None = None
    failed_test: str | None = None
    exec_s: float = 0.0
    missing_modules: list[str] = Field(default_factory=list)  # skipped: these libraries are not installed here
    excluded: str | None = None  # not run: on the exclusion list, for this reason

    @property
    def scored(self) -> bool:
        """Counts towards pass@1 (neither skipped for a missing library nor excluded)."""
        return not self.missing_modules and self.excluded is None


class TaskResult(SolutionCheck):
    task_id: str
    lm_calls: int = 0  # every LM call, cache hits included
    uncached_lm_calls: int = 0  # calls this run paid for (the others were DSPy cache hits)
    prompt_tokens: int = 0  # used: every call's, cache hits included (their stored usage); see amr_dspy.usage
    completion_tokens: int = 0
    paid_prompt_tokens: int | None = None  # paid: the calls that reached the teacher; None: results from before
    paid_completion_tokens: int | None = None
    wall_s: float = 0.0  # the program's time for this task (cache hits make it short)
    # which answer the program kept: the quality guard's choice (AMR), the chosen candidate's kind (-select)
    kept: Kept | None = None


class CrossCheck(BaseModel):
    """The project's pass@1 next to ``evalplus.evaluate``'s on the same samples."""

    project: PassAt1
    evalplus: PassAt1
    agree: bool
    disagreements: list[str] = Field(default_factory=list)  # task ids whose base or plus verdicts differ
    evalplus_results: str  # evalplus's *_eval_results.json


class EvalResults(BaseModel):
    benchmark: str
    variant: str | None = None
    teacher: str | None = None
    server: str | None = None  # how a local teacher was served (batching can change greedy outputs)
    artifact: str | None = None  # the compiled program loaded into the variant
    library: str | None = None  # the module library retrieved from (resources.library_id); None: no retrieval
    program_config: dict[str, Any] | None = None  # the program's settings (AMR stages, the -select samples)
    samples: str | None = None
    n_tasks: int
    pass_at_1: PassAt1  # over the scored tasks
    failures: dict[str, int]
    n_scored: int | None = None  # None in results written before tasks could be skipped or excluded: all were
    skipped: dict[str, list[str]] = Field(default_factory=dict)  # task id -> libraries that are not installed here
    excluded: dict[str, str] = Field(default_factory=dict)  # task id -> why it is left out of scoring
    lm_calls: int = 0
    prompt_tokens: int = 0  # used (cache hits included)
    completion_tokens: int = 0
    paid_prompt_tokens: int | None = None  # paid (uncached calls); None when a task's is unknown
    paid_completion_tokens: int | None = None
    wall_s: float
    tasks: list[TaskResult]
    crosscheck: CrossCheck | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def collect(cls, benchmark: str, tasks: list[TaskResult], wall_s: float, **meta: Any) -> EvalResults:
        scored = [t for t in tasks if t.scored]
        n = len(scored)
        return cls(
            benchmark=benchmark,
            n_tasks=len(tasks),
            pass_at_1=PassAt1(
                base=sum(t.base_passed for t in scored) / n if n else 0.0,
                plus=sum(t.plus_passed for t in scored) / n if n else 0.0,
            ),
            failures=dict(Counter(t.failure for t in scored if t.failure)),
            n_scored=n,
            skipped={t.task_id: t.missing_modules for t in tasks if t.missing_modules},
            excluded={t.task_id: t.excluded for t in tasks if t.excluded is not None},
            lm_calls=sum(t.lm_calls for t in tasks),
            prompt_tokens=sum(t.prompt_tokens for t in tasks),
            completion_tokens=sum(t.completion_tokens for t in tasks),
            paid_prompt_tokens=_total(t.paid_prompt_tokens for t in tasks),
            paid_completion_tokens=_total(t.paid_completion_tokens for t in tasks),
            wall_s=wall_s,
            tasks=tasks,
            versions=package_versions(),
            **meta,
        )


    def recollect(self, tasks: list[TaskResult], *, wall_s: float | None = None) -> EvalResults:
        """The same run's results over ``tasks`` (a prefix of them, or them checked again): totals recounted, the
        run's settings, versions and date kept."""
        totals = EvalResults.collect(self.benchmark, tasks, self.wall_s if wall_s is None else wall_s)
        recounted = totals.model_dump(exclude={"versions", "created_at"}, exclude_unset=True)
        return EvalResults.model_validate({**self.model_dump(), **recounted})


def _total(counts: Iterable[int | None]) -> int | None:
    values = list(counts)
    return None if any(v is None for v in values) else sum(v or 0 for v in values)


def package_versions(*names: str) -> dict[str, str]:
    """The installed versions of ``names`` (default: amr-dspy, dspy, evalplus); missing packages are left out."""
    found = {}
    for name in names or ("amr-dspy", "dspy", "evalplus"):
        try:
            found[name] = version(name)
        except Exception:  # PackageNotFoundError, or broken metadata
            continue
    return found
