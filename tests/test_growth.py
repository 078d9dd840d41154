"""Library growth: verified novel modules are proposed with provenance; benchmark eval splits can never grow it."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest
from dspy.utils import DummyLM

from amr_dspy.errors import ConfigError
from amr_dspy.growth import grow_library
from amr_dspy.leakage import check_provenance
from amr_dspy.library import HashingEmbedder, Library, Provenance
from amr_dspy.sandbox import Sandbox
from amr_dspy.testcases import CallTest

CODE = '''def normalize(xs: list[float]) -> list[float]:
    """Scale xs so that they sum to one."""
    total = total_of(xs)
    return [x / total for x in xs]


def total_of(xs: list[float]) -> float:
    return float(sum(xs))
'''
TRAINING = Provenance(source="code_alpaca_2k", instruction_id="ca-7", teacher="local")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1) as box:
        yield box


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library.create(tmp_path / "lib", HashingEmbedder(64))


def prediction(code: str = CODE) -> dspy.Prediction:
    return dspy.Prediction(code=code, modules=[])


@pytest.mark.parametrize(
    ("source", "task_id"),
    [("mbpp+:test", "Mbpp/12"), ("mbpp+:dev", "Mbpp/520"), ("humaneval+", "HumanEval/3"), ("mbpp+", "Mbpp/3"),
     ("synthesize", "HumanEval/0")],
)  # fmt: skip
def test_leakage_guard_refuses_benchmark_eval_tasks(source: str, task_id: str, library: Library, sandbox) -> None:
    provenance = Provenance(source=source, task_id=task_id)
    with pytest.raises(ConfigError, match="leakage"):
        grow_library(library, prediction(), "x", provenance=provenance, executor=sandbox)
    assert len(library) == 0


def test_train_split_and_plain_instructions_may_grow() -> None:
    check_provenance(Provenance(source="mbpp+:train", task_id="Mbpp/3"))
    check_provenance(TRAINING)


def test_modules_verified_by_task_tests_are_proposed_with_provenance(library: Library, sandbox) -> None:
    tests = [CallTest(name="t0", inputs=[[1.0, 3.0]], expected=[0.25, 0.75])]
    report, records = grow_library(library, prediction(), "Normalize a list.", provenance=TRAINING,
                                   executor=sandbox, task_tests=tests, entry_point="normalize")  # fmt: skip
    assert report.verified and report.method == "task_tests"
    assert sorted(r.name for r in records) == ["normalize", "total_of"]
    normalize = next(r for r in records if r.name == "normalize")
    assert normalize.description == "Scale xs so that they sum to one."
    assert "def total_of" in normalize.code  # a module carries the helpers it needs to run alone
    assert normalize.provenance.instruction_id == "ca-7" and normalize.verification.passed
    assert library.add(records) and len(library) == 2
    again, more = grow_library(library, prediction(), "Normalize a list.", provenance=TRAINING,
                               executor=sandbox, task_tests=tests, entry_point="normalize")  # fmt: skip
    assert more == [] and again.reason == "no novel modules"


def test_a_response_failing_teacher_unit_tests_adds_nothing(library: Library, sandbox) -> None:
    with dspy.context(lm=DummyLM([{"tests": ["assert normalize([1.0, 1.0]) == [0.25, 0.75]"]}])):
        report, records = grow_library(library, prediction(), "Normalize.", provenance=TRAINING, executor=sandbox)
    assert report.method == "unit_tests" and not report.verified and records == []
    assert report.reason == "verification failed: unit_1"


def test_a_response_passing_teacher_unit_tests_is_proposed(library: Library, sandbox) -> None:
    with dspy.context(lm=DummyLM([{"tests": ["assert normalize([1.0, 1.0]) == [0.5, 0.5]", "garbage ("]}])):
        report, records = grow_library(library, prediction(), "Normalize.", provenance=TRAINING, executor=sandbox)
    assert report.verified and report.n_tests == 1 and len(records) == 2
    assert records[0].verification.method == "unit_tests"


def test_code_that_does_not_parse_offers_no_modules(library: Library, sandbox) -> None:
    report, records = grow_library(library, prediction("def broken(:\n"), "x", provenance=TRAINING, executor=sandbox)
    assert records == [] and report.reason == "no novel modules"
