"""Synthesis's verification replayed on recorded pools (amr_dspy.verification_bench): hand-computed verdicts, and
the counts of a recorded run checked on real MBPP+ hidden tests in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from amr_dspy.agreement import CandidateRun
from amr_dspy.tasks import load_tasks
from amr_dspy.verification_bench import VerdictCounts, replay_markdown, replay_verdict, verification_replay
from tests.evalplus_helpers import use_mbpp_subset
from tests.test_selection_bench import GOT, HARD, RIGHT, WRONG, run, selection, write_run

OTHER = "def similar_elements(a, b):\n    return tuple(sorted(set(b).intersection(a)))\n"


def test_a_test_the_leading_group_contradicts_is_discarded_and_the_answer_verified() -> None:
    # two different programs agree on the second test's value: the teacher's expectation is discarded
    agreeing = selection(run("direct", ["pass", GOT], RIGHT), run("sample_1", ["pass", GOT], OTHER),
                         run("sample_2", ["pass", "pass"]))  # fmt: skip
    answer, status = replay_verdict(agreeing)
    assert (answer.name, status) == ("direct", "passed")


def test_a_failed_test_that_stands_fails_the_record() -> None:
    # HARD by hand: {sample_2, sample_3} score 2 x 2 = 4 beat {direct, sample_1, evolved} 3 x 1 = 3 and pass both
    assert [(a.name, s) for a, s in [replay_verdict(HARD)]] == [("sample_2", "passed")]
    alone = selection(run("direct", ["pass", GOT]))  # one program alone contradicts nothing
    assert replay_verdict(alone)[1] == "failed"


def test_examples_count_as_tests_and_can_be_replayed_away() -> None:
    stated = selection(CandidateRun(name="direct", kind="direct", code=WRONG, examples=["pass"], examples_passed=1))
    assert replay_verdict(stated)[1] == "passed"
    assert replay_verdict(stated, examples=False)[1] == "no_tests"
    failing = selection(CandidateRun(name="direct", kind="direct", code=WRONG, examples=["fail"], tests=["pass"],
                                     tests_passed=1))  # fmt: skip
    assert replay_verdict(failing)[1] == "failed" and replay_verdict(failing, examples=False)[1] == "passed"


def test_precision_and_recall() -> None:
    counts = VerdictCounts()
    for status, correct in [("passed", True), ("passed", False), ("failed", True), ("no_tests", False)]:
        counts.add(status, correct)  # type: ignore[arg-type]
    assert (counts.records, counts.correct, counts.passed, counts.passed_correct) == (4, 2, 2, 1)
    assert counts.precision == 0.5 and counts.recall == 0.5 and (counts.failed_correct, counts.no_tests) == (1, 1)
    assert VerdictCounts().precision is None


def test_a_recorded_run_against_hidden_tests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_mbpp_subset(monkeypatch, tmp_path, [2])
    replay = verification_replay(write_run(tmp_path / "run", {"Mbpp/2": HARD}), load_tasks("mbpp+"),
                                 benchmark="mbpp+")  # fmt: skip
    # sample_2 is verified and its code passes Mbpp/2's hidden tests
    assert replay.with_examples.model_dump() == {"records": 1, "correct": 1, "passed": 1, "passed_correct": 1,
                                                 "failed": 0, "failed_correct": 0, "no_tests": 0,
                                                 "no_tests_correct": 0}  # fmt: skip
    row = f"| direct-select on mbpp+ (`{tmp_path.name}/run`) | with | 1 | 1 (100.0%) | 1 (1: 100.0%) | 100.0% | 0 (0) |"
    assert row in replay_markdown([replay])
