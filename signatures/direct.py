"""Answering a coding instruction directly: the teacher's first response (and, wrapped in ChainOfThought, the CoT
baseline).

The instructions are written for prose tasks: a framed stub carries its own (``amr_dspy.framing``), and the text
adapter sends it without these."""

from __future__ import annotations

import dspy


class DirectResponse(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """You are an expert Python programmer. Answer the coding instruction with a correct, complete solution.

    Give exactly one fenced ```python code block that contains the whole solution: all imports, any helper
    functions and the requested function with exactly the name and parameters the instruction asks for (or uses
    in its example). Do exactly what the instruction and its examples ask; add no special cases they do not ask
    for. After the code block, explain the solution in one or two sentences. Do not include example usage,
    input() calls or tests in the code block."""

    instruction: str = dspy.InputField(
        desc="The coding task, possibly with an example assertion or a function signature."
    )
    response: str = dspy.OutputField(desc="One complete ```python code block, then a short explanation.")

