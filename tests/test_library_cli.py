"""`amr-dspy library ...` through typer's CliRunner: build (real sandbox, real MiniLM), add, search, stats, export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dspy

import pyarrow.parquet as pq
import pytest
from dspy.utils.dummies import DummyLM
from typer.testing import CliRunner

import amr_dspy.cli.library  # noqa: F401 - registers the commands on library_app
import amr_dspy.tasks
from amr_dspy.cli._app import app
from amr_dspy.errors import ConfigError, DataError, LibraryError
from amr_dspy.library import MINILM_NAME, HashingEmbedder, Library
from amr_dspy.tasks import Task
from amr_dspy.teacher import TeacherSpec
from amr_dspy.testcases import CallTest

TWO_FUNCTIONS = '''\
def celsius_to_fahrenheit(c: float) -> float:
    """Convert a temperature from Celsius to Fahrenheit."""
    return c * 9 / 5 + 32


def word_count(text: str) -> int:
    return len(text.split())
'''


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def lib_dir(tmp_path: Path) -> Path:
    Library.create(tmp_path / "lib", HashingEmbedder(64))
    return tmp_path / "lib"


def invoke(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_add_search_stats_export(runner: CliRunner, lib_dir: Path, tmp_path: Path) -> None:
    code = tmp_path / "funcs.py"
    code.write_text(TWO_FUNCTIONS)
    out = invoke(runner, "library", "add", str(lib_dir), "--file", str(code))
    assert out.count("added") == 2 and "def word_count(text: str) -> int:" in out
    assert "duplicate, skipped" in invoke(runner, "library", "add", str(lib_dir), "--file", str(code))

    records = {r.name: r for r in Library.open(lib_dir).records}
    assert records["celsius_to_fahrenheit"].description == "Convert a temperature from Celsius to Fahrenheit."
    assert records["word_count"].verification.method == "manual"
    assert records["word_count"].provenance.artifact == str(code)

    out = invoke(runner, "library", "search", str(lib_dir), "convert a temperature from celsius", "-k", "2")
    rows = [line for line in out.splitlines() if line.lstrip("│ ").startswith(("1", "2"))]
    assert "celsius_to_fahrenheit" in rows[0] and "word_count" in out
    assert "return c * 9 / 5 + 32" in out

    out = invoke(runner, "library", "stats", str(lib_dir))
    assert "count" in out and " 2 " in out and "hashing-64" in out and "verified by manual" in out

    jsonl = tmp_path / "export" / "mods.jsonl"
    invoke(runner, "library", "export", str(lib_dir), "--out", str(jsonl))
    assert [json.loads(line)["name"] for line in jsonl.read_text().splitlines()] == list(records)
    parquet = tmp_path / "mods.parquet"
    invoke(runner, "library", "export", str(lib_dir), "--out", str(parquet), "--format", "parquet")
    assert pq.read_table(parquet).column("name").to_pylist() == list(records)


def test_add_with_a_description_needs_exactly_one_function(runner: CliRunner, lib_dir: Path, tmp_path: Path) -> None:
    code = tmp_path / "funcs.py"
    code.write_text(TWO_FUNCTIONS)
    result = runner.invoke(app, ["library", "add", str(lib_dir), "--file", str(code), "--description", "x"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == f"--description needs a file with exactly one function; {code} has 2"
    single = tmp_path / "one.py"
    single.write_text("def word_count(text):\n    return len(text.split())\n")
    invoke(runner, "library", "add", str(lib_dir), "--file", str(single), "--description", "Count the words.")
    assert Library.open(lib_dir).records[0].description == "Count the words."
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    assert isinstance(runner.invoke(app, ["library", "add", str(lib_dir), "--file", str(empty)]).exception, DataError)


def test_commands_on_a_missing_library_fail_with_a_library_error(runner: CliRunner, tmp_path: Path) -> None:
    for args in (["stats"], ["search", "q"], ["export", "--out", str(tmp_path / "x.jsonl")]):
        command, *rest = args
        result = runner.invoke(app, ["library", command, str(tmp_path / "none"), *rest])
        assert isinstance(result.exception, LibraryError) and "not a function-module library" in str(result.exception)


def make_task(number: int, body: str, split: str = "train") -> Task:
    return Task(
        task_id=f"Mbpp/{number}",
        instruction=(
            f'"""\nWrite a function to add two integers (task {number}).\nassert add_{number}(1, 2) == 3\n"""\n'
        ),
        entry_point=f"add_{number}",
        tests=[CallTest(name="base_0", inputs=[1, 2], expected=3), CallTest(name="base_1", inputs=[5, 5], expected=10)],
        dataset="mbpp",
        source="mbpp+",
        split=split,
        canonical_solution=f"def add_{number}(a, b):\n    return {body}\n",
    )


def test_build_seeds_verified_training_tasks(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def load_tasks(spec: str, *, limit: int | None = None) -> list[Task]:
        asked.append(spec)
        return [make_task(601, "a + b"), make_task(602, "a - b")][:limit]

    monkeypatch.setattr(amr_dspy.tasks, "load_tasks", load_tasks)
    out = invoke(runner, "library", "build", "--from", "mbpp+:train", "--out", str(tmp_path / "seeded"))
    assert asked == ["mbpp+:train"]
    assert "Mbpp/602" in out  # its canonical solution fails its tests
    library = Library.open(tmp_path / "seeded")  # the real MiniLM, named in the manifest
    assert library.embedding_model == MINILM_NAME
    assert [r.name for r in library.records] == ["add_601"]
    record = library.records[0]
    assert record.description == "Write a function to add two integers (task 601)."
    assert record.verification.n_tests == 2 and record.provenance.source == "mbpp+:train"
    assert library.search("sum of two numbers")[0][0].record.name == "add_601"

    again = runner.invoke(app, ["library", "build", "--out", str(tmp_path / "seeded")])
    assert isinstance(again.exception, LibraryError) and "already exists" in str(again.exception)


def test_build_with_a_teacher_describes_modules_without_a_docstring(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper_task = make_task(603, "twice(a) - a + b")
    helper_task.canonical_solution = "def twice(x):\n    return 2 * x\n\n" + (helper_task.canonical_solution or "")
    monkeypatch.setattr(amr_dspy.tasks, "load_tasks", lambda spec, limit=None: [helper_task])
    prompts: list[str] = []

    @contextmanager
    def stand_in_session(spec: TeacherSpec) -> Iterator[dspy.LM]:
        lm = DummyLM([{"description": "Double a number."}])
        with dspy.context(lm=lm):
            yield lm
        prompts.extend(str(entry["messages"]) for entry in lm.history)

    monkeypatch.setattr(amr_dspy.cli.library, "teacher_session", stand_in_session)
    invoke(runner, "library", "build", "--out", str(tmp_path / "described"), "--teacher", "local")
    records = {r.name: r for r in Library.open(tmp_path / "described").records}
    assert records["twice"].description == "Double a number."  # from the teacher
    assert records["add_603"].description == "Write a function to add two integers (task 603)."  # task statement
    assert len(prompts) == 1 and "return 2 * x" in prompts[0]
    assert records["twice"].provenance.teacher == TeacherSpec.parse("local").name


def test_build_refuses_non_training_tasks_before_running_them(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amr_dspy.tasks, "load_tasks", lambda spec, limit=None: [make_task(520, "a + b", split="dev")])
    result = runner.invoke(app, ["library", "build", "--from", "mbpp+:dev", "--out", str(tmp_path / "dev")])
    assert isinstance(result.exception, ConfigError)
    assert "refusing to seed the library from task 'Mbpp/520' (split 'dev'" in str(result.exception)
    assert not (tmp_path / "dev").exists()
