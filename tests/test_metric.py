from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest

from amr_dspy.errors import DataError
from amr_dspy.metric import (
    ExecutionMetric,
    execution_feedback_metric,
    execution_metric,
    prediction_code,
    task_to_example,
)
from amr_dspy.tasks import Task, load_tasks
from tests.evalplus_helpers import use_humaneval_fixture

GOOD = "def digit_sum(n):\n    return sum(int(c) for c in str(n))\n"
ZERO = "def digit_sum(n):\n    return 0\n"  # right only for n == 0: 1 of the 6 tests
BROKEN = "def digit_sum(n):\n    return undefined_name\n"


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Task]:
    use_humaneval_fixture(monkeypatch, tmp_path)
    return load_tasks("humaneval+")


@pytest.fixture
def metric() -> Iterator[ExecutionMetric]:
    with ExecutionMetric(workers=1) as m:
        yield m


def test_task_to_example_exposes_only_instruction_and_entry_point(tasks: list[Task]) -> None:
    example = task_to_example(tasks[0])
    assert set(example.inputs().keys()) == {"instruction", "entry_point"}
    assert example.inputs()["entry_point"] == "digit_sum"
    assert example.task is tasks[0]
    plain = task_to_example(Task(task_id="p/0", instruction="Say hi.", source="p"))
    assert set(plain.inputs().keys()) == {"instruction"}


def test_prediction_code_prefers_code_field_then_extracts_from_response() -> None:
    assert prediction_code(dspy.Prediction(response="ignored", code=GOOD), "digit_sum") == GOOD
    assert prediction_code(dspy.Prediction(response=f"```python\n{GOOD}```"), "digit_sum") == GOOD
    assert prediction_code(dspy.Prediction(response="no code here", code=None), "digit_sum") is None
    assert prediction_code(dspy.Prediction(answer="x"), "digit_sum") is None


def test_score_is_the_fraction_of_hidden_tests_passed(tasks: list[Task], metric: ExecutionMetric) -> None:
    example = task_to_example(tasks[0])
    assert len(tasks[0].tests) == 6
    assert metric(example, dspy.Prediction(code=GOOD)) == 1.0
    assert metric(example, dspy.Prediction(code=ZERO)) == pytest.approx(1 / 6)
    assert metric(example, dspy.Prediction(code=BROKEN)) == 0.0
    assert metric(example, dspy.Prediction(response="I don't know.", code=None)) == 0.0


def test_strict_bool_while_tracing(tasks: list[Task], metric: ExecutionMetric) -> None:
    example = task_to_example(tasks[0])
    assert metric(example, dspy.Prediction(code=GOOD), trace=[]) is True
    assert metric(example, dspy.Prediction(code=ZERO), trace=[]) is False
    assert metric(example, dspy.Prediction(code=None), trace=[]) is False


def test_feedback_names_the_first_failing_test(tasks: list[Task], metric: ExecutionMetric) -> None:
    example = task_to_example(tasks[0])
    ok = metric.feedback(example, dspy.Prediction(code=GOOD))
    assert ok.score == 1.0 and "all 6 hidden tests passed" in ok.feedback
    partial = metric.feedback(example, dspy.Prediction(code=ZERO))
    assert partial.score == pytest.approx(1 / 6)
    assert partial.feedback.startswith("Passed 1/6 hidden tests.") and "base_0" in partial.feedback
    broken = metric.feedback(example, dspy.Prediction(code=BROKEN), None, "respond", None)
    assert broken.score == 0.0 and "NameError" in broken.feedback
    empty = metric.feedback(example, dspy.Prediction(response="Sorry.", code=None))
    assert empty.score == 0.0 and "no Python code" in empty.feedback and "digit_sum" in empty.feedback


def test_module_level_metrics_share_one_sandbox(tasks: list[Task]) -> None:
    example = task_to_example(tasks[2])
    good = (
        "from itertools import zip_longest\n"
        "def interleave(a, b):\n    return ''.join(x + y for x, y in zip_longest(a, b, fillvalue=''))\n"
    )
    assert execution_metric(example, dspy.Prediction(code=good)) == 1.0
    feedback = execution_feedback_metric(example, dspy.Prediction(code="def interleave(a, b):\n    return a + b\n"))
    assert 0.0 < feedback.score < 1.0 and "First failure" in feedback.feedback
    from amr_dspy import metric as metric_module

    assert metric_module._shared is not None and metric_module._shared._sandbox is not None


def test_tasks_without_tests_cannot_be_scored(metric: ExecutionMetric) -> None:
    example = task_to_example(Task(task_id="plain/3", instruction="Say hi.", source="plain.jsonl"))
    with pytest.raises(DataError, match="plain/3"):
        metric(example, dspy.Prediction(code=GOOD))
    with pytest.raises(DataError, match="task_to_example"):
        metric(dspy.Example(instruction="x"), dspy.Prediction(code=GOOD))


class _Answer(dspy.Module):
    """A stand-in program: one LM call, code extracted from the markdown answer."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict("instruction -> response")

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        from amr_dspy.extract import extract_code

        response = self.respond(instruction=instruction).response
        return dspy.Prediction(response=response, code=extract_code(response, entry_point))


def test_works_as_a_dspy_evaluate_metric_across_threads(tasks: list[Task], metric: ExecutionMetric) -> None:
    lm = dspy.utils.DummyLM(
        {
            "digit_sum": {"response": f"```python\n{GOOD}```"},
            "mean_gap": {"response": "```python\ndef mean_gap(xs):\n    return 0.0\n```"},
            "interleave": {"response": "I would rather not."},
        }
    )
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=[task_to_example(t) for t in tasks], metric=metric, num_threads=3)(_Answer())
    scores = {example.task.task_id: score for example, _, score in result.results}
    # mean_gap -> 0.0 is right only for [0.5, 0.5]: 1 of its 4 tests
    assert scores == {"FixtureEval/0": 1.0, "FixtureEval/1": 0.25, "FixtureEval/2": 0.0}
