"""Choosing among candidates by dual execution agreement (amr_dspy.agreement): hand-computed groups and scores,
the instruction's examples first, ties, the early exit, and values observed in the real sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from amr_dspy.agreement import (
    Candidate,
    CandidatePool,
    CandidateRun,
    Group,
    Selection,
    choose,
    contradicted,
    distinct_tests,
    exits_early,
    group_candidates,
    observed,
    outcome_key,
    probe,
    settled,
)
from amr_dspy.sandbox import Sandbox
from amr_dspy.testcases import AssertTest, ExecutionRequest, ExecutionResult, TestOutcome


def run(name: str, tests: list[str], examples: list[str] | None = None, code: str | None = "x = 1\n") -> CandidateRun:
    kind = "direct" if name == "direct" else "evolved" if name == "evolved" else "sample"
    examples = examples or []
    return CandidateRun(name=name, kind=kind, code=code, examples=examples, tests=tests,
                        examples_passed=examples.count("pass"), tests_passed=tests.count("pass"))  # fmt: skip


A, B = "got aaaaaaaaaaaa 1", "got bbbbbbbbbbbb 2"
POOL = [
    run("direct", ["pass", A, "pass"]),
    run("sample_1", ["pass", "pass", "pass"]),
    run("sample_2", ["pass", A, "pass"]),
    run("evolved", ["pass", "pass", "pass"]),
    run("sample_3", ["pass", B, "pass"]),
    run("sample_4", [], code=None),  # no code: never grouped, never chosen
]


def test_groups_and_scores_by_hand() -> None:
    groups = group_candidates(POOL)
    assert groups == [
        Group(members=["direct", "sample_2"], examples_passed=0, tests_passed=2, score=4, eligible=True),
        Group(members=["sample_1", "evolved"], examples_passed=0, tests_passed=3, score=6, eligible=True),
        Group(members=["sample_3"], examples_passed=0, tests_passed=2, score=2, eligible=True),
    ]
    chosen, _, reason = choose(POOL)
    assert chosen.name == "evolved"  # the best group; within it the evolved answer goes before a sample
    assert reason == "group of 2 (sample_1, evolved) passes 3/3 unit tests: score 6; next best 4"


def test_failing_with_different_values_is_disagreement() -> None:
    # with pass/fail only, direct and sample_1 would agree (both fail test 2) and outscore sample_2 and sample_3
    pool = [run("direct", ["pass", A]), run("sample_1", ["pass", B]), run("sample_2", ["pass", "pass"]),
            run("sample_3", ["pass", "pass"])]  # fmt: skip
    assert [(g.members, g.score) for g in group_candidates(pool)] == [
        (["direct"], 1), (["sample_1"], 1), (["sample_2", "sample_3"], 4)]
    assert choose(pool)[0].name == "sample_2"


def test_the_instruction_s_examples_override_the_agreement_score() -> None:
    pool = [run("direct", ["pass", A, "pass"], examples=["pass"]),
            run("sample_1", ["pass", "pass", "pass"], examples=[B]),
            run("sample_2", ["pass", "pass", "pass"], examples=[B]),
            run("sample_3", ["pass", "pass", "pass"], examples=[B]),
            run("sample_4", [A, A, A], examples=["pass"])]  # fmt: skip
    groups = group_candidates(pool)
    assert [(g.members, g.score, g.eligible) for g in groups] == [
        (["direct"], 2, True), (["sample_1", "sample_2", "sample_3"], 9, False), (["sample_4"], 0, True)]
    chosen, _, reason = choose(pool)
    assert chosen.name == "direct" and "1/1 examples (the most of any candidate)" in reason


def test_when_no_candidate_passes_every_example_those_passing_the_most_are_eligible() -> None:
    pool = [run("direct", ["pass"], examples=[A, A]), run("sample_1", ["pass"], examples=["pass", A]),
            run("sample_2", [A], examples=["pass", B])]  # fmt: skip
    assert [g.eligible for g in group_candidates(pool)] == [False, True, True]
    assert choose(pool)[0].name == "sample_1"  # score 1 against sample_2's 0


def test_ties_go_to_the_direct_answer() -> None:
    pool = [run("direct", ["pass", "pass", A]), run("sample_1", ["pass", A, A]), run("sample_2", ["pass", A, A])]
    assert [g.score for g in group_candidates(pool)] == [2, 2]
    chosen, _, reason = choose(pool)
    assert chosen.name == "direct" and "tied with 1 other group(s), ties go to the direct answer" in reason


def test_without_direct_in_a_tie_the_evolved_answer_then_the_earliest_sample_wins() -> None:
    pool = [run("direct", [A, A]), run("sample_1", ["pass", A]), run("sample_2", ["pass", B]),
            run("evolved", [B, "pass"])]  # fmt: skip
    assert [g.score for g in group_candidates(pool)] == [0, 1, 1, 1]
    assert choose(pool)[0].name == "evolved"
    assert choose(pool[:3])[0].name == "sample_1"


def test_nothing_to_tell_candidates_apart_keeps_direct() -> None:
    assert choose([run("direct", [A]), run("sample_1", [B]), run("sample_2", [B])])[0].name == "direct"
    assert choose([run("direct", []), run("sample_1", [])])[0].name == "direct"  # no tests: one group, score 0
    chosen, groups, reason = choose([run("direct", [], code=None), run("sample_1", [], code=None)])
    assert chosen.name == "direct" and groups == [] and reason == "no candidate has code to run; kept direct"


def test_a_direct_answer_without_code_loses_to_a_sample_with_code() -> None:
    assert choose([run("direct", [], code=None), run("sample_1", [A])])[0].name == "sample_1"


@pytest.mark.parametrize(
    ("runs", "fires"),
    [
        ([run("direct", ["pass", "pass"], ["pass"]), run("sample_1", ["pass", "pass"], ["pass"]),
          run("sample_2", ["pass", "pass"], ["pass"])], True),
        ([run("direct", ["pass", A], ["pass"]), run("sample_1", ["pass", A], ["pass"]),
          run("sample_2", ["pass", A], ["pass"])], False),  # direct fails a teacher test, however many agree
        ([run("direct", ["pass", "pass"], [A]), run("sample_1", ["pass", "pass"], [A]),
          run("sample_2", ["pass", "pass"], [A])], False),  # direct fails the instruction's example
        ([run("direct", ["pass", "pass"]), run("sample_1", ["pass", "pass"]), run("sample_2", ["pass", B])], False),
        ([run("direct", ["pass", "pass"]), run("sample_1", ["pass", "pass"])], False),  # only one sample drawn
        ([run("direct", [], ["pass"]), run("sample_1", [], ["pass"]), run("sample_2", [], ["pass"])], False),
        ([run("direct", ["pass"]), run("sample_1", ["pass"]), run("evolved", ["pass"]),
          run("sample_2", ["pass"])], True),  # fmt: skip
    ],
)
def test_the_early_exit(runs: list[CandidateRun], fires: bool) -> None:
    assert exits_early(runs, needed=2) is fires


def test_no_samples_needed_exits_on_a_direct_answer_passing_everything() -> None:
    assert exits_early([run("direct", ["pass"])], needed=0)
    assert not exits_early([run("direct", [A])], needed=0)


@pytest.mark.parametrize(
    ("direct", "settles"),
    [
        (run("direct", [], ["pass"]), True),  # no test beyond the example, which direct passes: every group scores 0
        (run("direct", []), True),  # no example, no test: nothing can tell candidates apart
        (run("direct", [], [A]), False),  # a sample passing the example would be chosen
        (run("direct", ["pass"], ["pass"]), False),  # a larger group passing the test could outscore direct's
        (run("direct", [], ["pass"], code=None), False),
    ],
)
def test_the_choice_is_settled_only_when_no_other_candidate_could_win(direct: CandidateRun, settles: bool) -> None:
    assert settled([direct]) is settles
    if settles:  # whatever samples would have come, the choice is direct
        assert choose([direct, run("sample_1", [], direct.examples, code="y = 2\n")])[0].name == "direct"


# --------------------------------------------------------------------------------------------
# the teacher tests a leading group contradicts (verification by agreement)


def leading(runs: list[CandidateRun]) -> Group:
    chosen, groups, _ = choose(runs)
    return next(g for g in groups if chosen.name in g.members)


def test_two_different_programs_agreeing_contradict_the_tests_they_fail_alike() -> None:
    keys = ["pass", A, "error ValueError", "timeout", "fail", "not run"]
    runs = [run("direct", keys, ["pass"], code="x = 1\n"), run("evolved", keys, ["pass"], code="x = 2\n"),
            run("sample_1", ["pass"] * 6, [B], code="x = 3\n")]  # fmt: skip
    group = leading(runs)
    assert group.members == ["direct", "evolved"]  # sample_1 passes everything but fails the example
    assert contradicted(group, runs) == [1, 2]  # a value or an exception; a timeout or a bare failure tells nothing


def test_one_program_copies_of_it_or_a_group_failing_an_example_contradict_nothing() -> None:
    alone = [run("direct", ["pass", A], code="x = 1\n")]
    copies = [run("direct", ["pass", A], code="x = 1\n"), run("evolved", ["pass", A], code="# same\nx = 1\n")]
    wrong = [run("direct", ["pass", A], [B], code="x = 1\n"), run("evolved", ["pass", A], [B], code="x = 2\n")]
    for runs in (alone, copies, wrong):
        assert contradicted(leading(runs), runs) == []
    loading = [run("direct", ["load error SyntaxError"], code="x = (\n"), run("evolved", ["load error SyntaxError"],
                                                                            code="x = [\n")]  # fmt: skip
    assert contradicted(leading(loading), loading) == []


def test_observed_values_read_without_their_digest() -> None:
    assert observed("got 0123456789ab [1, 2]") == "returned [1, 2]"
    assert observed("error ValueError") == "raised ValueError"
    assert observed("timeout") == "timeout"


# --------------------------------------------------------------------------------------------
# keys, probes and tests


def test_outcome_keys() -> None:
    def key(status: str, message: str | None = None) -> str:
        return outcome_key(TestOutcome(name="t", status=status, message=message))  # type: ignore[arg-type]

    assert key("passed") == "pass"
    value = "AMR-VALUE 0123456789ab [1, 2] AMR-END (assert _amr_value == [2])"
    assert key("failed", value) == "got 0123456789ab [1, 2]"
    assert key("failed", "AssertionError (assert f(1))") == "fail"
    assert key("error", "ZeroDivisionError: division by zero (line 4: _amr_value = f(2))") == "error ZeroDivisionError"
    assert key("error", "the solution failed to load: SyntaxError: bad (line 1)") == "load error SyntaxError"
    assert key("timeout", "exceeded the time limit of 3s") == "timeout"
    assert outcome_key(None) == "not run"


def test_probe_observes_the_call_side_once() -> None:
    code = probe(AssertTest(name="t", code="assert 4 == f(2)")).code
    assert code.endswith("_amr_value = f(2)\nassert 4 == _amr_value, _amr_fingerprint(_amr_value)")
    code = probe(AssertTest(name="t", code="import math\nassert not f(0)")).code
    assert code.endswith("import math\n_amr_value = f(0)\nassert not _amr_value, _amr_fingerprint(_amr_value)")
    code = probe(AssertTest(name="t", code="assert f(1) == [2], 'case 1'")).code  # the value replaces the message
    assert code.endswith("_amr_value = f(1)\nassert _amr_value == [2], _amr_fingerprint(_amr_value)")
    assert probe(AssertTest(name="t", code="print(1)")).code == "print(1)"
    assert probe(AssertTest(name="t", code="assert f(")).code == "assert f("


def test_distinct_tests_drop_repeats_and_copies_of_the_examples() -> None:
    examples = [AssertTest(name="example_1", code="assert f(1) == 2")]
    tests = [AssertTest(name="unit_1", code="assert f(1)==2"), AssertTest(name="unit_2", code="assert f(2) == 3"),
             AssertTest(name="unit_3", code="assert f(2)  ==  3"), AssertTest(name="unit_4", code="assert f(3) == 4")]
    assert [t.name for t in distinct_tests(tests, examples)] == ["unit_2", "unit_4"]


def test_a_selection_is_json_serialisable() -> None:
    chosen, groups, reason = choose(POOL)
    selection = Selection(chosen=chosen.name, kind=chosen.kind, reason=reason, candidates=POOL, groups=groups)
    text = json.dumps(selection.model_dump(mode="json"))
    assert Selection.model_validate_json(text) == selection


# --------------------------------------------------------------------------------------------
# the pool on the real sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(workers=1)
    try:
        yield box
    finally:
        box.close()


class Counting:
    def __init__(self, inner: Sandbox) -> None:
        self.inner, self.requests = inner, 0

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        self.requests += 1
        return self.inner.run(request)


def keys(sandbox: Sandbox, code: str, tests: list[str]) -> list[str]:
    pool = CandidatePool(sandbox, examples=[], tests=[AssertTest(name=f"unit_{i}", code=t) for i, t in
                                                       enumerate(tests, 1)], entry_point="f")  # fmt: skip
    return pool.add(Candidate(name="direct", kind="direct", response="", code=code)).tests


def test_a_failing_candidate_reports_what_it_returned(sandbox: Sandbox) -> None:
    tests = ["assert f(2) == 5", "assert 4 == f(2)", "assert not f(2)", "assert f(0)"]
    doubled = keys(sandbox, "def f(x):\n    return x * 2\n", tests)
    assert doubled[1] == "pass" and doubled[0].startswith("got ") and doubled[0].endswith(" 4")
    assert doubled[2] == doubled[0]  # the same value observed through `not`
    assert doubled[3].endswith(" 0")
    assert keys(sandbox, "def f(x):\n    return x + x\n", tests) == doubled
    assert keys(sandbox, "def f(x):\n    return 3\n", tests)[0].endswith(" 3")


def test_an_assert_with_its_own_message_reports_the_value_too(sandbox: Sandbox) -> None:
    # rotate_matrix from the bundled samples: the teacher's expectation is wrong, and says so only in its message
    test = 'assert f([[1, 2], [3, 4]]) == [[4, 1], [3, 2]], "Test case 1 failed"'
    zipped = keys(sandbox, "def f(m):\n    return [list(r)[::-1] for r in zip(*m)]\n", [test])
    looped = keys(sandbox, "def f(m):\n    n = len(m)\n    return [[m[n - 1 - j][i] for j in range(n)] "
                           "for i in range(n)]\n", [test])  # fmt: skip
    assert zipped == looped and zipped[0].endswith(" list[list[3, 1], list[4, 2]]")
    runs = [CandidateRun(name="direct", kind="direct", code="a = 1\n", tests=zipped),
            CandidateRun(name="sample_1", kind="sample", code="a = 2\n", tests=looped)]
    assert contradicted(leading(runs), runs) == [0]  # two programs agree: the test is the teacher's mistake


def test_values_are_compared_as_the_tests_compare_them(sandbox: Sandbox) -> None:
    tests = ["assert f() == 1.0", "assert g() == {'z'}", "assert h() == 0"]
    one = keys(sandbox, "def f():\n    return 0.1 + 0.2\ndef g():\n    return {'a', 'b', 'c'}\n"
                        "class Box:\n    pass\ndef h():\n    return Box()\n", tests)  # fmt: skip
    other = keys(sandbox, "def f():\n    return 0.3\ndef g():\n    return {'c', 'b', 'a'}\nclass Box:\n    pass\n"
                          "def h():\n    return Box()\ndef sorted(*args):\n    raise ValueError\n", tests)  # fmt: skip
    assert one == other and all(key.startswith("got ") for key in one)
    assert one[1].endswith("set{'a', 'b', 'c'}") and one[2].endswith("Box:<Box object>")


def test_errors_are_told_apart_by_their_type(sandbox: Sandbox) -> None:
    assert keys(sandbox, "def f(x):\n    return 1 / 0\n", ["assert f(1) == 1"]) == ["error ZeroDivisionError"]
    assert keys(sandbox, "def f(x):\n    return x[5]\n", ["assert f([]) == 1"]) == ["error IndexError"]
    assert keys(sandbox, "def f(x) return", ["assert f(1) == 1"]) == ["load error SyntaxError"]


def test_the_pool_runs_identical_code_once_and_chooses_by_agreement(sandbox: Sandbox) -> None:
    counting = Counting(sandbox)
    examples = [AssertTest(name="example_1", code="assert f(1) == 2")]
    tests = [AssertTest(name="unit_1", code="assert f(2) == 3"), AssertTest(name="unit_2", code="assert f(0) == 1"),
             AssertTest(name="unit_3", code="assert f(1) == 2")]  # a copy of the example
    pool = CandidatePool(counting, examples=examples, tests=tests, entry_point="f")
    right, wrong = "def f(x):\n    return x + 1\n", "def f(x):\n    return x * 2\n"
    for name, kind, code in [("direct", "direct", wrong), ("sample_1", "sample", right),
                             ("sample_2", "sample", right), ("sample_3", "sample", None)]:  # fmt: skip
        pool.add(Candidate(name=name, kind=kind, response=f"answer {name}", code=code))  # type: ignore[arg-type]
    assert counting.requests == 2 and [t.name for t in pool.tests] == ["unit_1", "unit_2"]
    direct, sample = pool.runs[0], pool.runs[1]
    assert direct.examples == ["pass"] and direct.tests[0].endswith(" 4") and direct.tests_passed == 0
    assert sample.examples == ["pass"] and sample.tests == ["pass", "pass"]
    selection = pool.selection()
    assert selection.chosen == "sample_1" and pool.response("sample_1") == "answer sample_1"
    assert [(g.members, g.score) for g in selection.groups] == [(["direct"], 0), (["sample_1", "sample_2"], 4)]
    assert not selection.early_exit and selection.examples == ["assert f(1) == 2"]
    with pytest.raises(ValueError, match="already has a candidate named 'sample_1'"):
        pool.add(Candidate(name="sample_1", kind="sample", response="", code=right))
