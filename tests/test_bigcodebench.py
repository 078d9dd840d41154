"""BigCodeBench: the loader (splits, subsets, prompts), checking unittest modules with skipped and excluded tasks
out of pass@1, ``amr-dspy eval --canonical`` / ``--samples`` end to end, and the leakage guards."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amr_dspy import bigcodebench
from amr_dspy.bigcodebench import (
    bigcodebench_split,
    bigcodebench_subset,
    exclusions,
    imported_modules,
)
from amr_dspy.errors import ConfigError, DataError
from amr_dspy.evaluation import EvalResults, bigcodebench_limits, evaluate_samples, execution_limits
from amr_dspy.framing import completion_target, frame_instruction
from amr_dspy.leakage import check_provenance, check_tasks
from amr_dspy.library import Provenance
from amr_dspy.sandbox import Sandbox
from amr_dspy.tasks import BENCHMARK_SPECS, Task, benchmark_name, hidden_test_set, load_tasks
from amr_dspy.testcases import UnitTestModule
from optimize.compile import check_split_specs, check_splits
from tests.bigcodebench_helpers import FAKE_LIB, PASSING_TEST


def row(n: int, *, libs: list[str], body: str = "    return x + 1\n", imports: str = "",
        test: str = PASSING_TEST) -> dict[str, Any]:  # fmt: skip
    code_prompt = f"{imports}def task_func(x):\n"
    return {
        "task_id": f"BigCodeBench/{n}",
        "complete_prompt": f'{code_prompt}    """Add one to x (task {n}).\n\n    >>> task_func(1)\n    2\n    """\n',
        "instruct_prompt": f"Add one to x (task {n}).\nYou should write self-contained code starting with:\n"
                           f"```\n{code_prompt}```",  # fmt: skip
        "code_prompt": code_prompt,
        "canonical_solution": body,
        "test": test,
        "entry_point": "task_func",
        "libs": repr(libs),
        "doc_struct": "{}",
    }


ROWS = [
    row(0, libs=["math"]),  # train, stdlib
    row(4, libs=["numpy", "math"], imports="import numpy as np\n", body="    return int(np.int64(x) + 1)\n"),
    row(14, libs=[FAKE_LIB], imports=f"import {FAKE_LIB}\n"),  # dev, full: the solution needs a missing library
    row(24, libs=["math"], test=f"import {FAKE_LIB}.testing\n" + PASSING_TEST),  # dev: the tests need it
    row(34, libs=["math"], body="    return x + 2\n"),  # dev, stdlib: a canonical solution that fails here
    row(5, libs=["math"]),  # test, stdlib
    row(15, libs=["pandas"], imports="import pandas as pd\n", body="    return int(pd.Series([x]).iloc[0]) + 1\n"),
]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bcb") / "BigCodeBench-mini.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in ROWS)
    return path


@pytest.fixture(autouse=True)
def fake_release(release: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BIGCODEBENCH_OVERRIDE_PATH", str(release))
    return release


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(bigcodebench_limits(), workers=1) as box:
        yield box


def ids(spec: str) -> list[str]:
    return [t.task_id.split("/")[1] for t in load_tasks(spec)]


# --------------------------------------------------------------------------------------------
# loading


def test_a_task_carries_prompt_solution_and_unittest_module() -> None:
    (task,) = [t for t in load_tasks("bigcodebench:dev") if t.task_id == "BigCodeBench/24"]
    source = ROWS[3]
    assert task.instruction == source["instruct_prompt"] and task.entry_point == "task_func"
    assert task.canonical_solution == source["code_prompt"] + source["canonical_solution"]
    assert (task.dataset, task.source, task.split, task.excluded) == ("bigcodebench", "bigcodebench", "dev", None)
    (test,) = task.tests
    assert isinstance(test, UnitTestModule) and test.source == source["test"] and test.test_class == "TestCases"
    assert test.libraries == sorted(["math", FAKE_LIB, "unittest"])  # the task's libs and the tests' imports
    assert test.time_limit_s == bigcodebench.TIME_LIMIT_S and not task.plus_tests
    assert test.prelude == source["code_prompt"] + "\n    pass\n"  # the reference harness's calibration


def test_the_complete_form_asks_with_the_stub_and_is_framed() -> None:
    prose = {t.task_id: t for t in load_tasks("bigcodebench:dev")}
    stubs = load_tasks("bigcodebench-complete:dev")
    assert [t.task_id for t in stubs] == list(prose)
    for stub in stubs:
        twin = prose[stub.task_id]
        assert stub.instruction == ROWS[[r["task_id"] for r in ROWS].index(stub.task_id)]["complete_prompt"]
        assert (stub.tests, stub.canonical_solution, stub.split) == (twin.tests, twin.canonical_solution, twin.split)
        assert stub.source == "bigcodebench-complete"
        assert completion_target(stub.instruction, "task_func") == "task_func"
        assert completion_target(twin.instruction, "task_func") is None
        framed = frame_instruction(stub.instruction, "task_func")
        assert framed.startswith("Complete the following Python function `task_func`.")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bigcodebench", ["0", "4", "14", "24", "34", "5", "15"]),
        ("bigcodebench:train", ["0"]),
        ("bigcodebench:dev", ["4", "14", "24", "34"]),
        ("bigcodebench:dev@full", ["4", "14", "24", "34"]),
        ("bigcodebench:dev@core", ["4", "24", "34"]),
        ("bigcodebench:dev@stdlib", ["24", "34"]),
        ("bigcodebench:test@core", ["5", "15"]),
        ("bigcodebench-complete@stdlib", ["0", "24", "34", "5"]),
    ],
)
def test_splits_and_subsets(spec: str, expected: list[str]) -> None:
    assert ids(spec) == expected
    assert spec in BENCHMARK_SPECS


def test_split_rule_and_subset_rule() -> None:
    assert [bigcodebench_split(f"BigCodeBench/{n}") for n in (0, 3, 4, 5, 9, 10, 13, 14, 15, 1139)] == [
        "train", "train", "dev", "test", "test", "train", "train", "dev", "test", "test"]  # fmt: skip
    assert bigcodebench_subset(["random", "itertools"]) == "stdlib"
    assert bigcodebench_subset(["os", "sklearn", "mpl_toolkits", "pandas"]) == "core"
    assert bigcodebench_subset(["numpy", "seaborn"]) == "full"
    assert imported_modules("import a.b, c\nfrom d.e import f\nfrom . import g\ndef t():\n    import h\n") == [
        "a", "c", "d", "h"]  # fmt: skip


def test_spec_helpers() -> None:
    assert hidden_test_set("bigcodebench-complete:dev@core") == "bigcodebench:dev@core"
    assert hidden_test_set("bigcodebench-complete@core") == "bigcodebench@core"
    assert hidden_test_set("mbpp+stub:dev") == "mbpp+:dev"
    assert [benchmark_name(s) for s in ("bigcodebench:dev@core", "bigcodebench-complete", "mbpp+:test", "x.jsonl")] == [
        "bigcodebench", "bigcodebench-complete", "mbpp+", None]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bigcodebench:val", "unknown split in benchmark 'bigcodebench:val': expected one of train, dev, test"),
        ("bigcodebench:dev@big", "unknown subset in benchmark 'bigcodebench:dev@big': expected one of stdlib, core"),
        ("bigcodebench-instruct", "expected mbpp+[:train|dev|test], .*bigcodebench\\[:train|dev|test\\]"),
    ],
)
def test_unknown_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tasks(spec)


def test_missing_or_malformed_release_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIGCODEBENCH_OVERRIDE_PATH", str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match=r"BIGCODEBENCH_OVERRIDE_PATH=.*nope.jsonl: no such file"):
        load_tasks("bigcodebench")
    bad = tmp_path / "bad.jsonl"  # a plain (not gzipped) JSONL copy works too, and names its bad line
    bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"task_id": "BigCodeBench/1"}) + "\n")
    monkeypatch.setenv("BIGCODEBENCH_OVERRIDE_PATH", str(bad))
    with pytest.raises(DataError, match=f"{re.escape(str(bad))}:2: not a BigCodeBench row"):
        load_tasks("bigcodebench")
    bad.write_text(json.dumps(ROWS[0]) + "\n")
    assert [t.task_id for t in load_tasks("bigcodebench")] == ["BigCodeBench/0"]


REAL_COUNTS = {  # (split, subset) -> tasks in the 1,140-task release
    ("train", "stdlib"): 133, ("train", "core"): 367, ("train", "full"): 456,
    ("dev", "stdlib"): 33, ("dev", "core"): 86, ("dev", "full"): 114,
    ("test", "stdlib"): 161, ("test", "core"): 447, ("test", "full"): 570,
}  # fmt: skip


def test_counts_on_the_real_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIGCODEBENCH_OVERRIDE_PATH")
    try:
        everything = load_tasks("bigcodebench")
    except DataError as exc:
        pytest.skip(f"no BigCodeBench copy here: {exc}")
    assert len(everything) == 1140 and len({t.task_id for t in everything}) == 1140
    counts = {(s, sub): len(load_tasks(f"bigcodebench:{s}@{sub}")) for s, sub in REAL_COUNTS}
    assert counts == REAL_COUNTS
    assert sum(counts[(s, "full")] for s in ("train", "dev", "test")) == 1140
    assert {t.task_id for t in everything if t.excluded} == set(exclusions())  # every exclusion is a real task


def test_the_committed_exclusion_list_is_well_formed() -> None:
    table = exclusions()
    assert table, "the measured exclusions are committed"
    for task_id, reason in table.items():
        assert re.fullmatch(r"BigCodeBench/\d+", task_id) and bigcodebench_split(task_id) in ("dev", "test")
        assert len(reason) > 20, task_id
    assert not {r["task_id"] for r in ROWS} & set(table)  # this file's fake tasks are not on it


# --------------------------------------------------------------------------------------------
# checking solutions: skipped and excluded tasks are left out of pass@1


def test_canonical_solutions_with_skipped_tasks(sandbox: Sandbox) -> None:
    tasks = load_tasks("bigcodebench:dev")
    results = evaluate_samples(tasks, {t.task_id: t.canonical_solution for t in tasks}, sandbox, benchmark="b")
    by_id = {t.task_id: t for t in results.tasks}
    assert by_id["BigCodeBench/4"].plus_passed and by_id["BigCodeBench/4"].scored
    for skipped in ("BigCodeBench/14", "BigCodeBench/24"):
        assert by_id[skipped].missing_modules == [FAKE_LIB] and by_id[skipped].failure is None
        assert not by_id[skipped].scored and not by_id[skipped].base_passed
    assert by_id["BigCodeBench/34"].failure == "wrong_answer" and by_id["BigCodeBench/34"].failed_test == "test_one"
    assert results.skipped == {"BigCodeBench/14": [FAKE_LIB], "BigCodeBench/24": [FAKE_LIB]}
    assert (results.n_tasks, results.n_scored, results.pass_at_1.base, results.pass_at_1.plus) == (4, 2, 0.5, 0.5)
    assert results.failures == {"wrong_answer": 1}


def test_excluded_tasks_are_not_run_and_are_reported(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bigcodebench, "exclusions", lambda: {"BigCodeBench/34": "changed library behaviour (test)"})
    tasks = load_tasks("bigcodebench:dev@core")
    assert [t.excluded for t in tasks] == [None, None, "changed library behaviour (test)"]
    hang = "import time\ndef task_func(x):\n    time.sleep(600)\n"  # would time out, if it ran
    solutions = {t.task_id: t.canonical_solution for t in tasks} | {"BigCodeBench/34": hang}
    results = evaluate_samples(tasks, solutions, sandbox, benchmark="b")
    excluded = results.tasks[2]
    assert (excluded.excluded, excluded.failure, excluded.exec_s) == ("changed library behaviour (test)", None, 0.0)
    assert results.excluded == {"BigCodeBench/34": "changed library behaviour (test)"}
    assert (results.n_scored, results.pass_at_1.plus) == (1, 1.0)


def test_a_wrong_solution_fails_with_the_failing_method(sandbox: Sandbox) -> None:
    (task,) = [t for t in load_tasks("bigcodebench:dev@core") if t.task_id == "BigCodeBench/4"]
    wrong = "def task_func(x):\n    return 2 if x == 1 else 0\n"
    (result,) = evaluate_samples([task], {task.task_id: wrong}, sandbox, benchmark="b").tasks
    assert (result.failure, result.failed_test, result.scored) == ("wrong_answer", "test_two", True)
    assert result.failure_message == "AssertionError: 0 != 3 (test line 6: self.assertEqual(task_func(2), 3))"


def test_an_answer_without_the_prompts_imports_is_calibrated_as_the_reference_harness_does(sandbox: Sandbox) -> None:
    (task,) = [t for t in load_tasks("bigcodebench:dev@core") if t.task_id == "BigCodeBench/4"]
    no_import = "def task_func(x):\n    return int(np.int64(x) + 1)\n"  # np comes from the code prompt
    (result,) = evaluate_samples([task], {task.task_id: no_import}, sandbox, benchmark="b").tasks
    assert (result.failure, result.plus_passed) == (None, True)
    uncalibrated = task.model_copy(update={"tests": [task.tests[0].model_copy(update={"prelude": ""})]})
    (result,) = evaluate_samples([uncalibrated], {task.task_id: no_import}, sandbox, benchmark="b").tasks
    assert result.failure == "error" and "NameError: name 'np' is not defined" in (result.failure_message or "")


def test_results_written_before_skips_existed_still_load() -> None:
    old = {"benchmark": "mbpp+:dev", "n_tasks": 1, "pass_at_1": {"base": 1.0, "plus": 1.0}, "failures": {},
           "wall_s": 1.0, "tasks": [{"task_id": "Mbpp/511", "base_passed": True, "plus_passed": True}]}  # fmt: skip
    results = EvalResults.model_validate(old)
    assert results.n_scored is None and results.skipped == {} and results.tasks[0].scored


def test_the_execution_metric_scores_methods(sandbox: Sandbox) -> None:
    import dspy

    from amr_dspy.metric import ExecutionMetric, task_to_example

    (task,) = [t for t in load_tasks("bigcodebench:dev@core") if t.task_id == "BigCodeBench/4"]
    with ExecutionMetric(sandbox) as metric:
        example = task_to_example(task)
        assert metric(example, dspy.Prediction(code=task.canonical_solution)) == 1.0
        assert metric(example, dspy.Prediction(code="def task_func(x):\n    return 2\n")) == 0.5  # one of two methods
        assert metric(example, dspy.Prediction(code="def task_func(x):\n    return 2\n"), trace=[]) is False


def test_bigcodebench_tasks_get_their_own_limits() -> None:
    limits = execution_limits(load_tasks("bigcodebench:dev@core"))
    assert limits == bigcodebench_limits() and limits.max_processes > 0 and "pandas" in limits.preload
    assert execution_limits([Task(task_id="x", instruction="y", source="z")]).max_processes == 0


# --------------------------------------------------------------------------------------------
# the CLI, end to end


def amr(*args: str, release: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "BIGCODEBENCH_OVERRIDE_PATH": str(release)}
    return subprocess.run([sys.executable, "-m", "amr_dspy", *args], capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip


def test_eval_canonical_then_samples_through_the_cli(tmp_path: Path, fake_release: Path) -> None:
    first = amr("eval", "--canonical", "-b", "bigcodebench:dev", "--workers", "1", "--out", str(tmp_path / "c"),
                release=fake_release)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "left out of pass@1: 2 skipped, not installed: amr_dspy_fake_bcb_lib (2)" in first.stdout
    samples = [json.loads(line) for line in (tmp_path / "c" / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == [f"BigCodeBench/{n}" for n in (4, 14, 24, 34)]
    assert samples[0]["solution"] == ROWS[1]["code_prompt"] + ROWS[1]["canonical_solution"]
    again = amr("eval", "--samples", str(tmp_path / "c" / "samples.jsonl"), "-b", "bigcodebench:dev", "--workers", "1",
                "--out", str(tmp_path / "s"), release=fake_release)  # fmt: skip
    assert again.returncode == 0, again.stderr
    for out in ("c", "s"):
        results = json.loads((tmp_path / out / "results.json").read_text())
        assert (results["n_tasks"], results["n_scored"], results["pass_at_1"]["plus"]) == (4, 2, 0.5)
        assert sorted(results["skipped"]) == ["BigCodeBench/14", "BigCodeBench/24"]
    refused = amr("eval", "--canonical", "--samples", "x.jsonl", "-b", "bigcodebench:dev", release=fake_release)
    assert refused.returncode == 1 and "give exactly one of --variant NAME" in refused.stderr


# --------------------------------------------------------------------------------------------
# leakage guards


@pytest.mark.parametrize(
    ("train", "dev", "message"),
    [
        ("bigcodebench:test@core", "bigcodebench:dev@core", "--train bigcodebench:test@core: includes the held-out "
         "BigCodeBench test split; use --train bigcodebench:train@core --dev bigcodebench:dev@core"),
        ("bigcodebench", "bigcodebench:dev", "--train bigcodebench: includes the held-out BigCodeBench test split"),
        ("bigcodebench-complete@core", "bigcodebench:dev", "includes the held-out BigCodeBench test split"),
        ("bigcodebench:train", "bigcodebench-complete:test", "--dev bigcodebench-complete:test: includes the held-out"),
        ("bigcodebench:dev@core", "x.jsonl", "--train bigcodebench:dev@core: demos must come from the train split; "
         "use --train bigcodebench:train@core"),
    ],
)  # fmt: skip
def test_compile_refuses_bigcodebench_test_by_spec(train: str, dev: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_split_specs(train, dev)


def test_compile_library_and_growth_refuse_bigcodebench_held_out_tasks() -> None:
    check_split_specs("bigcodebench:train@core", "bigcodebench:dev@core")
    train, dev, test = (load_tasks(f"bigcodebench:{split}") for split in ("train", "dev", "test"))
    check_splits(train, dev)
    with pytest.raises(ConfigError, match="--dev: task BigCodeBench/5 is from a held-out test split"):
        check_splits(train, test)
    with pytest.raises(ConfigError, match="--train: task BigCodeBench/4 is from the dev split"):
        check_splits(dev, load_tasks("bigcodebench-complete:train"))
    check_tasks(train, "seed")
    for held_out in (dev, test):
        with pytest.raises(ConfigError, match="refusing to seed the library from task 'BigCodeBench/"):
            check_tasks(held_out, "seed")
    check_provenance(Provenance(source="bigcodebench:train", task_id="BigCodeBench/0"))
    check_provenance(Provenance(source="synthesize:bigcodebench:train@core"))
    for source, task_id in [("synthesize:bigcodebench:test@core", None), ("synthesize:bigcodebench@core", None),
                            ("bigcodebench-complete:dev", None), ("synthesize", "BigCodeBench/5")]:  # fmt: skip
        with pytest.raises(ConfigError, match="leakage"):
            check_provenance(Provenance(source=source, task_id=task_id))


def test_synthesis_reads_bigcodebench_specs_and_decontaminates_against_held_out_tasks() -> None:
    from amr_dspy.decontam import load_benchmark_items
    from amr_dspy.synthesis import read_inputs

    batch = read_inputs("bigcodebench:dev@core")
    assert [item.task_id for item in batch.items] == ["BigCodeBench/4", "BigCodeBench/24", "BigCodeBench/34"]
    assert [item.entry_point for item in batch.items] == ["task_func"] * 3
    items = load_benchmark_items(["bigcodebench"])
    assert [i.id for i in items] == ["BigCodeBench/4", "BigCodeBench/14", "BigCodeBench/24", "BigCodeBench/34",
                                     "BigCodeBench/5", "BigCodeBench/15"]  # fmt: skip
