"""The examples an instruction states itself, as tests: they come before any test the teacher writes.

An MBPP+ instruction is a docstring-like text ending with ``assert f(...) == ...``; a prose instruction may carry
assert lines or a fenced code block with asserts; a HumanEval-style stub carries ``>>>`` examples in the docstring
of the function to implement. Everything is read with ``ast`` and ``doctest.DocTestParser``: a line is an example
only when Python parses it as one. A doctest becomes ``assert CALL == EXPECTED`` when its expected output is a
Python expression (a literal, or built from constants and a few builtin constructors); any other doctest (printed
text, an object's repr, the output of ``print``) is skipped, as is an example whose call is a statement. All
functions here are pure.
"""

from __future__ import annotations

import ast
import doctest
import sys
import textwrap
import warnings
from collections.abc import Iterator

from amr_dspy.extract import fenced_blocks, hollow_functions
from amr_dspy.testcases import AssertTest

__all__ = ["instruction_examples", "EXAMPLE_TIME_LIMIT_S"]

EXAMPLE_TIME_LIMIT_S = 3.0
_MAX_ASSERT_LINES = 20  # an assert spread over more lines than this is not an example line of prose
_EXPECTED_NAMES = {"True", "False", "None", "float", "int", "str", "bytes", "bool", "complex", "list", "tuple", "set",
                   "frozenset", "dict", "range"}  # fmt: skip
_FENCE = "```"


def instruction_examples(instruction: str, entry_point: str | None = None) -> list[AssertTest]:
    """The instruction's own examples as ``AssertTest``s named ``example_1``, ...; none when it states none.

    ``entry_point`` narrows a stub's doctests to that function when it is one of the functions to implement.
    """
    kept: dict[str, str] = {}  # ast.dump -> code: an example stated twice (prose and doctest) runs once
    for code in _from_text(instruction, entry_point):
        kept.setdefault(ast.dump(ast.parse(code)), code)
    return [AssertTest(name=f"example_{i}", code=code, time_limit_s=EXAMPLE_TIME_LIMIT_S)
            for i, code in enumerate(kept.values(), 1)]  # fmt: skip


def _from_text(text: str, entry_point: str | None) -> Iterator[str]:
    tree = _parse(text)
    if tree is not None:
        yield from _from_code(tree, text, entry_point)
        return
    for block in fenced_blocks(text):
        block_tree = _parse(block)
        yield from _from_code(block_tree, block, entry_point) if block_tree is not None else _from_prose(block)
    yield from _from_prose(_outside_fences(text))


def _from_code(tree: ast.Module, source: str, entry_point: str | None) -> Iterator[str]:
    """Top-level asserts, prose in module-level strings (an MBPP+ prompt is one), doctests of the stub's target."""
    targets = _targets(source, entry_point)
    for node in tree.body:
        if isinstance(node, ast.Assert):
            yield _with_imports(ast.get_source_segment(source, node) or ast.unparse(node))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield from _from_prose(node.value.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in targets:
            yield from _from_prose(ast.get_docstring(node) or "")


def _targets(source: str, entry_point: str | None) -> set[str]:
    """The functions a stub asks to implement (their docstrings hold its examples); implemented helpers are not."""
    hollow = hollow_functions(source)
    return {entry_point} if entry_point in hollow else hollow


def _from_prose(text: str) -> Iterator[str]:
    yield from _assert_lines(text)
    yield from _doctests(text)


def _assert_lines(text: str) -> Iterator[str]:
    """Assert statements on their own line of prose (after a label such as ``Example:``), possibly multi-line."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        start = _assert_start(line)
        if start is None:
            continue
        for end in range(i + 1, min(i + _MAX_ASSERT_LINES, len(lines)) + 1):
            candidate = textwrap.dedent("\n".join([line[start:], *lines[i + 1 : end]]))
            statement = _single_assert(candidate)
            if statement is not None:
                yield _with_imports(candidate.strip())
                break


def _assert_start(line: str) -> int | None:
    stripped = line.lstrip()
    if stripped.startswith(">>>"):
        return None  # a doctest's source line, read by the doctest parser
    at = line.find("assert")
    if at < 0 or line[at + len("assert") : at + len("assert") + 1] not in (" ", "("):
        return None
    before = line[:at].strip()
    return at if not before or before.endswith(":") else None


def _single_assert(code: str) -> ast.Assert | None:
    tree = _parse(code)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    return tree.body[0]


def _doctests(text: str) -> Iterator[str]:
    """``>>> CALL`` with an expected expression as an assert; earlier statements without output are its setup."""
    setup: list[str] = []
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:  # inconsistent indentation in a docstring
        return
    for example in examples:
        source, want = example.source.strip(), example.want.strip()
        if not want:
            if _parse(source) is not None:
                setup.append(source)
            continue
        assertion = _doctest_assert(source, want)
        if assertion is not None:
            yield _with_imports("\n".join([*setup, assertion]))


def _doctest_assert(source: str, want: str) -> str | None:
    call, expected = _expression(source), _expression(want)
    if call is None or expected is None or not _plain_value(expected) or _prints(call):
        return None
    return ast.unparse(ast.Assert(test=ast.Compare(left=call, ops=[ast.Eq()], comparators=[expected])))


def _prints(call: ast.expr) -> bool:
    """``>>> print(x)`` shows text, not the value of the call (which is None)."""
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print"


def _expression(text: str) -> ast.expr | None:
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError):
        return None


def _plain_value(node: ast.expr) -> bool:
    """An expected output written as a value: constants, containers, operators and builtin constructors only."""
    allowed = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.UnaryOp, ast.BinOp, ast.Call, ast.Name,
               ast.Load, ast.unaryop, ast.operator, ast.keyword, ast.Starred)  # fmt: skip
    for child in ast.walk(node):
        if not isinstance(child, allowed):
            return False
        if isinstance(child, ast.Name) and child.id not in _EXPECTED_NAMES:
            return False
        if isinstance(child, ast.Call) and not isinstance(child.func, ast.Name):
            return False
    return True


def _with_imports(code: str) -> str:
    """Import the standard modules an example names (``math.isclose``): the solution under test may not. A name the
    solution defines itself (a class ``queue``) is left alone."""
    tree = _parse(code)
    if tree is None:
        return code
    modules = sorted({node.value.id for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and isinstance(node.value, ast.Name) and node.value.id in sys.stdlib_module_names})  # fmt: skip
    return "\n".join([*(f"if {name!r} not in globals(): import {name}" for name in modules), code])


def _outside_fences(text: str) -> str:
    """``text`` without its fenced blocks, whose contents are read as code."""
    kept, inside = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(_FENCE):
            inside = not inside
            continue
        if not inside:
            kept.append(line)
    return "\n".join(kept)


def _parse(text: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():  # MBPP prompts write regexes like '\w+' in plain strings
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            return ast.parse(text)
    except (SyntaxError, ValueError):
        return None
