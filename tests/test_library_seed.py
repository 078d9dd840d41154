"""Seeding a library from training tasks: verification, descriptions, provenance and the train-only guard."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from amr_dspy.errors import ConfigError
from amr_dspy.library import FunctionModule, HashingEmbedder, Library, check_train_only, seed_from_tasks


def task(task_id: str, solution: str, *, split: str = "train", source: str = "mbpp+", entry_point: str = "",
         instruction: str = "", n_tests: int = 2) -> SimpleNamespace:
    return SimpleNamespace(task_id=task_id, canonical_solution=solution, split=split, source=source,
                           entry_point=entry_point, instruction=instruction, tests=[object()] * n_tests,
                           dataset="mbpp")


ADD = task(
    "Mbpp/601",
    "import math\n\ndef helper(x):\n    return math.floor(x)\n\n"
    "def add_floors(a, b):\n    return helper(a) + helper(b)\n",
    entry_point="add_floors",
    instruction='"""\nWrite a function to add the floors of two numbers.\nassert add_floors(1.5, 2.5) == 3\n"""\n',
    n_tests=5,
)
DOC = task("Mbpp/602", 'def double(x):\n    """Double a number."""\n    return 2 * x\n', entry_point="double")
BROKEN = task("Mbpp/603", "def wrong(x):\n    return x - 1\n", entry_point="wrong")
NO_FUNCTION = task("Mbpp/604", "x = 1\n")
COPY = task("Mbpp/605", "def double(x):\n    # same code as Mbpp/602, other comments\n    return 2*x\n",
            entry_point="double")


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library.create(tmp_path / "lib", HashingEmbedder(64))


def test_seed_adds_modules_of_verified_tasks_with_provenance(library: Library) -> None:
    verified: list[str] = []

    def verify(t: SimpleNamespace, solution: str) -> bool:
        verified.append(t.task_id)
        assert solution == t.canonical_solution
        return t.task_id != "Mbpp/603"

    described: list[str] = []

    def describe(module: FunctionModule) -> str:
        described.append(module.name)
        return f"Teacher description of {module.name}."

    report = seed_from_tasks([ADD, DOC, BROKEN, NO_FUNCTION, COPY], verify, describe, library, teacher="tiny")
    assert verified == ["Mbpp/601", "Mbpp/602", "Mbpp/603", "Mbpp/605"]  # no verification without a function
    assert report.tasks == 5 and report.verified == 3
    assert report.failed_task_ids == ["Mbpp/603"] and report.no_modules_task_ids == ["Mbpp/604"]
    assert report.modules_seen == 4 and report.duplicates == 1 and len(report.added_ids) == 3
    by_name = {r.name: r for r in library.records}
    assert sorted(by_name) == ["add_floors", "double", "helper"]

    assert by_name["add_floors"].description == "Write a function to add the floors of two numbers."
    assert by_name["double"].description == "Double a number."
    assert by_name["helper"].description == "Teacher description of helper."
    assert described == ["helper"]  # docstrings and the task statement come first

    add = by_name["add_floors"]
    assert add.provenance.source == "mbpp+:train" and add.provenance.task_id == "Mbpp/601"
    assert add.provenance.teacher == "tiny"
    assert add.verification.method == "task_tests" and add.verification.passed and add.verification.n_tests == 5
    assert add.code.startswith("import math\n\ndef helper(x):")  # runs alone: helper and import included
    namespace: dict[str, object] = {}
    exec(add.code, namespace)  # noqa: S102 - fixture code
    assert namespace["add_floors"](1.5, 2.5) == 3
    assert library.search("add the floors of two numbers")[0][0].record.name == "add_floors"


def test_without_a_describer_descriptions_come_from_the_signature(library: Library) -> None:
    seed_from_tasks([ADD], lambda t, s: True, None, library)
    helper = next(r for r in library.records if r.name == "helper")
    assert helper.description == "Helper (takes x)."


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (task("Mbpp/520", "def f():\n    return 1\n", split="dev"), "split 'dev'"),
        (task("Mbpp/20", "def f():\n    return 1\n", split="test"), "split 'test'"),
        (task("HumanEval/0", "def f():\n    return 1\n", split="train", source="humaneval+"), "humaneval+"),
        (task("x/1", "def f():\n    return 1\n", split=None, source="file.jsonl"), "split None"),
    ],
)
def test_only_training_tasks_may_seed(library: Library, bad: SimpleNamespace, reason: str) -> None:
    calls: list[str] = []

    def verify(t: SimpleNamespace, solution: str) -> bool:
        calls.append(t.task_id)
        return True

    with pytest.raises(ConfigError, match=rf"refusing to seed the library from task '{bad.task_id}' \(.*{reason}"):
        seed_from_tasks([DOC, bad], verify, None, library)
    assert calls == [] and len(library) == 0  # the guard runs before anything is verified or added
    with pytest.raises(ConfigError):
        check_train_only([bad])
    check_train_only([DOC, ADD])
