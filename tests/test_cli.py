"""CLI smoke tests through a real subprocess: help, one-line errors, and (marked) a real generate run; and, in
process, options that must reach the program a command builds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import amr_dspy.run
from tests.conftest import llama_server_pids


def amr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amr_dspy", *args], capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "COLUMNS": "200"})  # fmt: skip


def test_help_lists_every_command() -> None:
    result = amr("--help")
    assert result.returncode == 0
    for command in ("generate", "eval", "teacher", "library", "bench", "compare", "report", "compile", "program",
                    "synthesize"):
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


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--variant", "direct-select"],
        ["compare", "--variants", "direct,direct-select"],
        ["compile", "--variant", "direct-select"],
        ["synthesize", "--input", "sample", "--out", "never-written", "--variant", "direct-select"],
    ],
)
def test_a_negative_select_samples_is_refused_by_every_command(args: list[str]) -> None:
    result = amr(*args, "--select-samples", "-1")
    assert result.returncode == 2
    assert "Invalid value for '--select-samples'" in result.stderr  # a usage error, before anything starts


class _Stop(Exception):
    """Ends a command once it has handed its options on: no sandbox run, no teacher."""


def test_select_samples_reaches_the_program_compile_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import nullcontext

    import amr_dspy.cli.compile as compile_cli
    import optimize.compile
    from amr_dspy.cli import app
    from amr_dspy.programs import build_program
    from tests.compile_helpers import fake_task

    built: list[tuple[int, int]] = []

    def compile_program(variant: str, *args: object, program_options: dict[str, object], **kwargs: object) -> None:
        config = build_program(variant, **program_options).config
        built.append((config.samples, config.test_sets))
        raise _Stop

    monkeypatch.setattr(amr_dspy.run, "teacher_session", lambda spec: nullcontext())
    monkeypatch.setattr(compile_cli, "load_tasks", lambda spec, limit=None: [fake_task(k, spec) for k in (1, 2, 3)])
    monkeypatch.setattr(optimize.compile, "compile_program", compile_program)
    for args, settings in ((["--select-samples", "7", "--test-sets", "3"], (7, 3)), ([], (8, 1))):
        result = CliRunner().invoke(app, ["compile", "--variant", "direct-select", "--recipe", "bootstrap",
                                          "--workers", "1", *args])  # fmt: skip
        assert isinstance(result.exception, _Stop), result.output
        assert built[-1] == settings


def test_select_samples_reaches_the_program_synthesize_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import amr_dspy.synthesis
    from amr_dspy.cli import app

    jobs: list[amr_dspy.synthesis.SynthesisJob] = []

    def prepare(job: amr_dspy.synthesis.SynthesisJob) -> None:
        jobs.append(job)
        raise _Stop

    monkeypatch.setattr(amr_dspy.synthesis, "prepare", prepare)
    result = CliRunner().invoke(app, ["synthesize", "--input", "sample", "--out", str(tmp_path / "run"), "--variant",
                                      "amr-select", "--select-samples", "3", "--test-sets", "2"])  # fmt: skip
    assert isinstance(result.exception, _Stop), result.output
    (job,) = jobs
    program = amr_dspy.run.load_program(job.variant, samples=job.samples, test_sets=job.test_sets).module
    assert (job.samples, job.test_sets) == (3, 2) and (program.config.samples, program.config.test_sets) == (3, 2)
    assert amr_dspy.run.load_program("amr", samples=job.samples).module.config == \
        amr_dspy.run.load_program("amr").module.config  # a variant that does not sample ignores it


def test_the_select_samples_help_names_select_configs_default() -> None:
    from amr_dspy.cli._options import SelectSamplesOpt
    from amr_dspy.programs import AMRSelectConfig, SelectConfig

    help_text = SelectSamplesOpt.__metadata__[0].help
    defaults = f"(default {SelectConfig().samples} for direct-select, {AMRSelectConfig().samples} for amr-select)"
    assert defaults in help_text
