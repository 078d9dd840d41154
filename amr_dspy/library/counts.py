"""How each source benchmark seeded a library, as its manifest records it (``amr-dspy library build``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["SourceCounts"]


class SourceCounts(BaseModel):
    """One source benchmark's share of a seeded library: what was read, verified and added."""

    source: str  # the benchmark spec it was read from, e.g. "bigcodebench:train@core"
    tasks: int = Field(ge=0)  # tasks read
    verified: int = Field(ge=0)  # canonical solutions that passed their task's tests
    failed: int = Field(ge=0)  # canonical solutions that did not
    skipped: int = Field(ge=0)  # not scored: the run needed a library that is not installed here
    excluded: int = Field(ge=0)  # on the benchmark's exclusion list: not run
    without_function: int = Field(ge=0)  # no canonical solution or no top-level function
    modules_seen: int = Field(ge=0)  # top-level functions of the verified solutions
    not_standalone: int = Field(ge=0)  # left out: the module's own code does not run (or pass) alone
    modules_added: int = Field(ge=0)
    duplicates: int = Field(ge=0)  # same normalized code as a module already added (from any source)
    failed_task_ids: list[str] = Field(default_factory=list)
    skipped_task_ids: list[str] = Field(default_factory=list)
    excluded_task_ids: list[str] = Field(default_factory=list)
    not_standalone_modules: list[str] = Field(default_factory=list)  # "task_id name"
