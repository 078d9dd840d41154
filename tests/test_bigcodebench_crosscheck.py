"""``eval --crosscheck`` on BigCodeBench: the reference harness (``bigcodebench.eval.untrusted_check``) on the same
samples, its verdicts next to the project's, skipped and excluded tasks apart, and the error without the package."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from amr_dspy import bigcodebench, bigcodebench_crosscheck
from amr_dspy.bigcodebench_crosscheck import (
    ReferenceLimits,
    ReferenceVerdict,
    compare_verdicts,
    crosscheck_lines,
    require_reference,
)
from amr_dspy.errors import ConfigError
from amr_dspy.evaluation import EvalResults, TaskResult, write_samples
from tests.bigcodebench_helpers import FAKE_LIB
from tests.bigcodebench_helpers import PASSING_TEST as TEST

CANONICAL = "def task_func(x):\n    return x + 1\n"


def row(n: int, *, test: str = TEST) -> dict[str, Any]:
    return {
        "task_id": f"BigCodeBench/{n}",
        "complete_prompt": f'def task_func(x):\n    """Add one to x (task {n})."""\n',
        "instruct_prompt": f"Add one to x (task {n}).",
        "code_prompt": "def task_func(x):\n",
        "canonical_solution": "    return x + 1\n",
        "test": test,
        "entry_point": "task_func",
        "libs": "['math']",
    }


ROWS = [row(4), row(14), row(24, test=f"import {FAKE_LIB}\n" + TEST), row(34), row(44), row(54)]
SAMPLES = {
    "BigCodeBench/4": CANONICAL,  # passes in both
    "BigCodeBench/14": "def task_func(x):\n    return x + 2\n",  # broken: fails in both
    "BigCodeBench/24": CANONICAL,  # its tests import a library that is not installed: skipped here
    "BigCodeBench/34": "def task_func(x):\n    return 0\n",  # excluded: the reference's failure is not compared
    # 3 GiB of address space: within the reference's 30 GiB, over the project's 2 GiB
    "BigCodeBench/44": "import mmap\ndef task_func(x):\n    with mmap.mmap(-1, 3 * 2**30):  # reserved, never touched\n"
    "        return x + 1\n",
    # the reference runs with nothing but a loopback, as the sandbox does
    "BigCodeBench/54": "import socket\ndef task_func(x):\n    assert [n for _, n in socket.if_nameindex()] == ['lo']\n"
    "    return x + 1\n",
}
EXCLUDED = {"BigCodeBench/34": "a made-up reason to leave this task out of scoring"}


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "BigCodeBench-mini.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in ROWS)
    monkeypatch.setenv("BIGCODEBENCH_OVERRIDE_PATH", str(path))
    monkeypatch.setattr(bigcodebench, "exclusions", lambda: EXCLUDED)
    return path


def eval_cli(*args: str) -> Any:
    import amr_dspy.cli.eval  # noqa: F401  (registers the command)
    from amr_dspy.cli import app

    return CliRunner().invoke(app, ["eval", *args], env={"COLUMNS": "200"})


def verdict(task_id: str, status: str, **failed: str) -> ReferenceVerdict:
    return ReferenceVerdict(task_id=task_id, status=status, failed_tests=failed)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# without the package


def test_without_the_package_the_error_names_the_setup_target(monkeypatch: pytest.MonkeyPatch, release: Path,
                                                              tmp_path: Path) -> None:  # fmt: skip
    real = bigcodebench_crosscheck.find_spec
    monkeypatch.setattr(bigcodebench_crosscheck, "find_spec",
                        lambda name: None if name == "bigcodebench" else real(name))
    with pytest.raises(ConfigError, match=r"\(bigcodebench not installed\): run `make setup-bigcodebench`$"):
        require_reference()

    result = eval_cli("--canonical", "-b", "bigcodebench:dev", "--crosscheck", "--out", str(tmp_path / "run"))
    assert isinstance(result.exception, ConfigError) and "make setup-bigcodebench" in str(result.exception)
    assert "\n" not in str(result.exception)
    assert not (tmp_path / "run").exists()  # refused before any task ran


def test_left_out_tasks_are_listed_apart_and_only_scored_ones_can_disagree() -> None:
    tasks = [
        TaskResult(task_id="BigCodeBench/4", base_passed=True, plus_passed=True),
        TaskResult(task_id="BigCodeBench/14", base_passed=False, plus_passed=False, failure="wrong_answer",
                   failed_test="test_one", failure_message="AssertionError: 3 != 2"),  # fmt: skip
        TaskResult(task_id="BigCodeBench/24", base_passed=False, plus_passed=False, missing_modules=[FAKE_LIB]),
        TaskResult(task_id="BigCodeBench/34", base_passed=False, plus_passed=False, excluded="network"),
    ]
    results = EvalResults.collect("bigcodebench:dev", tasks, 1.0)
    verdicts = {
        "BigCodeBench/4": verdict("BigCodeBench/4", "pass"),
        "BigCodeBench/14": verdict("BigCodeBench/14", "pass"),  # the reference says otherwise
        "BigCodeBench/24": verdict("BigCodeBench/24", "fail", ALL=f"No module named '{FAKE_LIB}'"),
        "BigCodeBench/34": verdict("BigCodeBench/34", "pass"),  # passes there, but it is not scored here
    }
    record = compare_verdicts(results, verdicts, samples="s.jsonl", reference_results="r.jsonl",
                              limits=ReferenceLimits())  # fmt: skip
    assert (record.n_tasks, record.n_scored, record.project_passed, record.reference_passed) == (4, 2, 1, 2)
    assert record.reference_passed_all == 3 and record.reference.plus == 1.0 and record.project.plus == 0.5
    assert not record.agree and [d.task_id for d in record.disagreements] == ["BigCodeBench/14"]
    assert record.disagreements[0].project_failure == "wrong_answer: test_one: AssertionError: 3 != 2"
    assert [(x.task_id, x.reason) for x in record.skipped] == [("BigCodeBench/24", f"not installed: {FAKE_LIB}")]
    assert [(x.task_id, x.reason) for x in record.excluded] == [("BigCodeBench/34", "network")]
    summary = record.summary(Path("crosscheck.json"))
    assert (summary.agree, summary.disagreements, summary.evalplus.plus) == (False, ["BigCodeBench/14"], 1.0)
    lines = crosscheck_lines(record)
    assert lines[0].endswith("BigCodeBench/14:[/] project fail (wrong_answer: test_one: AssertionError: 3 != 2), "
                             "reference pass")
    assert lines[1:] == ["not compared: 1 skipped here, of which the reference passes 0",
                         "not compared: 1 excluded here, of which the reference passes 1"]  # fmt: skip


def test_the_reference_limits_are_bigcodebench_evaluates_defaults() -> None:
    limits = ReferenceLimits()
    assert (limits.max_as_limit_mb, limits.max_data_limit_mb, limits.max_stack_limit_mb) == (30720, 30720, 10)
    assert limits.calibrated and limits.timeout_s == 241.0


# --------------------------------------------------------------------------------------------
# with the package: both harnesses on the same samples


def test_eval_samples_crosscheck_runs_both_harnesses(release: Path, tmp_path: Path) -> None:
    pytest.importorskip("bigcodebench.eval")
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    write_samples(samples, list(SAMPLES), SAMPLES)

    result = eval_cli("--samples", str(samples), "-b", "bigcodebench:dev", "--crosscheck", "--workers", "2",
                      "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "bigcodebench" / "crosscheck.json").read_text())
    raw = [json.loads(line) for line in (out / "bigcodebench" / "reference_results.jsonl").read_text().splitlines()]
    theirs = {r["task_id"]: r["status"] for r in raw}  # the harness's own output, read independently
    assert theirs == {"BigCodeBench/4": "pass", "BigCodeBench/14": "fail", "BigCodeBench/24": "fail",
                      "BigCodeBench/34": "fail", "BigCodeBench/44": "pass", "BigCodeBench/54": "pass"}  # fmt: skip
    assert (record["n_tasks"], record["n_scored"], record["project_passed"], record["reference_passed"]) == (6, 4, 2, 3)

    (disagreement,) = record["disagreements"]
    assert disagreement["task_id"] == "BigCodeBench/44" and disagreement["project_passed"] is False
    assert "Cannot allocate memory" in disagreement["project_failure"]
    assert disagreement["reference"]["status"] == "pass"
    (skipped,) = record["skipped"]
    assert skipped["task_id"] == "BigCodeBench/24" and skipped["reason"] == f"not installed: {FAKE_LIB}"
    assert FAKE_LIB in skipped["reference"]["failed_tests"]["ALL"]  # the reference calls it a failure
    (excluded,) = record["excluded"]
    assert (excluded["task_id"], excluded["reference"]["status"]) == ("BigCodeBench/34", "fail")

    results = json.loads((out / "results.json").read_text())
    assert results["crosscheck"]["disagreements"] == ["BigCodeBench/44"] and results["crosscheck"]["agree"] is False
    assert results["crosscheck"]["evalplus"]["plus"] == pytest.approx(3 / 4)  # the reference's side
    assert "bigcodebench untrusted_check: 3/4 (75.0%), project 2/4 — differs on 1 task(s)" in result.output
    assert "bigcodebench disagrees on BigCodeBench/44: project fail" in result.output
    assert "evalplus" not in result.output
