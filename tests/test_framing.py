"""Completion-style instructions are framed as evalplus frames them for chat models; prose is left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

import amr_dspy.run
from amr_dspy.framing import completion_target, frame_instruction, insist_on_body, plain_prompt
from tests.evalplus_helpers import use_humaneval_fixture

STUB = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b.\n    >>> add(1, 2)\n    3\n    """\n'
FENCED_STUB = f"```python\n{STUB.strip()}\n```"


def test_a_stub_is_framed_with_an_instruction_the_entry_point_and_a_fenced_block() -> None:
    framed = frame_instruction("\n\n" + STUB, "add")
    assert framed == (
        f"Complete the following Python function `add`. Return the full function in one ```python code block.\n"
        f"{FENCED_STUB}"
    )


@pytest.mark.parametrize("body", ["pass", "...", '"""Add."""\n    pass'])
def test_a_stub_with_pass_or_ellipsis_is_framed(body: str) -> None:
    stub = f"from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    {body}\n"
    framed = frame_instruction(stub, "total")
    assert framed.startswith("Complete the following Python function `total`.")
    assert framed.endswith(f"```python\n{stub.strip()}\n```")


@pytest.mark.parametrize(
    "instruction",
    [
        "Write a function add(a, b) that returns the sum of a and b.",
        "Fix the bug in this function:\n```python\ndef add(a, b):\n    pass\n```\nIt should return the sum.",
        '"""\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n"""\n',  # an MBPP+ prompt
        "def add(a, b):\n    return a + b\n",  # has a body: nothing to complete
        "",
    ],
)
def test_prose_and_complete_code_are_left_unchanged(instruction: str) -> None:
    assert frame_instruction(instruction, "add") == instruction
    assert completion_target(instruction, "add") is None


def test_the_target_is_the_hollow_entry_point_else_the_last_hollow_function() -> None:
    source = 'def helper(x):\n    return x * 2\n\n\ndef first(x):\n    ...\n\n\ndef second(x):\n    """Doc."""\n'
    assert completion_target(source, "first") == "first"
    assert completion_target(source, None) == "second"
    assert completion_target(source, "helper") == "second"  # implemented already: not what is asked for
    assert "`first`" in frame_instruction(source, "first")


def test_framing_is_idempotent() -> None:
    once = frame_instruction(STUB, "add")
    assert frame_instruction(once, "add") == once


def test_the_plain_prompt_is_what_a_user_would_type_first() -> None:
    assert plain_prompt(STUB, "add") == frame_instruction(STUB, "add") == (
        f"Complete the following Python function `add`. Return the full function in one ```python code block.\n"
        f"{FENCED_STUB}"
    )
    assert plain_prompt("Write add(a, b).\n", "add") == (
        "Write add(a, b).\nReturn the solution in one ```python code block."
    )


def test_insisting_on_a_body_names_the_functions_left_hollow() -> None:
    amended = insist_on_body("Write add(a, b).\n", {"add", "helper"})
    assert amended.startswith("Write add(a, b).\n\nImplement the body of `add`, `helper`:")
    assert "not `pass` or `...`" in amended
    assert "Implement the body of the function:" in insist_on_body("Write it.", [])


def test_generate_passes_a_benchmark_stub_and_its_entry_point_to_the_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amr_dspy.cli import app
    from tests.plain_teacher import PlainTeacher

    use_humaneval_fixture(monkeypatch, tmp_path)
    answer = "```python\ndef unused():\n    return 0\n\ndef digit_sum(n):\n    return sum(map(int, str(n)))\n```"
    teacher = PlainTeacher(answer)

    @contextmanager
    def fake_session(spec: object) -> Iterator[dspy.LM]:
        with dspy.context(lm=teacher):
            yield teacher

    monkeypatch.setattr(amr_dspy.run, "teacher_session", fake_session)
    out = tmp_path / "answers.jsonl"
    args = ["generate", "--input", "humaneval+", "--limit", "1", "--variant", "direct-plain", "--teacher", "local",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args, terminal_width=160)
    assert result.exit_code == 0, result.output
    [sent] = teacher.sent
    assert len(sent) == 1 and sent[0]["content"].startswith("Complete the following Python function `digit_sum`.")
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["instruction"].lstrip().startswith("def digit_sum")  # the raw stub is what the record keeps
    assert "def digit_sum" in row["code"] and "unused" not in row["code"]  # extracted for the entry point
