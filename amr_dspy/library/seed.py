"""Seed a library with the function modules of verified canonical solutions of *training* tasks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from amr_dspy.leakage import check_tasks
from amr_dspy.library.counts import SourceCounts
from amr_dspy.library.modules import FunctionModule, describe_from_signature, split_modules
from amr_dspy.library.modules import describe as docstring_description
from amr_dspy.library.records import ModuleRecord, Provenance, Verification, code_hash
from amr_dspy.library.standalone import borrow_imports, unresolved_names
from amr_dspy.stubs import stub_statement

if TYPE_CHECKING:
    from amr_dspy.library.store import Library

__all__ = [
    "SeedTask",
    "SeedReport",
    "Verdict",
    "seed_from_tasks",
    "record_from_module",
    "module_code",
    "entry_module_code",
]

Verdict = Literal["passed", "failed", "skipped"]  # skipped: the run needed a library that is not installed here
# (BigCodeBench's section headings after the task statement in its prose prompt)
_STATEMENT_ENDS = ("assert", "The function should", "You should write self-contained code")


class SeedTask(Protocol):
    """What seeding reads from a task (``amr_dspy.tasks.Task`` has it all)."""

    task_id: str
    canonical_solution: str | None
    split: str | None
    source: str


class SeedReport(BaseModel):
    tasks: int = 0
    verified: int = 0
    failed_task_ids: list[str] = Field(default_factory=list)  # the canonical solution did not pass
    skipped_task_ids: list[str] = Field(default_factory=list)  # its run needed a library not installed here
    excluded_task_ids: list[str] = Field(default_factory=list)  # on the benchmark's exclusion list: not run
    no_modules_task_ids: list[str] = Field(default_factory=list)  # no canonical solution or no top-level function
    modules_seen: int = 0
    not_standalone: list[str] = Field(default_factory=list)  # "task_id name" of modules that do not run alone
    added_ids: list[str] = Field(default_factory=list)
    duplicates: int = 0  # modules whose normalized code was already in the library

    def counts(self, source: str) -> SourceCounts:
        """This report as the manifest records it for ``source`` (the benchmark spec it was read from)."""
        return SourceCounts(
            source=source,
            tasks=self.tasks,
            verified=self.verified,
            failed=len(self.failed_task_ids),
            skipped=len(self.skipped_task_ids),
            excluded=len(self.excluded_task_ids),
            without_function=len(self.no_modules_task_ids),
            modules_seen=self.modules_seen,
            not_standalone=len(self.not_standalone),
            modules_added=len(self.added_ids),
            duplicates=self.duplicates,
            failed_task_ids=self.failed_task_ids,
            skipped_task_ids=self.skipped_task_ids,
            excluded_task_ids=self.excluded_task_ids,
            not_standalone_modules=self.not_standalone,
        )


def seed_from_tasks(
    tasks: Iterable[SeedTask],
    verify: Callable[[Any, str], bool | Verdict],
    describe: Callable[[FunctionModule], str] | None,
    library: Library,
    *,
    teacher: str | None = None,
) -> SeedReport:
    """Add the modules of every training task whose canonical solution ``verify`` accepts; nothing is saved here.

    ``verify(task, code)`` says ``passed`` (or True), ``failed`` (or False) or ``skipped`` (a library the run
    needed is not installed). A task on its benchmark's exclusion list is not verified. Each module must run
    on its own: its code carries the imports and constants it uses (borrowing imports from the task's tests
    where the solution leans on theirs), and the entry point's code, when it is not the whole solution, must
    pass the task's tests by itself; a module that does not is left out and listed in ``not_standalone``.

    A module is described by its docstring, else (for the task's entry point) the task statement,
    else ``describe``, else its signature. The guard checks every task first, so a stray dev or
    test task adds nothing. All records are embedded and added in one batch at the end.
    """
    tasks = list(tasks)
    check_tasks(tasks, "seed")
    report = SeedReport(tasks=len(tasks))
    records: list[ModuleRecord] = []
    seen: set[str] = set()
    for task in tasks:
        if getattr(task, "excluded", None) is not None:
            report.excluded_task_ids.append(task.task_id)
            continue
        modules = _task_modules(task)
        if not modules:
            report.no_modules_task_ids.append(task.task_id)
            continue
        verdict = _verdict(verify(task, task.canonical_solution or ""))
        if verdict != "passed":
            (report.failed_task_ids if verdict == "failed" else report.skipped_task_ids).append(task.task_id)
            continue
        report.verified += 1
        provenance = Provenance(source=_source(task), task_id=task.task_id, teacher=teacher)
        for module in modules:
            report.modules_seen += 1
            code = module_code(task, module)
            if not _runs_alone(task, module, code, verify):
                report.not_standalone.append(f"{task.task_id} {module.name}")
                continue
            digest = code_hash(code, label=f"{task.task_id} module {module.name}")
            if digest in seen or library.has_code(code):
                continue  # checked before describing it: a teacher call for a duplicate is wasted
            seen.add(digest)
            description = _describe(module, task, describe)
            verification = _verification(task, module)
            records.append(
                record_from_module(module, description, provenance=provenance, verification=verification, code=code)
            )
    report.added_ids = library.add(records)
    report.duplicates = report.modules_seen - len(report.not_standalone) - len(report.added_ids)
    return report


def module_code(task: SeedTask, module: FunctionModule) -> str:
    """The code a module of ``task`` is recorded with: its standalone code, plus any imports it reads but only
    the task's test code makes (a BigCodeBench solution may use ``np`` that only its test module imports)."""
    donors = [src for t in getattr(task, "tests", None) or [] if isinstance(src := getattr(t, "source", None), str)]
    code = module.standalone_code
    return borrow_imports(code, donors, label=f"{task.task_id} module {module.name}") if donors else code


def entry_module_code(task: SeedTask) -> str | None:
    """The recorded code of the task's entry-point module when it is not the canonical solution itself (it
    leaves out statements the function does not use, or borrows imports): that code must pass the tests again."""
    module = next((m for m in _task_modules(task) if m.name == getattr(task, "entry_point", None)), None)
    if module is None:
        return None
    code = module_code(task, module)
    return code if _is_partial(task, code) else None


def record_from_module(
    module: FunctionModule,
    description: str,
    *,
    provenance: Provenance,
    verification: Verification,
    code: str | None = None,
) -> ModuleRecord:
    """A library record for ``module``; its code (default: ``standalone_code``) carries the imports and
    constants it needs to run alone."""
    return ModuleRecord.model_validate(
        {
            "name": module.name,
            "signature": module.signature,
            "description": description,
            "code": module.standalone_code if code is None else code,
            "provenance": provenance,
            "verification": verification,
        }
    )


def _task_modules(task: SeedTask) -> list[FunctionModule]:
    solution = task.canonical_solution or ""
    return split_modules(solution, label=f"{task.task_id} canonical solution") if solution.strip() else []


def _verdict(result: bool | Verdict) -> Verdict:
    if isinstance(result, bool):
        return "passed" if result else "failed"
    return result


def _runs_alone(
    task: SeedTask, module: FunctionModule, code: str, verify: Callable[[Any, str], bool | Verdict]
) -> bool:
    """Every name the code reads is bound in it, and the entry point's own code passes the task's tests."""
    if unresolved_names(code, label=f"{task.task_id} module {module.name}"):
        return False
    if module.name != getattr(task, "entry_point", None) or not _is_partial(task, code):
        return True
    return _verdict(verify(task, code)) == "passed"


def _is_partial(task: SeedTask, code: str) -> bool:
    """Whether ``code`` differs from the task's canonical solution beyond docstrings, comments and layout."""
    label = f"{task.task_id} canonical solution"
    return code_hash(code, label=label) != code_hash(task.canonical_solution or "", label=label)


def _verification(task: SeedTask, module: FunctionModule) -> Verification:
    if module.name == getattr(task, "entry_point", None):
        details = f"this module's code passed the tests of {task.task_id}"
    else:
        details = f"the canonical solution of {task.task_id}, which contains this module, passed its tests"
    return Verification(
        method="task_tests", passed=True, n_tests=len(getattr(task, "tests", None) or []), details=details
    )


def _describe(module: FunctionModule, task: SeedTask, describe_fn: Callable[[FunctionModule], str] | None) -> str:
    text = docstring_description(module)
    if text is None and module.name == getattr(task, "entry_point", None):
        instruction = getattr(task, "instruction", None) or ""
        text = _instruction_statement(stub_statement(instruction, module.name) or instruction)
    if text is None and describe_fn is not None:
        text = (describe_fn(module) or "").strip() or None
    return text or describe_from_signature(module)


def _instruction_statement(instruction: str) -> str | None:
    """The task statement of an instruction, without quotes, the example asserts that MBPP prompts end with, and
    the output and starter-code sections that follow BigCodeBench's."""
    lines = []
    for line in instruction.strip().splitlines():
        line = line.strip().strip('"\'').strip()
        if line.startswith(_STATEMENT_ENDS):
            break
        if line:
            lines.append(line)
    return " ".join(" ".join(lines).split()) or None


def _source(task: SeedTask) -> str:
    return task.source if ":" in task.source else f"{task.source}:{task.split}"
