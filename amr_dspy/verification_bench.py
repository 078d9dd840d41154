"""How much a synthesis record's ``passed`` is worth: synthesis's verification replayed where hidden tests exist.

Synthesis verifies a record by agreement (``amr_dspy.synthesis.pipeline``): the record keeps the answer of the
leading agreement group, teacher tests that group contradicts are discarded, and the record passes when its answer
passes the instruction's examples and every teacher test kept. A direct-select or amr-select eval run records the
same evidence per task (``selection`` in predictions.jsonl: the pool, what each candidate did on the examples and
the teacher's tests), so that rule can be replayed without the teacher and its verdicts set against the benchmark's
hidden tests: the precision of ``passed`` (verified answers that are right), its recall (right answers that get
verified) and how right the ``failed`` and ``no_tests`` records are. Replayed twice: with the instruction's examples
(MBPP+'s assert line, a stub's doctests) and without them, as most prose instructions come. A pool without teacher
tests counts as ``no_tests`` (a record would ask the teacher for new tests; the replay cannot).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from amr_dspy.agreement import CandidateRun, Selection, choose, contradicted
from amr_dspy.errors import ConfigError
from amr_dspy.selection_bench import hidden_passes, read_selections
from amr_dspy.tasks import Task

__all__ = ["Status", "VerdictCounts", "VerificationReplay", "replay_verdict", "verification_replay",
           "replay_markdown"]  # fmt: skip

Status = Literal["passed", "failed", "no_tests"]


class VerdictCounts(BaseModel):
    """Records by verdict, and how many of each have an answer passing the hidden tests (base and plus)."""

    records: int = 0
    correct: int = 0
    passed: int = 0
    passed_correct: int = 0
    failed: int = 0
    failed_correct: int = 0
    no_tests: int = 0
    no_tests_correct: int = 0

    def add(self, status: Status, correct: bool) -> None:
        self.records += 1
        self.correct += correct
        setattr(self, status, getattr(self, status) + 1)
        setattr(self, f"{status}_correct", getattr(self, f"{status}_correct") + correct)

    @property
    def precision(self) -> float | None:
        return self.passed_correct / self.passed if self.passed else None

    @property
    def recall(self) -> float | None:
        return self.passed_correct / self.correct if self.correct else None


class VerificationReplay(BaseModel):
    run: str
    benchmark: str
    variant: str
    n_tasks: int
    with_examples: VerdictCounts
    without_examples: VerdictCounts


def replay_verdict(selection: Selection, *, examples: bool = True) -> tuple[CandidateRun, Status]:
    """The answer synthesis would keep from this pool and its verdict; ``examples=False`` replays the pool as if
    the instruction stated none (the candidates' results on them are dropped before choosing)."""
    runs = selection.candidates
    if not examples:
        runs = [r.model_copy(update={"examples": [], "examples_passed": 0}) for r in runs]
    chosen, groups, _ = choose(runs)
    leading = next((g for g in groups if chosen.name in g.members), None)
    dropped = set(contradicted(leading, runs)) if leading else set()
    kept = [key for i, key in enumerate(chosen.tests) if i not in dropped]
    judged = [*chosen.examples, *kept]
    if not judged:
        return chosen, "no_tests"
    return chosen, "passed" if chosen.runnable and all(key == "pass" for key in judged) else "failed"


def verification_replay(run: Path, tasks: Sequence[Task], *, benchmark: str, workers: int = 2) -> VerificationReplay:
    """Replay synthesis's verification on every task of the run, with and without the instruction's examples."""
    selections, results = read_selections(run)
    by_id = {t.task_id: t for t in tasks}
    missing = sorted(set(selections) - set(by_id))
    if missing:
        raise ConfigError(f"{run}: task {missing[0]} is not in {benchmark} (is --benchmark the run's benchmark?)")
    passes = hidden_passes(selections, by_id, workers)
    counts = {flag: VerdictCounts() for flag in (True, False)}
    for tid, selection in selections.items():
        for flag, tally in counts.items():
            answer, status = replay_verdict(selection, examples=flag)
            tally.add(status, passes[(tid, answer.code)])
    return VerificationReplay(run=str(run), benchmark=benchmark, variant=str(results.get("variant")),
                              n_tasks=len(selections), with_examples=counts[True],
                              without_examples=counts[False])  # fmt: skip


def replay_markdown(replays: Sequence[VerificationReplay]) -> str:
    """One table: per run and examples setting, the verdicts and how many of each are right on hidden tests."""
    lines = ["| run | examples | records | right | passed (right: precision) | recall | failed (right) | "
             "no tests (right) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for replay in replays:
        for label, c in (("with", replay.with_examples), ("without", replay.without_examples)):
            lines.append(f"| {replay.variant} on {replay.benchmark} (`{_short(replay.run)}`) | {label} | "
                         f"{c.records} | {c.correct} ({_pct(c.correct, c.records)}) | {c.passed} ({c.passed_correct}: "
                         f"{_pct(c.passed_correct, c.passed)}) | {_pct(c.passed_correct, c.correct)} | "
                         f"{c.failed} ({c.failed_correct}) | {c.no_tests} ({c.no_tests_correct}) |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _short(run: str) -> str:
    return "/".join(Path(run).parts[-2:])


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"
