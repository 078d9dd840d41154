"""Offline flow tests of every program variant with DummyLM: the happy paths and every fallback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dspy
import pytest
from dspy.utils import DummyLM

from amr_dspy.errors import ConfigError
from amr_dspy.programs import VARIANTS, build_program
from amr_dspy.testcases import ExecutionRequest, ExecutionResult, TestOutcome

DIRECT = "Add them.\n```python\ndef add(a, b):\n    return a - b\n```"
EVOLVED = "Fixed.\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"
SPECS = [{"name": "add", "signature": "def add(a: int, b: int) -> int:", "description": "Sum of a and b.", "calls": []}]
TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "not a test"]


@dataclass
class FakeRecord:
    id: str
    name: str
    code: str


@dataclass
class FakeHit:
    record: FakeRecord
    score: float


class FakeLibrary:
    def __init__(self, hits: list[FakeHit]) -> None:
        self.hits, self.queries = hits, []

    def search(self, queries: list[str], k: int = 1) -> list[list[FakeHit]]:
        self.queries.extend(queries)
        return [self.hits[:k] for _ in queries]


class PythonExecutor:
    """Runs assert tests in-process: enough to drive the selection logic (the real sandbox is tested elsewhere)."""

    def __init__(self) -> None:
        self.requests: list[ExecutionRequest] = []

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        self.requests.append(request)
        outcomes = []
        for test in request.tests:
            namespace: dict[str, Any] = {}
            try:
                exec(request.code, namespace)
                exec(test.code, namespace)
                outcomes.append(TestOutcome(name=test.name, status="passed"))
            except AssertionError:
                outcomes.append(TestOutcome(name=test.name, status="failed", message="AssertionError"))
        return ExecutionResult(outcomes=outcomes)


LIBRARY = FakeLibrary([FakeHit(FakeRecord("m1", "plus", "def plus(x, y):\n    return x + y\n"), 0.9)])


ADAPTER = dspy.ChatAdapter(use_json_adapter_fallback=False)  # as for the local teacher (TeacherSpec.make_adapter)


def run(variant: str, answers: list[dict[str, Any]], **kwargs: Any) -> dspy.Prediction:
    with dspy.context(lm=DummyLM(answers), adapter=ADAPTER):
        return build_program(variant, **kwargs)(instruction="Write add(a, b) returning the sum.", entry_point="add")


def test_direct_returns_the_answer_and_its_code() -> None:
    prediction = run("direct", [{"response": DIRECT}])
    assert prediction.response == DIRECT == prediction.direct_response
    assert prediction.code.strip() == "def add(a, b):\n    return a - b"


def test_cot_keeps_its_reasoning() -> None:
    prediction = run("cot", [{"reasoning": "sum them", "response": EVOLVED}])
    assert prediction.reasoning == "sum them" and "a + b" in prediction.code


def test_amr_full_flow_retrieves_generates_evolves_and_keeps_the_better_answer() -> None:
    library, executor = FakeLibrary(LIBRARY.hits), PythonExecutor()
    answers = [
        {"response": DIRECT},
        {"modules": SPECS},
        {"implementations": [{"name": "add", "code": "def add(a: int, b: int) -> int:\n    return a + b"}]},
        {"response": EVOLVED},
        {"tests": TESTS},
    ]
    prediction = run("amr", answers, library=library, executor=executor)
    assert prediction.response == EVOLVED and prediction.kept == "evolved"
    assert prediction.direct_response == DIRECT
    assert [m.name for m in prediction.modules] == ["add"]
    assert [(r.id, r.score) for r in prediction.retrieved] == [("m1", 0.9)]
    assert library.queries == ["add: def add(a: int, b: int) -> int:\nSum of a and b."]
    assert any("evolved 2/2" in note and "direct 1/2" in note for note in prediction.notes)


def test_guard_keeps_the_direct_answer_when_evolution_made_it_worse() -> None:
    answers = [{"response": EVOLVED}, {"modules": SPECS}, {"implementations": []}, {"response": DIRECT},
               {"tests": TESTS}]  # fmt: skip
    prediction = run("amr", answers, library=LIBRARY, executor=PythonExecutor())
    assert prediction.response == EVOLVED and prediction.kept == "direct"
    assert prediction.evolved_response == DIRECT


def test_without_the_guard_the_evolved_answer_is_always_kept() -> None:
    answers = [{"response": EVOLVED}, {"modules": SPECS}, {"implementations": []}, {"response": DIRECT}]
    prediction = run("amr", answers, library=LIBRARY, executor=PythonExecutor(), guard=False)
    assert prediction.response == DIRECT and prediction.kept == "evolved"


def test_unparsable_decomposition_falls_back_to_the_direct_answer() -> None:
    prediction = run("amr", [{"response": DIRECT}, {"wrong_field": "??"}], library=LIBRARY)
    assert prediction.response == DIRECT
    assert prediction.notes[0].startswith("decomposition failed")
    assert prediction.notes[-1] == "kept direct: no modules from decomposition"


class FailingLM(DummyLM):
    """A DummyLM whose n-th call fails as a teacher that went away would."""

    def __init__(self, answers: list[dict[str, Any]], fail_at: int) -> None:
        super().__init__(answers)
        self.fail_at, self.calls = fail_at, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("teacher went away")
        return super().__call__(*args, **kwargs)


def test_a_malformed_decomposition_is_read_leniently() -> None:
    library = FakeLibrary(LIBRARY.hits)
    answers = [{"response": DIRECT}, {"modules": '[{name: "add", signature: "def add(a: int, b: int): return a+b"}]'},
               {"response": EVOLVED}, {"tests": TESTS}]  # fmt: skip
    prediction = run("amr-paper", answers, library=library, executor=PythonExecutor())
    assert [(m.name, m.signature) for m in prediction.modules] == [("add", "def add(a: int, b: int):")]
    assert "decomposition read leniently: 1 module(s) from a malformed answer" in prediction.notes
    assert library.queries == ["add: def add(a: int, b: int):"] and prediction.kept == "evolved"


def test_failed_evolution_falls_back_and_records_why() -> None:
    answers = [{"response": DIRECT}, {"modules": SPECS}, {"implementations": []}]
    with dspy.context(lm=FailingLM(answers, fail_at=4), adapter=ADAPTER):
        prediction = build_program("amr", library=LIBRARY, executor=PythonExecutor())(
            instruction="Write add(a, b) returning the sum.", entry_point="add")  # fmt: skip
    assert prediction.response == DIRECT
    assert any(n.startswith("evolution failed: ConnectionError") for n in prediction.notes)
    assert [r.id for r in prediction.retrieved] == ["m1"]


def test_an_evolved_answer_without_field_markers_is_kept_whole() -> None:
    answers = [{"response": DIRECT}, {"modules": SPECS}, {"implementations": []}, {"answer": EVOLVED},
               {"tests": TESTS}]  # fmt: skip
    prediction = run("amr", answers, library=LIBRARY, executor=PythonExecutor())
    assert prediction.response == EVOLVED and prediction.kept == "evolved"
    assert "answer missed the field markers; kept it whole" in prediction.notes


@pytest.mark.parametrize("variant", ["direct", "cot", "ans-repair", "amr"])
def test_a_first_answer_without_field_markers_keeps_its_code(variant: str) -> None:
    # the 0.5B teacher often writes reasoning and a good code block but no [[ ## response ## ]] marker
    prediction = run(variant, [{"explanation": "Sum them.\n" + EVOLVED}], library=LIBRARY,
                     executor=PythonExecutor())  # fmt: skip
    assert "a + b" in prediction.code and "[[ ##" not in prediction.direct_response
    assert "answer missed the field markers; kept it whole" in prediction.notes


def test_empty_retrieval_and_missing_library_are_recorded_not_fatal() -> None:
    answers = [{"response": DIRECT}, {"modules": SPECS}, {"response": EVOLVED}, {"tests": TESTS}]
    prediction = run("amr-paper", answers, library=FakeLibrary([]), executor=PythonExecutor())
    assert prediction.response == EVOLVED and "retrieval found no module" in prediction.notes
    answers = [{"response": DIRECT}, {"modules": SPECS}, {"response": EVOLVED}, {"tests": []}]
    prediction = run("amr-paper", answers, executor=PythonExecutor())
    assert "retrieval skipped: no module library" in prediction.notes
    assert "kept evolved: no valid unit tests to compare with" in prediction.notes


def test_guard_keeps_direct_when_the_evolved_answer_has_no_code() -> None:
    answers = [{"response": DIRECT}, {"modules": SPECS}, {"response": "I cannot."}]
    prediction = run("amr-paper", answers, library=LIBRARY, executor=PythonExecutor())
    assert prediction.response == DIRECT and "kept direct: the evolved response has no code" in prediction.notes


@pytest.mark.parametrize(
    ("evolved", "note"),
    [
        ('```python\ndef add(a: int, b: int) -> int:\n    """Sum of a and b."""\n```', "leaves add unimplemented"),
        ("```python\ndef add(a, b):\n    pass\n```", "leaves add unimplemented"),
        ("```python\ndef plus(a, b):\n    return a + b\n```", "does not define add"),
    ],
)
def test_guard_keeps_direct_when_the_evolved_answer_is_hollow_or_renamed(evolved: str, note: str) -> None:
    # the 0.5B teacher echoes a module spec back as the answer; unit tests tie when both fail, so check first
    executor = PythonExecutor()
    answers = [{"response": DIRECT}, {"modules": SPECS}, {"response": evolved}, {"tests": []}]
    prediction = run("amr-paper", answers, library=LIBRARY, executor=executor)
    assert prediction.response == DIRECT and prediction.kept == "direct"
    assert f"kept direct: the evolved response {note}" in prediction.notes and executor.requests == []


def test_guard_does_not_blame_evolution_for_a_hollow_direct_answer() -> None:
    hollow = "```python\ndef add(a, b):\n    ...\n```"
    answers = [{"response": hollow}, {"modules": SPECS}, {"response": EVOLVED}, {"tests": TESTS}]
    prediction = run("amr-paper", answers, library=LIBRARY, executor=PythonExecutor())
    assert prediction.response == EVOLVED and prediction.kept == "evolved"


def test_no_retrieval_ablation_never_touches_the_library() -> None:
    library = FakeLibrary(LIBRARY.hits)
    answers = [{"response": DIRECT}, {"modules": SPECS}, {"response": EVOLVED}, {"tests": TESTS}]
    prediction = run("amr-no-retrieval", answers, library=library, executor=PythonExecutor())
    assert library.queries == [] and prediction.retrieved == [] and prediction.response == EVOLVED


def test_no_decomposition_ablation_queries_with_the_direct_response() -> None:
    library = FakeLibrary(LIBRARY.hits)
    answers = [{"response": DIRECT}, {"response": EVOLVED}, {"tests": TESTS}]
    prediction = run("amr-no-decomposition", answers, library=library, executor=PythonExecutor())
    assert library.queries == [DIRECT] and prediction.modules == [] and prediction.response == EVOLVED


def test_ans_repair_repairs_a_failing_answer_once() -> None:
    answers = [{"response": DIRECT}, {"tests": TESTS}, {"repaired_response": EVOLVED}]
    prediction = run("ans-repair", answers, executor=PythonExecutor())
    assert prediction.response == EVOLVED and prediction.direct_response == DIRECT
    assert prediction.notes == ["repaired after failing unit_1"]


def test_ans_repair_keeps_a_passing_answer() -> None:
    prediction = run("ans-repair", [{"response": EVOLVED}, {"tests": TESTS}], executor=PythonExecutor())
    assert prediction.response == EVOLVED and prediction.notes == ["kept direct: passed all 2 unit tests"]


def test_ans_repair_survives_unparsable_tests() -> None:
    prediction = run("ans-repair", [{"response": DIRECT}, {"bogus": 1}], executor=PythonExecutor())
    assert prediction.response == DIRECT and prediction.notes[0].startswith("repair skipped")


def test_every_variant_shares_one_output_contract() -> None:
    for variant in VARIANTS:
        program = build_program(variant, library=LIBRARY, executor=PythonExecutor())
        assert isinstance(program, dspy.Module)
    prediction = run("direct", [{"response": DIRECT}])
    assert {"response", "code", "direct_response", "notes", "modules", "retrieved"} <= set(prediction.keys())


def test_programs_deep_copy_without_copying_shared_resources() -> None:
    library = FakeLibrary([])
    program = build_program("amr", library=library)
    assert program.deepcopy()._library.value is library


def test_unknown_variant_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown variant 'amr-x'; known: direct, cot"):
        build_program("amr-x")


def test_unit_tests_split_several_asserts_in_one_string() -> None:
    from amr_dspy.programs import parse_unit_tests

    tests = parse_unit_tests(["assert f(1) == 2\nassert f(2) == 3", "```assert f(0) == 1```", "print(1)"])
    assert [t.code for t in tests] == ["assert f(1) == 2", "assert f(2) == 3", "assert f(0) == 1"]
    assert [t.name for t in tests] == ["unit_1", "unit_2", "unit_3"]


@pytest.mark.parametrize(
    "raw",
    [
        "[[ ## tests ## ]]\n```python\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n```\n[[ ## completed ## ]]",
        '[[ ## tests ## ]]\n- "assert add(1, 2) == 3",\n- "assert add(0, 0) == 0"\n',
        "[[ ## tests ## ]]\n1. assert add(1, 2) == 3\n2. assert add(0, 0) == 0\nassert add(\n",
    ],
)
def test_asserts_outside_the_requested_list_are_kept(raw: str) -> None:
    from amr_dspy.programs import write_unit_tests
    from signatures import UnitTests

    class RawLM(DummyLM):  # answers with raw text, as the 0.5B teacher does, not in DummyLM's field format
        def __call__(self, *args: Any, **kwargs: Any) -> list[str]:
            return [raw]

    with dspy.context(lm=RawLM([]), adapter=ADAPTER):
        tests = write_unit_tests(dspy.Predict(UnitTests), instruction="add", code="def add(a, b): return a + b")
    assert [t.code for t in tests] == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
