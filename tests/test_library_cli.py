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

import amr_dspy.cli.library  # registers the commands on library_app
import amr_dspy.run
import amr_dspy.tasks
from amr_dspy.cli._app import app
from amr_dspy.errors import ConfigError, DataError, LibraryError
from amr_dspy.library import MINILM_NAME, HashingEmbedder, Library
from amr_dspy.tasks import Task
from amr_dspy.teacher import TeacherSpec
from amr_dspy.testcases import CallTest
from tests.bigcodebench_helpers import FAKE_LIB, PASSING_TEST

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

    monkeypatch.setattr(amr_dspy.run, "teacher_session", stand_in_session)
    invoke(runner, "library", "build", "--out", str(tmp_path / "described"), "--teacher", "local")
    records = {r.name: r for r in Library.open(tmp_path / "described").records}
    assert records["twice"].description == "Double a number."  # from the teacher
    assert records["add_603"].description == "Write a function to add two integers (task 603)."  # task statement
    assert len(prompts) == 1 and "return 2 * x" in prompts[0]
    assert records["twice"].provenance.teacher == TeacherSpec.parse("local").name


@pytest.mark.parametrize("held_out", ["mbpp+:dev", "bigcodebench:dev@core", "bigcodebench:test", "humaneval+"])
def test_build_refuses_held_out_sources_before_loading_any(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_out: str
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(amr_dspy.tasks, "load_tasks", lambda spec, limit=None: asked.append(spec) or [])
    args = ["library", "build", "--from", "mbpp+:train", "--from", held_out, "--out", str(tmp_path / "held")]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == (
        f"refusing to seed the library from {held_out!r}: only a training split may seed it"
        + ("" if held_out == "humaneval+" else f" (e.g. {held_out.partition(':')[0]}:train)")
    )
    assert asked == [] and not (tmp_path / "held").exists()


def test_build_refuses_non_training_tasks_before_running_them(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amr_dspy.tasks, "load_tasks", lambda spec, limit=None: [make_task(520, "a + b", split="dev")])
    result = runner.invoke(app, ["library", "build", "--from", "tasks.jsonl", "--out", str(tmp_path / "dev")])
    assert isinstance(result.exception, ConfigError)
    assert "refusing to seed the library from task 'Mbpp/520' (split 'dev'" in str(result.exception)
    assert not (tmp_path / "dev").exists()


BCB_TEST = "import os\n" + PASSING_TEST  # os only from the test module: task 1 below


def bcb_row(n: int, code_prompt: str, body: str, libs: list[str]) -> dict[str, str]:
    return {
        "task_id": f"BigCodeBench/{n}",
        "instruct_prompt": f"Add one to x (task {n}).\nThe function should output with:\n    int: x + 1.\n"
                           f"You should write self-contained code starting with:\n```\n{code_prompt}```",
        "complete_prompt": code_prompt, "code_prompt": code_prompt, "canonical_solution": body, "test": BCB_TEST,
        "entry_point": "task_func", "libs": repr(libs),
    }  # fmt: skip


BCB_ROWS = [
    bcb_row(0, "import math\nimport numpy as np\ndef task_func(x):\n", "    return int(np.int64(x) + 1)\n",
            ["math", "numpy"]),  # its module leaves out the unused math import, and runs the tests again
    bcb_row(1, "def task_func(x):\n", "    return x + len(os.sep)\n", ["os"]),  # os only from the test module
    bcb_row(2, "def task_func(x):\n", "    return x + 2\n", ["math"]),  # fails its tests
    bcb_row(3, f"import {FAKE_LIB}\ndef task_func(x):\n", "    return x + 1\n", [FAKE_LIB]),  # skipped
    bcb_row(4, "def task_func(x):\n", "    return x + 1\n", ["math"]),  # dev: not read
    bcb_row(10, "def task_func(x):\n", "    return x + 1\n", ["math"]),  # excluded
]


def test_build_merges_two_sources_and_records_per_source_counts(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    from amr_dspy import bigcodebench

    release = tmp_path / "BigCodeBench-mini.jsonl.gz"
    with gzip.open(release, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in BCB_ROWS)
    monkeypatch.setenv("BIGCODEBENCH_OVERRIDE_PATH", str(release))
    monkeypatch.setattr(bigcodebench, "exclusions", lambda: {"BigCodeBench/10": "needs the network"})
    real_load = amr_dspy.tasks.load_tasks

    def load_tasks(spec: str, *, limit: int | None = None) -> list[Task]:
        if spec == "mbpp+:train":
            return [make_task(601, "a + b"), make_task(602, "a - b")]
        return real_load(spec, limit=limit)

    monkeypatch.setattr(amr_dspy.tasks, "load_tasks", load_tasks)
    out_dir = tmp_path / "merged"
    out = invoke(runner, "library", "build", "--from", "mbpp+:train", "--from", "bigcodebench:train",
                 "--workers", "1", "--out", str(out_dir))  # fmt: skip
    assert "BigCodeBench/2" in out and "BigCodeBench/3" in out and "BigCodeBench/10" in out

    seed = {c.source: c for c in Library.open(out_dir).seed}
    mbpp, bcb = seed["mbpp+:train"], seed["bigcodebench:train"]
    assert (mbpp.tasks, mbpp.verified, mbpp.failed, mbpp.modules_added) == (2, 1, 1, 1)
    assert (bcb.tasks, bcb.verified, bcb.failed, bcb.skipped, bcb.excluded) == (5, 2, 1, 1, 1)
    assert (bcb.failed_task_ids, bcb.skipped_task_ids, bcb.excluded_task_ids) == (
        ["BigCodeBench/2"], ["BigCodeBench/3"], ["BigCodeBench/10"])  # fmt: skip
    assert (bcb.modules_added, bcb.not_standalone, bcb.duplicates) == (2, 0, 0)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert [c["source"] for c in manifest["seed"]] == ["mbpp+:train", "bigcodebench:train"]

    records = {r.provenance.task_id: r for r in Library.open(out_dir).records}
    assert records["BigCodeBench/0"].code.startswith("import numpy as np\n\ndef task_func(x):")
    assert records["BigCodeBench/1"].code.startswith("import os\n\ndef task_func(x):")
    assert records["BigCodeBench/0"].description == "Add one to x (task 0)."
    for task_id in ("BigCodeBench/0", "BigCodeBench/1"):
        namespace: dict[str, object] = {}
        exec(records[task_id].code, namespace)  # fixture code, alone in a fresh namespace
        assert namespace["task_func"](1) == 2
    assert "seeded from bigcodebench:train" in invoke(runner, "library", "stats", str(out_dir))
