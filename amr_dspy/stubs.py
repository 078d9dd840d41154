"""MBPP+ prompts rewritten as completion-style stubs (``mbpp+stub``), from their canonical solutions' signatures.

An MBPP+ prompt is a task sentence and one example assert. Its stub is the canonical solution's top-level imports
and the entry point's ``def`` (name, parameters, annotations and defaults as written; decorators dropped) with a
docstring only: the task sentence, then the example as a doctest when it reads ``assert CALL == EXPECTED``, else as
an ``Example: assert ...`` line. Same task, same hidden tests; only how it is asked differs.
"""

from __future__ import annotations

import ast
import copy
import warnings

from amr_dspy.errors import DataError

__all__ = ["mbpp_stub", "stub_statement"]

_INDENT = "    "


def mbpp_stub(prompt: str, canonical_solution: str, entry_point: str) -> str:
    """The stub of an MBPP+ task: imports, the entry point's signature and a docstring made from ``prompt``."""
    try:
        with warnings.catch_warnings():  # MBPP solutions write regexes like '\w+' in plain strings
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            tree = ast.parse(canonical_solution)
    except SyntaxError as exc:
        raise DataError(f"{entry_point}: canonical solution does not parse ({exc.msg})") from exc
    function = next((node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and node.name == entry_point), None)  # fmt: skip
    if function is None:
        raise DataError(f"{entry_point}: the canonical solution defines no top-level function {entry_point!r}")
    imports = [ast.get_source_segment(canonical_solution, node) or ast.unparse(node)
               for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]  # fmt: skip
    stub = f"{_signature(function)}\n{_docstring(prompt)}\n"
    return "\n".join(imports) + "\n\n\n" + stub if imports else stub


def stub_statement(instruction: str, entry_point: str | None) -> str | None:
    """The task sentence of a stub: the first paragraph of ``entry_point``'s docstring; None for a prose prompt."""
    try:
        body = ast.parse(instruction).body
    except (SyntaxError, ValueError):
        return None
    docstring = next((ast.get_docstring(node) for node in body if isinstance(node, (ast.FunctionDef,
                      ast.AsyncFunctionDef)) and node.name == entry_point), None)  # fmt: skip
    return docstring.split("\n\n", 1)[0] if docstring else None


def _signature(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The ``def`` line as ``ast.unparse`` writes it; the body is replaced, so it is always a single line."""
    header = copy.copy(function)
    header.decorator_list, header.body = [], [ast.Pass()]
    return ast.unparse(header).splitlines()[0]


def _docstring(prompt: str) -> str:
    prose, example = _split_prompt(prompt)
    lines = [*prose, *(["", *_example_lines(example)] if example else [])]
    text = "\n".join(f"{_INDENT}{line}" if line else "" for line in lines)
    prefix = "r" if "\\" in text else ""  # keep backslashes (regexes, escapes in examples) as written
    return f'{_INDENT}{prefix}"""{text.strip()}\n{_INDENT}"""'


def _split_prompt(prompt: str) -> tuple[list[str], str | None]:
    """The prose lines of an MBPP+ prompt (a docstring) and its example assert, which MBPP prompts end with."""
    body = prompt.strip().removeprefix('"""').removesuffix('"""')
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("assert")), len(lines))
    return lines[:start], " ".join(lines[start:]) or None


def _example_lines(assertion: str) -> list[str]:
    """``>>> CALL`` and ``EXPECTED`` for ``assert CALL == EXPECTED``; any other example kept as an assert."""
    try:
        statement = ast.parse(assertion).body[0]
    except (SyntaxError, IndexError):
        return [f"Example: {assertion}"]
    test = statement.test if isinstance(statement, ast.Assert) and statement.msg is None else None
    if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Call)
            and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):  # fmt: skip
        return [f">>> {ast.unparse(test.left)}", ast.unparse(test.comparators[0])]
    return [f"Example: {assertion}"]
