"""The records of the function-module library: one verified module, where it came from, and a search hit."""

from __future__ import annotations

import ast
import hashlib
import re
import textwrap
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from amr_dspy.errors import DataError

__all__ = ["Verification", "Provenance", "ModuleRecord", "Hit", "normalize_code", "code_hash", "module_text"]

_DEF_NAME = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)")


class Verification(BaseModel):
    """How a module was verified: ``task_tests`` (its task's hidden tests), ``unit_tests``, ``manual``, ..."""

    method: str
    passed: bool
    n_tests: int = Field(default=0, ge=0)
    details: str | None = None


class Provenance(BaseModel):
    """Where a module came from."""

    source: str  # e.g. "mbpp+:train", "evol:<run id>", "manual"
    task_id: str | None = None
    instruction_id: str | None = None
    teacher: str | None = None
    artifact: str | None = None  # the compiled program artifact that produced it


class ModuleRecord(BaseModel):
    """One function module; ``code_hash``, ``id`` and ``created_at`` are filled in when not given."""

    id: str
    name: str
    signature: str  # the def line with its type hints, e.g. "def add(a: int, b: int) -> int:"
    description: str
    code: str
    provenance: Provenance
    verification: Verification
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    embedding_model: str = ""  # set by the library that embeds it
    code_hash: str

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, data: Any) -> Any:
        # Only computed when absent, so loading a large library does not re-parse every module.
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            data = dict(data)
            if not data.get("code_hash"):
                data["code_hash"] = code_hash(data["code"], label=str(data.get("name", "module")))
            if not data.get("id"):
                data["id"] = f"{data.get('name', 'module')}-{data['code_hash'][:12]}"
        return data

    @property
    def embedding_text(self) -> str:
        """The text the library embeds for this module (the same shape as a query)."""
        return module_text(self.signature, self.description, name=self.name)


class Hit(BaseModel):
    """A search result: a record and its cosine similarity to the query."""

    record: ModuleRecord
    score: float


def module_text(signature: str, description: str, *, name: str | None = None) -> str:
    """The embedded text of a module or of a query built from a decomposed spec: name, signature, description."""
    if name is None:
        match = _DEF_NAME.match(signature)
        name = match.group(1) if match else ""
    head = f"{name}: {signature.strip()}" if name else signature.strip()
    return f"{head}\n{description.strip()}"


def normalize_code(code: str, *, label: str = "code") -> str:
    """The code with docstrings, comments and layout removed (``ast.unparse``); DataError if it does not parse."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError as exc:
        raise DataError(f"{label}: not valid Python (line {exc.lineno}: {exc.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _has_docstring(node):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def code_hash(code: str, *, label: str = "code") -> str:
    """sha256 of ``normalize_code(code)``: equal for code that differs only in docstrings, comments or layout."""
    return hashlib.sha256(normalize_code(code, label=label).encode()).hexdigest()


def _has_docstring(node: ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    first = node.body[0] if node.body else None
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
