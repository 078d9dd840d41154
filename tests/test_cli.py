"""CLI smoke tests through a real subprocess: help, one-line errors, and (marked) a real generate run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import llama_server_pids


def amr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amr_dspy", *args], capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "COLUMNS": "200"})  # fmt: skip


def test_help_lists_every_command() -> None:
    result = amr("--help")
    assert result.returncode == 0
    for command in ("generate", "eval", "teacher", "library", "bench", "compare", "report", "compile", "program", "synthesize"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate"], "give exactly one of --instruction TEXT or --input FILE"),
        (["generate", "-i", "x", "--input", "sample"], "give exactly one of --instruction TEXT or --input FILE"),
        (["generate", "-i", "x", "--teacher", "gpt4"], "unrecognised teacher 'gpt4'; accepted: local"),
        (["generate", "-i", "x", "--variant", "nope"], "unknown variant 'nope'"),
        (["teacher", "serve", "--teacher", "openai/gpt-4o-mini"], "teacher serve runs a local teacher only"),
    ],
)
def test_user_errors_are_one_red_line_and_exit_1(args: list[str], message: str) -> None:
    result = amr(*args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_malformed_instruction_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"instruction": \n')
    result = amr("generate", "--input", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.teacher
def test_generate_answers_with_the_real_teacher_and_leaves_no_server(tmp_path: Path) -> None:
    before = llama_server_pids()
    out = tmp_path / "answers.jsonl"
    result = amr("generate", "--input", "sample", "--limit", "1", "--max-tokens", "400", "--no-cache",
                 "--out", str(out), timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sample-01" in result.stdout
    record = json.loads(out.read_text().splitlines()[0])
    assert record["id"] == "sample-01" and record["code"] and "def merge_intervals" in record["code"]
    assert llama_server_pids() - before == set()


@pytest.mark.teacher
def test_teacher_check_prints_tokens_per_second() -> None:
    result = amr("teacher", "check", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "tokens/s" in result.stdout and "qwen2.5-coder-0.5b" in result.stdout
