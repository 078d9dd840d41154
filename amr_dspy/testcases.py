"""Records that describe hidden tests and their outcomes; shared by tasks, the sandbox and the metric."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Dataset",
    "CallTest",
    "AssertTest",
    "UnitTestModule",
    "TestCase",
    "Status",
    "TestOutcome",
    "ExecutionRequest",
    "ExecutionResult",
]

Status = Literal["passed", "failed", "error", "timeout", "memory", "skipped"]
Dataset = Literal["mbpp", "humaneval", "bigcodebench"]


class CallTest(BaseModel):
    """Call ``entry_point(*inputs)`` and compare with ``expected`` (evalplus semantics, ``atol`` for floats)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    kind: Literal["call"] = "call"
    name: str
    inputs: list[Any]
    expected: Any
    atol: float = 0.0
    time_limit_s: float = 4.0
    plus: bool = False  # an evalplus "plus" input (vs. a base input)


class AssertTest(BaseModel):
    """Run assertion code in the solution's namespace; passing means it raises nothing."""

    kind: Literal["assert"] = "assert"
    name: str
    code: str
    time_limit_s: float = 4.0
    plus: bool = False


class UnitTestModule(BaseModel):
    """A unittest module run in the solution's own module namespace (BigCodeBench): one outcome per test method.

    The methods of ``test_class`` run in one child, in a fresh scratch directory, within ``time_limit_s`` for
    the module and all its methods together (BigCodeBench times the whole suite). A ``ModuleNotFoundError`` for a
    module named in ``libraries`` (the task's libraries and the test module's own imports) that is not installed
    is the environment's fault, not the solution's: it is reported as ``skipped`` with the module's name.

    ``prelude`` runs in the module before the solution: BigCodeBench's calibration (its harness's default), the
    task's ``code_prompt`` with ``pass`` as the body, so an answer that leaves out the prompt's imports or
    constants still finds them, as it does in the reference harness.
    """

    kind: Literal["unittest"] = "unittest"
    name: str
    source: str
    prelude: str = ""
    test_class: str = "TestCases"
    libraries: list[str] = Field(default_factory=list)
    time_limit_s: float = 60.0
    plus: bool = False


TestCase = Annotated[CallTest | AssertTest | UnitTestModule, Field(discriminator="kind")]


class TestOutcome(BaseModel):
    __test__ = False  # not a pytest test class
    name: str
    status: Status
    message: str | None = None  # assertion/mismatch message, "ExcType: msg", or why it was stopped
    plus: bool = False
    missing_module: str | None = None  # skipped because this library is not installed (not the solution's fault)


class ExecutionRequest(BaseModel):
    """One untrusted program and the tests to run against it."""

    code: str
    entry_point: str | None = None
    tests: list[TestCase] = Field(default_factory=list)
    task_id: str | None = None  # evalplus has per-task comparison special cases (MBPP)
    dataset: Dataset | None = None
    fail_fast: bool = True  # stop at the first non-passing test, as evalplus does; the rest are "skipped"


class ExecutionResult(BaseModel):
    outcomes: list[TestOutcome] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    crashed: bool = False  # the worker died or was killed while running this request
    crash_reason: str | None = None
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.status == "passed" for o in self.outcomes)

    def fraction_passed(self) -> float:
        return sum(o.status == "passed" for o in self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    def first_failure(self) -> TestOutcome | None:
        return next((o for o in self.outcomes if o.status not in ("passed", "skipped")), None)

    @property
    def missing_modules(self) -> list[str]:
        """Libraries whose absence kept tests from running: the run measured the environment, not the code."""
        return sorted({o.missing_module for o in self.outcomes if o.missing_module})
