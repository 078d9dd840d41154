"""Completion-style instructions (a bare function stub) framed as evalplus frames a task for chat models.

HumanEval-style benchmarks give a function signature and docstring to complete. Sent bare through DSPy's field
markers, a small teacher often repeats the stub with no body; evalplus's own chat code generation puts a one-line
instruction before it and the stub in a fenced block. ``frame_instruction`` does the same for every program
variant, ``plain_prompt`` is the one message a user would try first (the ``direct-plain`` anchor), and
``insist_on_body`` amends an instruction whose answer came back hollow. Prose instructions, with or without code
blocks in them, are left as they are. All functions here are pure.

A framed stub is the plain prompt itself and carries its own instruction (``carries_its_own_instruction``): the
text adapter sends it without the signature's instructions, which were written for prose answers. On the 231
MBPP+-stub and BigCodeBench-complete train and dev tasks those instructions won nothing (direct 68, the plain
prompt 69), so ``direct`` now sends the plain prompt for a stub and adds only the hollow re-ask: it cannot lose
to it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from amr_dspy.extract import hollow_functions

__all__ = ["carries_its_own_instruction", "completion_target", "frame_instruction", "insist_on_body", "plain_prompt"]

_COMPLETE = "Complete the following Python function"
_RETURN_FUNCTION = "Return the full function in one ```python code block."


def completion_target(instruction: str, entry_point: str | None = None) -> str | None:
    """The function a completion-style instruction asks to implement; None for any other instruction.

    Completion-style: the instruction is Python source defining a top-level function whose body is only a
    docstring, ``pass`` or ``...``. The target is ``entry_point`` when it is such a function, else the last one.
    """
    hollow = hollow_functions(instruction)  # empty for prose: it does not parse
    if not hollow:
        return None
    if entry_point in hollow:
        return entry_point
    return _functions_in_order(instruction, hollow)[-1]


def frame_instruction(instruction: str, entry_point: str | None = None) -> str:
    """A completion-style instruction as a task for a chat model; any other instruction unchanged.

    Framing is idempotent: a framed instruction is prose around a code block, which is never framed again.
    """
    target = completion_target(instruction, entry_point)
    if target is None:
        return instruction
    return f"{_COMPLETE} `{target}`. {_RETURN_FUNCTION}\n{_fenced(instruction)}"


def carries_its_own_instruction(text: str) -> bool:
    """Whether ``text`` is a framed stub (amended or not): the instruction to implement it is already in it."""
    return text.startswith(f"{_COMPLETE} `")


def plain_prompt(instruction: str, entry_point: str | None = None) -> str:
    """The single message a user would send first: the stub to complete, or the prose instruction as it is."""
    if completion_target(instruction, entry_point) is None:
        return f"{instruction.rstrip()}\nReturn the solution in one ```python code block."
    return frame_instruction(instruction, entry_point)


def insist_on_body(instruction: str, names: Iterable[str]) -> str:
    """``instruction`` amended for a second try after an answer that left ``names`` without a body."""
    listed = ", ".join(f"`{name}`" for name in sorted(names)) or "the function"
    return (f"{instruction.rstrip()}\n\nImplement the body of {listed}: write the working code, not only the "
            "signature and docstring, and not `pass` or `...`.")


def _fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def _definitions(source: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    try:
        body = ast.parse(source).body
    except (SyntaxError, ValueError):
        return []
    return [node for node in body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _functions_in_order(source: str, names: set[str]) -> list[str]:
    return [node.name for node in _definitions(source) if node.name in names]
