"""Seed a library with the function modules of verified canonical solutions of *training* tasks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from amr_dspy.errors import ConfigError
from amr_dspy.library.modules import FunctionModule, describe_from_signature, split_modules
from amr_dspy.library.modules import describe as docstring_description
from amr_dspy.library.records import ModuleRecord, Provenance, Verification, code_hash
from amr_dspy.stubs import stub_statement

if TYPE_CHECKING:
    from amr_dspy.library.store import Library

__all__ = ["SeedTask", "SeedReport", "seed_from_tasks", "record_from_module", "check_train_only"]


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
    no_modules_task_ids: list[str] = Field(default_factory=list)  # no canonical solution or no top-level function
    modules_seen: int = 0
    added_ids: list[str] = Field(default_factory=list)
    duplicates: int = 0  # modules whose normalized code was already in the library


def check_train_only(tasks: Sequence[Any]) -> None:
    """ConfigError naming the first task that is not from a training split (dev, test and HumanEval never seed)."""
    for task in tasks:
        split = getattr(task, "split", None)
        dataset = str(getattr(task, "dataset", None) or "") + " " + str(getattr(task, "source", "") or "")
        if split != "train" or "humaneval" in dataset.lower() or str(task.task_id).lower().startswith("humaneval"):
            raise ConfigError(
                f"refusing to seed the library from task {task.task_id!r} (split {split!r}, source "
                f"{getattr(task, 'source', None)!r}): only training tasks may seed it"
            )


def seed_from_tasks(
    tasks: Iterable[SeedTask],
    verify: Callable[[Any, str], bool],
    describe: Callable[[FunctionModule], str] | None,
    library: Library,
    *,
    teacher: str | None = None,
) -> SeedReport:
    """Add the modules of every training task whose canonical solution ``verify`` accepts; nothing is saved here.

    A module is described by its docstring, else (for the task's entry point) the task statement,
    else ``describe``, else its signature. The guard checks every task first, so a stray dev or
    test task adds nothing. All records are embedded and added in one batch at the end.
    """
    tasks = list(tasks)
    check_train_only(tasks)
    report = SeedReport(tasks=len(tasks))
    records: list[ModuleRecord] = []
    seen: set[str] = set()
    for task in tasks:
        solution = task.canonical_solution or ""
        modules = split_modules(solution, label=f"{task.task_id} canonical solution") if solution.strip() else []
        if not modules:
            report.no_modules_task_ids.append(task.task_id)
            continue
        if not verify(task, solution):
            report.failed_task_ids.append(task.task_id)
            continue
        report.verified += 1
        verification = Verification(
            method="task_tests",
            passed=True,
            n_tests=len(getattr(task, "tests", None) or []),
            details=f"the canonical solution of {task.task_id}, which contains this module, passed its tests",
        )
        provenance = Provenance(source=_source(task), task_id=task.task_id, teacher=teacher)
        for module in modules:
            report.modules_seen += 1
            digest = code_hash(module.standalone_code, label=f"{task.task_id} module {module.name}")
            if digest in seen or library.has_code(module.standalone_code):
                continue  # checked before describing it: a teacher call for a duplicate is wasted
            seen.add(digest)
            description = _describe(module, task, describe)
            records.append(record_from_module(module, description, provenance=provenance, verification=verification))
    report.added_ids = library.add(records)
    report.duplicates = report.modules_seen - len(report.added_ids)
    return report


def record_from_module(
    module: FunctionModule, description: str, *, provenance: Provenance, verification: Verification
) -> ModuleRecord:
    """A library record for ``module``; its code carries the imports and constants it needs to run alone."""
    return ModuleRecord.model_validate(
        {
            "name": module.name,
            "signature": module.signature,
            "description": description,
            "code": module.standalone_code,
            "provenance": provenance,
            "verification": verification,
        }
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
    """The task statement of an instruction, without quotes and the example asserts that MBPP prompts end with."""
    lines = []
    for line in instruction.strip().splitlines():
        line = line.strip().strip('"\'').strip()
        if line.startswith("assert"):
            break
        if line:
            lines.append(line)
    return " ".join(" ".join(lines).split()) or None


def _source(task: SeedTask) -> str:
    return task.source if ":" in task.source else f"{task.source}:{task.split}"
