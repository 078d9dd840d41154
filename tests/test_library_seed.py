"""Seeding a library from training tasks: verification, descriptions, provenance and the train-only guard."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from amr_dspy.errors import ConfigError
from amr_dspy.leakage import check_spec, check_tasks
from amr_dspy.library import FunctionModule, HashingEmbedder, Library, seed_from_tasks


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
    exec(add.code, namespace)  # fixture code
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
        check_tasks([bad], "seed")
    check_tasks([DOC, ADD], "seed")


# --------------------------------------------------------------------------------------------
# several sources, BigCodeBench-shaped tasks and modules that must run on their own

BCB_TEST = "import unittest\nimport numpy as np\nimport os, json\nclass TestCases(unittest.TestCase):\n    pass\n"


def bcb_task(n: int, solution: str, *, excluded: str | None = None) -> SimpleNamespace:
    """A BigCodeBench-shaped task: code prompt + body as its solution, one unittest module (with its imports)."""
    return SimpleNamespace(
        task_id=f"BigCodeBench/{n}", canonical_solution=solution, split="train", source="bigcodebench",
        entry_point="task_func", dataset="bigcodebench", excluded=excluded,
        instruction=f"Scale the values of x by a factor (task {n}).\nThe function should output with:\n"
                    "    ndarray: the scaled values.\nYou should write self-contained code starting with:\n"
                    "```\nimport numpy as np\ndef task_func(x, factor=2):\n```",
        tests=[SimpleNamespace(kind="unittest", source=BCB_TEST)],
    )  # fmt: skip


# The code prompt imports numpy and math and defines a constant; the body uses numpy and the constant only.
SCALE = bcb_task(0, "import math\nimport numpy as np\nSHIFT = 1\ndef task_func(x, factor=2):\n"
                    "    return np.asarray(x) * factor + SHIFT\n")  # fmt: skip
# Uses ``os`` that only the test module imports (as some BigCodeBench solutions do).
LEANS_ON_TESTS = bcb_task(1, "def task_func(path):\n    return os.path.basename(path)\n")
UNDEFINED = bcb_task(2, "def task_func(x):\n    return undefined_helper(x)\n")
SKIPPED = bcb_task(3, "import fancylib\ndef task_func(x):\n    return fancylib.f(x)\n")
EXCLUDED = bcb_task(10, "def task_func():\n    return 1\n", excluded="needs the network")
SAME_AS_MBPP = bcb_task(11, "def double(x):\n    return 2 * x\n")


def test_seeding_two_sources_counts_each_and_the_manifest_keeps_them(library: Library) -> None:
    asked: list[tuple[str, str]] = []

    def verify(t: SimpleNamespace, code: str) -> bool | str:
        asked.append((t.task_id, code))
        return "skipped" if t.task_id == "BigCodeBench/3" else t.task_id != "Mbpp/603"

    mbpp = seed_from_tasks([ADD, DOC, BROKEN, NO_FUNCTION], verify, None, library)
    bcb = seed_from_tasks([SCALE, LEANS_ON_TESTS, UNDEFINED, SKIPPED, EXCLUDED, SAME_AS_MBPP], verify, None, library)
    assert "BigCodeBench/10" not in {task_id for task_id, _ in asked}  # an excluded task is not run
    library.record_seed([mbpp.counts("mbpp+:train"), bcb.counts("bigcodebench:train@core")])
    library.save()

    first, second = Library.open(library.directory).seed
    assert (first.source, first.tasks, first.verified, first.failed, first.skipped, first.excluded) == (
        "mbpp+:train", 4, 2, 1, 0, 0)  # fmt: skip
    assert (first.without_function, first.modules_added, first.duplicates) == (1, 3, 0)
    assert first.failed_task_ids == ["Mbpp/603"]
    assert (second.source, second.tasks, second.verified, second.failed, second.skipped, second.excluded) == (
        "bigcodebench:train@core", 6, 4, 0, 1, 1)  # fmt: skip
    assert second.skipped_task_ids == ["BigCodeBench/3"] and second.excluded_task_ids == ["BigCodeBench/10"]
    assert second.not_standalone_modules == ["BigCodeBench/2 task_func"]  # reads a name nothing binds
    assert (second.modules_seen, second.not_standalone, second.modules_added, second.duplicates) == (4, 1, 2, 1)
    assert "bigcodebench:train@core" in Library.open(library.directory).stats().model_dump_json()


def test_a_bigcodebench_module_carries_its_imports_and_runs_standalone(library: Library) -> None:
    asked: list[str] = []

    def verify(t: SimpleNamespace, code: str) -> bool:
        asked.append(code)
        return True

    report = seed_from_tasks([SCALE, LEANS_ON_TESTS], verify, None, library)
    assert len(report.added_ids) == 2 and not report.not_standalone
    scale, basename = sorted(library.records, key=lambda r: r.provenance.task_id or "")
    assert scale.code == "import numpy as np\n\nSHIFT = 1\n\ndef task_func(x, factor=2):\n" \
                         "    return np.asarray(x) * factor + SHIFT\n"  # fmt: skip
    assert basename.code.startswith("import os\n\ndef task_func(path):")  # borrowed from the test module
    # Neither is its task's whole solution, so each ran the task's tests again by itself.
    assert asked == [SCALE.canonical_solution, scale.code, LEANS_ON_TESTS.canonical_solution, basename.code]
    assert scale.description == "Scale the values of x by a factor (task 0)."  # the statement, not the sections
    assert scale.verification.details == "this module's code passed the tests of BigCodeBench/0"
    assert scale.provenance.source == "bigcodebench:train"
    for record, args, expected in ((scale, ([1, 2], 3), [4, 7]), (basename, ("/a/b.txt",), "b.txt")):
        namespace: dict[str, object] = {}
        exec(record.code, namespace)  # fixture code, in a fresh namespace
        result = namespace["task_func"](*args)
        assert (result.tolist() if hasattr(result, "tolist") else result) == expected


def test_an_entry_point_that_fails_its_tests_alone_is_left_out(library: Library) -> None:
    def verify(t: SimpleNamespace, code: str) -> bool:
        return code == t.canonical_solution  # the whole solution passes; the entry point's own code does not

    report = seed_from_tasks([SCALE], verify, None, library)
    assert report.verified == 1 and report.not_standalone == ["BigCodeBench/0 task_func"] and len(library) == 0
    assert report.counts("bigcodebench:train").not_standalone == 1


def test_unresolved_names() -> None:
    from amr_dspy.library import unresolved_names
    from amr_dspy.library.standalone import borrow_imports

    assert unresolved_names("import math\ndef f(x):\n    return math.floor(x) + np.sum(y) + len(x)\n") == ["np", "y"]
    assert unresolved_names("def g():\n    global Z\n    Z = 1\ndef h():\n    return Z + __name__ + str(h)\n") == []
    assert unresolved_names("from os.path import *\ndef f():\n    return join('a')\n") == []
    donor = "import unittest\nimport numpy as np, os\nfrom json import dumps as d, loads\n"
    assert borrow_imports("def f(x):\n    return np.sum(d(x))\n", [donor]) == (
        "import numpy as np\nfrom json import dumps as d\n\ndef f(x):\n    return np.sum(d(x))\n")  # fmt: skip
    assert borrow_imports("def f(x):\n    return x\n", [donor]) == "def f(x):\n    return x\n"


@pytest.mark.parametrize(
    "spec", ["mbpp+:dev", "mbpp+:test", "mbpp+", "mbpp+stub:dev", "humaneval+", "bigcodebench:dev@core",
             "bigcodebench:test", "bigcodebench@core", "bigcodebench-complete:dev"],  # fmt: skip
)
def test_only_training_splits_may_be_named(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"^refusing to seed the library from '{re.escape(spec)}': only a training"):
        check_spec(spec, "seed")


def test_training_splits_and_files_pass_the_spec_check() -> None:
    for spec in ("mbpp+:train", "mbpp+stub:train", "bigcodebench:train@core", "bigcodebench-complete:train",
                 "tasks.jsonl"):  # fmt: skip
        check_spec(spec, "seed")  # a file's tasks are checked one by one (check_tasks)
