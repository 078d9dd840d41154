"""Choosing among candidate answers by what they do: dual execution agreement (CodeT, Chen et al. 2022).

Every candidate (the direct answer, the evolved one, answers sampled at temperature > 0) runs in the sandbox on the
instruction's own examples (``amr_dspy.examples``) and on the teacher's unit tests. What it did on each test is
its *signature*: ``pass``, or for a failing ``assert CALL == EXPECTED`` the value CALL returned (canonicalised and
hashed in the sandbox), or the exception type it raised. Candidates with identical signatures form a group, and a
group scores (number of members) × (teacher tests its members pass): many candidates that agree and pass many tests
are probably right, while a wrong test passed by no one costs no one anything.

Why values and not only pass/fail: two candidates that both fail a (possibly wrong) teacher test may disagree about
the answer; with values they fall into different groups, so agreement means the same behaviour, not the same luck.
Values are compared as the tests would compare them: floats to 9 significant digits (``2 == 2.0``), sets and dicts
order-free, object reprs without their addresses. A candidate that passes a test is known only to equal EXPECTED
(its value is not reported), which is what ``==`` says anyway.

The instruction's examples come first: only candidates passing the most of them are eligible, so a candidate
failing them is never chosen over one that passes them. Ties go to the direct answer, then to the earlier
candidate (evolved before samples). All functions here are pure except ``CandidatePool``, which runs candidates
through an ``Executor`` (``amr_dspy.sandbox.Sandbox`` fits) and keeps what they did.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from amr_dspy.testcases import AssertTest, ExecutionRequest, ExecutionResult, TestCase, TestOutcome

__all__ = [
    "DIRECT",
    "Candidate",
    "CandidatePool",
    "CandidateRun",
    "Executor",
    "Group",
    "Selection",
    "candidate_run",
    "choose",
    "contradicted",
    "distinct_tests",
    "exits_early",
    "group_candidates",
    "observed",
    "outcome_key",
    "probe",
    "settled",
]

DIRECT = "direct"
Kind = Literal["direct", "evolved", "sample"]
_RANK = {"direct": 0, "evolved": 1, "sample": 2}
_TIE_RULE = "the evolved answer, then the earliest sample, wins ties"

_VALUE, _END = "AMR-VALUE ", " AMR-END"
_OBSERVED = "_amr_value"
_SHORT = 40  # characters of a value kept readable in a signature; the digest tells values apart
# Runs in the sandbox, in the solution's namespace: builtins are taken from their module because a solution may
# define its own ``sorted`` or ``repr``; a hostile ``__repr__`` yields a type name, never an exception.
_FINGERPRINT = f'''
def _amr_fingerprint(value):
    import builtins as b, hashlib, re

    def canon(v, depth):
        kind = b.type(v)
        if depth > 12:
            return "..."
        if v is None or kind in (b.bool, b.int, b.str, b.bytes):
            return b.repr(v)
        if kind is b.float:
            return "nan" if v != v else b.format(v, ".9g")
        if kind in (b.list, b.tuple):
            return kind.__name__ + "[" + ", ".join([canon(x, depth + 1) for x in v]) + "]"
        if kind in (b.set, b.frozenset):
            return "set{{" + ", ".join(b.sorted([canon(x, depth + 1) for x in v])) + "}}"
        if kind is b.dict:
            items = [canon(k, depth + 1) + ": " + canon(x, depth + 1) for k, x in v.items()]
            return "{{" + ", ".join(b.sorted(items)) + "}}"
        return kind.__name__ + ":" + re.sub(r" at 0x[0-9a-fA-F]+", "", b.repr(v))

    try:
        text = canon(value, 0)
    except BaseException:
        text = "<unprintable " + b.type(value).__name__ + ">"
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    short = text if b.len(text) <= {_SHORT} else text[:{_SHORT - 3}] + "..."
    return "{_VALUE}" + digest + " " + short + "{_END}"
'''


class Executor(Protocol):
    """What the pool needs from a sandbox (``amr_dspy.sandbox.Sandbox`` fits)."""

    def run(self, request: ExecutionRequest) -> ExecutionResult: ...


class Candidate(BaseModel):
    """One answer in the pool: where it came from, the response and its extracted code (None: nothing to run)."""

    name: str  # "direct", "evolved", "sample_1", ...
    kind: Kind
    response: str
    code: str | None


class CandidateRun(BaseModel):
    """What a candidate did: one key per example and per teacher test (its signature), and how many passed."""

    name: str
    kind: Kind
    code: str | None
    examples: list[str] = Field(default_factory=list)
    tests: list[str] = Field(default_factory=list)
    examples_passed: int = 0
    tests_passed: int = 0

    @property
    def runnable(self) -> bool:
        return self.code is not None

    @property
    def signature(self) -> tuple[str, ...]:
        return (*self.examples, *self.tests)

    @property
    def passes_everything(self) -> bool:
        return self.runnable and all(key == "pass" for key in self.signature)


class Group(BaseModel):
    """Candidates with identical signatures, and the group's score: members × teacher tests passed."""

    members: list[str]
    examples_passed: int
    tests_passed: int
    score: int
    eligible: bool  # its members pass the most examples of any runnable candidate


class Selection(BaseModel):
    """The record of one choice, JSON-serialisable: the pool, what each candidate did, the groups, the winner."""

    chosen: str
    kind: Kind
    reason: str
    early_exit: bool = False
    examples: list[str] = Field(default_factory=list)  # the instruction's examples (code)
    tests: list[str] = Field(default_factory=list)  # the teacher's unit tests (code)
    candidates: list[CandidateRun] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# tests that report the value a failing candidate returned


def probe(test: AssertTest) -> AssertTest:
    """``test`` rewritten to report, when it fails, the value it observed; any other test as it is.

    The test's last statement must be an assert (earlier ones, such as imports or a doctest's setup, stay as they
    are). ``assert CALL == EXPECTED`` (any single comparison) observes CALL, or EXPECTED when CALL is a literal;
    ``assert not X`` observes X; any other ``assert X`` observes X. The observed expression runs once, as before.
    An assert's own message (``assert f(x) == y, "case 1"``, as a small teacher often writes) gives way to the
    observed value: it says which test failed, the value says how.
    """
    split = _setup_and_assert(test.code)
    if split is None:
        return test
    setup, statement = split
    observed, checked = _split_observed(statement.test)
    lines = [_FINGERPRINT, *setup, f"{_OBSERVED} = {ast.unparse(observed)}",
             f"assert {ast.unparse(checked)}, _amr_fingerprint({_OBSERVED})"]  # fmt: skip
    return test.model_copy(update={"code": "\n".join(lines)})


def _setup_and_assert(code: str) -> tuple[list[str], ast.Assert] | None:
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return None
    if not body or not isinstance(body[-1], ast.Assert):
        return None
    return [ast.get_source_segment(code, node) or ast.unparse(node) for node in body[:-1]], body[-1]


def _split_observed(test: ast.expr) -> tuple[ast.expr, ast.expr]:
    """The expression to observe, and the test with it replaced by the name that holds its value."""
    name = ast.Name(id=_OBSERVED, ctx=ast.Load())
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        if _is_literal(test.left) and not _is_literal(test.comparators[0]):
            return test.comparators[0], ast.Compare(left=test.left, ops=test.ops, comparators=[name])
        return test.left, ast.Compare(left=name, ops=test.ops, comparators=test.comparators)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand, ast.UnaryOp(op=ast.Not(), operand=name)
    return test, name


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def outcome_key(outcome: TestOutcome | None) -> str:
    """What a candidate did on one test, as a signature entry: equal keys mean the same observable behaviour."""
    if outcome is None:
        return "not run"
    if outcome.status == "passed":
        return "pass"
    message = outcome.message or ""
    if outcome.status == "failed":
        value, found, _ = message.partition(_END)
        return f"got {value.removeprefix(_VALUE)}" if found and value.startswith(_VALUE) else "fail"
    if outcome.status == "error":
        loading = message.startswith("the solution failed to load: ")
        kind = message.removeprefix("the solution failed to load: ").split(":", 1)[0].split(" (", 1)[0]
        return f"{'load error' if loading else 'error'} {kind[:60]}"
    return outcome.status


def distinct_tests(tests: Sequence[AssertTest], examples: Sequence[AssertTest]) -> list[AssertTest]:
    """The teacher's tests without repeats and without the instruction's examples (a small teacher copies them)."""
    seen = {_normal(t.code) for t in examples}
    kept = []
    for test in tests:
        key = _normal(test.code)
        if key not in seen:
            seen.add(key)
            kept.append(test)
    return kept


def _normal(code: str) -> str:
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError):
        return code.strip()


# --------------------------------------------------------------------------------------------
# grouping, scoring, choosing


def candidate_run(candidate: Candidate, result: ExecutionResult | None, n_examples: int,
                  n_tests: int) -> CandidateRun:  # fmt: skip
    """A candidate's record from its execution result (examples first, then teacher tests, as they were sent)."""
    if candidate.code is None or result is None:
        return CandidateRun(name=candidate.name, kind=candidate.kind, code=candidate.code)
    outcomes = [outcome_key(o) for o in result.outcomes][: n_examples + n_tests]
    outcomes += [outcome_key(None)] * (n_examples + n_tests - len(outcomes))  # a crashed worker reports fewer
    examples, tests = outcomes[:n_examples], outcomes[n_examples:]
    return CandidateRun(name=candidate.name, kind=candidate.kind, code=candidate.code, examples=examples, tests=tests,
                        examples_passed=examples.count("pass"), tests_passed=tests.count("pass"))  # fmt: skip


def group_candidates(runs: Sequence[CandidateRun]) -> list[Group]:
    """The runnable candidates grouped by signature, in the order of each group's first member."""
    runnable = [r for r in runs if r.runnable]
    if not runnable:
        return []
    best_examples = max(r.examples_passed for r in runnable)
    by_signature: dict[tuple[str, ...], list[CandidateRun]] = {}
    for run in runnable:
        by_signature.setdefault(run.signature, []).append(run)
    return [Group(members=[m.name for m in members], examples_passed=members[0].examples_passed,
                  tests_passed=members[0].tests_passed, score=len(members) * members[0].tests_passed,
                  eligible=members[0].examples_passed == best_examples)
            for members in by_signature.values()]  # fmt: skip


def choose(runs: Sequence[CandidateRun]) -> tuple[CandidateRun, list[Group], str]:
    """The chosen candidate, the groups and why: the best-scoring eligible group; ties go to direct, then earlier.

    ``runs[0]`` is the direct answer; it is also the answer when no candidate has code to run.
    """
    groups = group_candidates(runs)
    eligible = [g for g in groups if g.eligible]
    if not eligible:
        return runs[0], groups, "no candidate has code to run; kept direct"
    best = max(g.score for g in eligible)
    top = [g for g in eligible if g.score == best]
    by_name = {r.name: r for r in runs}
    winner = min(top, key=lambda g: min(_precedence(by_name[m], runs) for m in g.members))
    chosen = min((by_name[m] for m in winner.members), key=lambda r: _precedence(r, runs))
    return chosen, groups, _reason(winner, top, groups, len(chosen.examples), len(chosen.tests))


def contradicted(group: Group, runs: Sequence[CandidateRun]) -> list[int]:
    """The teacher tests (positions in the runs' ``tests``) that ``group`` contradicts, the ones to discard.

    A group contradicts a test when its members, at least two different programs, all pass every example of the
    instruction and all returned one value on the test other than EXPECTED, or all raised one exception type: the
    test's expectation is then probably the teacher's mistake. One program alone is no agreement, and neither are
    copies of one (the same code up to formatting and comments, as when an evolution step kept the direct code):
    their failures stand. A group failing an example is wrong, so it discards nothing. A timeout, a failure
    without an observed value or a solution that does not load says nothing about the test. Pure; ``choose``
    does not use it, so selection is unchanged.
    """
    members = [r for r in runs if r.name in group.members and r.runnable]
    if not members or len({_normal(r.code or "") for r in members}) < 2:
        return []
    first = members[0]
    if any(key != "pass" for key in first.examples):
        return []
    return [i for i, key in enumerate(first.tests) if key.startswith(("got ", "error "))]


def observed(key: str) -> str:
    """A signature entry as a reader wants it: ``returned VALUE`` (without the digest), ``raised TYPE``, or as is."""
    if key.startswith("got "):
        return "returned " + key.removeprefix("got ").partition(" ")[2]
    if key.startswith("error "):
        return "raised " + key.removeprefix("error ")
    return key


def _precedence(run: CandidateRun, runs: Sequence[CandidateRun]) -> tuple[int, int]:
    """Who wins a tie: the direct answer, then the evolved one, then samples in the order they were drawn."""
    return _RANK[run.kind], list(runs).index(run)


def _reason(winner: Group, top: list[Group], groups: list[Group], n_examples: int, n_tests: int) -> str:
    members = ", ".join(winner.members)
    text = (f"group of {len(winner.members)} ({members}) passes {winner.tests_passed}/{n_tests} unit tests: "
            f"score {winner.score}")  # fmt: skip
    if n_examples:
        text += f"; {winner.examples_passed}/{n_examples} examples (the most of any candidate)"
    if len(top) > 1:
        rule = "ties go to the direct answer" if DIRECT in winner.members else _TIE_RULE
        text += f"; tied with {len(top) - 1} other group(s), {rule}"
    others = [g.score for g in groups if g is not winner and g.eligible]
    if others and len(top) == 1:
        text += f"; next best {max(others)}"
    return text


def settled(runs: Sequence[CandidateRun]) -> bool:
    """Whether no further candidate can change the choice: the teacher wrote no test beyond the instruction's
    examples and the direct answer passes every example (if there are any). Every group then scores 0, the direct
    answer's group is eligible and ties go to it, so samples (or an evolved answer) would only cost tokens."""
    direct = runs[0]
    return direct.kind == "direct" and direct.runnable and not direct.tests and direct.passes_everything


def exits_early(runs: Sequence[CandidateRun], needed: int) -> bool:
    """Whether the pipeline can stop at the direct answer: it passes every example and every teacher test (at least
    one), and the first ``needed`` samples have the same signature, so more samples would only agree with it."""
    direct = runs[0]
    samples = [r for r in runs if r.kind == "sample"][:needed]
    return (direct.kind == "direct" and direct.passes_everything and bool(direct.tests) and len(samples) == needed
            and all(s.signature == direct.signature for s in samples))  # fmt: skip


# --------------------------------------------------------------------------------------------
# the orchestrator


class CandidatePool:
    """Runs each candidate once on the examples and the teacher's tests; identical code is run only once."""

    def __init__(self, executor: Executor, *, examples: Sequence[AssertTest], tests: Sequence[AssertTest],
                 entry_point: str | None) -> None:  # fmt: skip
        self.examples, self.tests = list(examples), distinct_tests(tests, examples)
        self._executor, self._entry_point = executor, entry_point
        self._probes: list[TestCase] = [probe(t) for t in [*self.examples, *self.tests]]
        self._runs: list[CandidateRun] = []
        self._responses: dict[str, str] = {}
        self._by_code: dict[str, ExecutionResult] = {}

    @property
    def runs(self) -> list[CandidateRun]:
        return list(self._runs)

    def add(self, candidate: Candidate) -> CandidateRun:
        if candidate.name in self._responses:
            raise ValueError(f"the pool already has a candidate named {candidate.name!r}")
        run = candidate_run(candidate, self._result(candidate.code), len(self.examples), len(self.tests))
        self._runs.append(run)
        self._responses[candidate.name] = candidate.response
        return run

    def response(self, name: str) -> str:
        return self._responses[name]

    def exits_early(self, needed: int) -> bool:
        return exits_early(self._runs, needed)

    def settled(self) -> bool:
        return settled(self._runs)

    def selection(self, *, early_exit: bool = False) -> Selection:
        chosen, groups, reason = choose(self._runs)
        if early_exit:
            reason = f"early exit: {reason}"
        return Selection(chosen=chosen.name, kind=chosen.kind, reason=reason, early_exit=early_exit,
                         examples=[t.code for t in self.examples], tests=[t.code for t in self.tests],
                         candidates=self.runs, groups=groups)  # fmt: skip

    def _result(self, code: str | None) -> ExecutionResult | None:
        if code is None:
            return None
        if code not in self._by_code:
            request = ExecutionRequest(code=code, entry_point=self._entry_point, tests=self._probes, fail_fast=False)
            self._by_code[code] = self._executor.run(request)
        return self._by_code[code]
