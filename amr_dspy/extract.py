"""Pull the solution code out of a teacher's markdown response with evalplus's sanitizer."""

from __future__ import annotations

import ast
import re

__all__ = ["balance_fences", "extract_code", "fenced_blocks", "defined_functions", "hollow_functions"]

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"", "python", "python3", "py", "py3"}
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def fenced_blocks(text: str) -> list[str]:
    """The bodies of the Python (or untagged) fenced code blocks, in order."""
    return [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]


def extract_code(response: str, entry_point: str | None = None) -> str | None:
    """The solution in ``response`` (imports plus the definitions ``entry_point`` needs), or None if it has no code.

    Fenced blocks are joined first: evalplus's ``code_extract`` tries every line span, which is
    cubic in the response length, and the prose around the fences is never code anyway.
    """
    from evalplus.sanitize import sanitize

    blocks = fenced_blocks(response)
    text = "\n\n".join(blocks) if blocks else response
    if not text.strip():
        return None
    code = _unmark(sanitize(_mark_returnless(text), entry_point))
    return code + "\n" if _defines_something(code) else None


_RETURN_MARK = "return  # amr-dspy: no return of its own"


def _mark_returnless(code: str) -> str:
    """``code`` with a marked ``return`` closing each top-level function that has none.

    evalplus's sanitizer keeps only functions with a return statement; a function that plots, prints or writes a
    file (BigCodeBench asks for many) would be dropped, and with it the answer. The marks are removed afterwards.
    """
    lines = code.splitlines()
    inserts = []
    for node in _functions(code):
        body = node.body
        returns = any(isinstance(n, ast.Return) for n in ast.walk(node))
        if not returns and body[0].lineno > node.lineno and node.end_lineno is not None:
            inserts.append((node.end_lineno, " " * body[0].col_offset + _RETURN_MARK))
    for line_no, mark in sorted(inserts, reverse=True):
        lines.insert(line_no, mark)
    return "\n".join(lines) if inserts else code


def _unmark(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if line.strip() != _RETURN_MARK)


def balance_fences(response: str) -> str:
    """``response`` with its code fences paired, for a training record.

    The compiled direct program's answers sometimes begin inside a code block (its demos' code ends with a fence),
    so a lone closing fence follows the code: the block gets its opening fence. A lone opening fence (an answer cut
    off) gets its closing one.
    """
    lines = response.splitlines()
    fences = [i for i, line in enumerate(lines) if line.lstrip().startswith("```")]
    if len(fences) % 2 == 0:
        return response
    before = "\n".join(lines[: fences[0]])
    if _defines_something(before):
        return "```python\n" + response
    return response.rstrip("\n") + "\n```\n"


def _defines_something(code: str) -> bool:
    """Sanitize falls back to the longest parsable span, which may be a stray word of prose."""
    return any(isinstance(node, _DEFINITIONS) for node in _top_level(code))


def defined_functions(code: str) -> set[str]:
    """Names of the top-level functions ``code`` defines (empty if it does not parse)."""
    return {node.name for node in _functions(code)}


def hollow_functions(code: str) -> set[str]:
    """Top-level functions whose body is only a docstring, ``pass`` or ``...``: a signature echoed back, not code."""
    return {node.name for node in _functions(code) if all(map(_is_filler, node.body))}


def _top_level(code: str) -> list[ast.stmt]:
    try:
        return ast.parse(code).body
    except (SyntaxError, ValueError):
        return []


def _functions(code: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in _top_level(code) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _is_filler(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Pass) or (
        isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
