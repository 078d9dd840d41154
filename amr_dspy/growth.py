"""Library growth: the novel modules of a response that passes execution checks join the library.

Growth is a separate step from ``forward``, so producing a record stays a pure function of (instruction,
program, library snapshot) and additions can be merged afterwards. The leakage policy (``amr_dspy.leakage``) makes
growth impossible from a benchmark's dev, test or held-out tasks: their solutions must never reach a library used on
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dspy
from pydantic import BaseModel, Field

from amr_dspy.leakage import check_provenance
from amr_dspy.library import Library, ModuleRecord, Provenance, Verification, module_text, record_from_module
from amr_dspy.library.modules import describe as docstring_description
from amr_dspy.library.modules import describe_from_signature, split_modules
from amr_dspy.programs import Executor, write_unit_tests
from amr_dspy.testcases import ExecutionRequest, TestCase
from signatures import UnitTests

__all__ = ["GrowthReport", "propose_modules", "grow_library"]


class GrowthReport(BaseModel):
    verified: bool = False
    method: str | None = None  # "task_tests" or "unit_tests"
    n_tests: int = 0
    candidates: int = 0
    added_ids: list[str] = Field(default_factory=list)
    reason: str | None = None  # why nothing was added


def propose_modules(prediction: Any, library: Library, *, novelty_threshold: float = 0.95) -> list[Any]:
    """The function modules of the prediction's final code that the library does not hold yet."""
    code = getattr(prediction, "code", None)
    if not code:
        return []
    try:
        modules = split_modules(code)
    except Exception:  # the teacher's code may not parse; then it has no modules to offer
        return []
    return [m for m in modules
            if library.is_novel(m.standalone_code, module_text(m.signature, m.docstring or "", name=m.name),
                                threshold=novelty_threshold)]  # fmt: skip


def _description(module: Any, prediction: Any) -> str:
    specs = {spec.name: spec.description for spec in getattr(prediction, "modules", None) or []}
    return docstring_description(module) or specs.get(module.name) or describe_from_signature(module)


def grow_library(
    library: Library,
    prediction: Any,
    instruction: str,
    *,
    provenance: Provenance,
    executor: Executor,
    task_tests: Sequence[TestCase] | None = None,
    entry_point: str | None = None,
    write_tests: dspy.Module | None = None,
) -> tuple[GrowthReport, list[ModuleRecord]]:
    """Verify the prediction's code and return the records of its novel modules (not yet added).

    Verification uses the task's own tests when given (training data), else teacher-written unit tests run in
    the sandbox. The caller merges the returned records with ``library.add`` (serialized writes).
    """
    check_provenance(provenance)
    report = GrowthReport()
    candidates = propose_modules(prediction, library)
    report.candidates = len(candidates)
    if not candidates:
        report.reason = "no novel modules"
        return report, []
    tests: list[TestCase]
    if task_tests:
        tests, report.method = list(task_tests), "task_tests"
    else:
        predictor = write_tests or dspy.Predict(UnitTests)
        try:
            tests = [*write_unit_tests(predictor, instruction=instruction, code=prediction.code)]
        except Exception as exc:  # the teacher's unparsable tests verify nothing
            report.reason = f"unit tests unparsable ({type(exc).__name__})"
            return report, []
        report.method = "unit_tests"
    report.n_tests = len(tests)
    if not tests:
        report.reason = "no tests to verify with"
        return report, []
    result = executor.run(ExecutionRequest(code=prediction.code, entry_point=entry_point, tests=tests, fail_fast=True))
    report.verified = result.passed
    if not result.passed:
        failure = result.first_failure()
        report.reason = f"verification failed: {failure.name if failure else 'crashed'}"
        return report, []
    verification = Verification(method=report.method, passed=True, n_tests=len(tests),
                                details="the response containing this module passed these tests")  # fmt: skip
    records = [record_from_module(m, _description(m, prediction), provenance=provenance, verification=verification)
               for m in candidates]  # fmt: skip
    return report, records
