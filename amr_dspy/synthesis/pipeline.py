"""One record: ``synthesize_record`` and ``merge_record``.

Each record is made by ``synthesize_record``, a pure function of (instruction, program, library snapshot):
it runs the program, chooses the answer to keep, checks it for benchmark overlap, verifies it by execution
agreement among the candidate answers on the instruction's examples and teacher-written unit tests in the sandbox
(``_judge``) and proposes the novel function modules of a verified answer, writing nothing. The answer kept must
define the requested entry point (the item's, else the one the instruction names, else the direct answer's main
function, ``amr_dspy.entry_points``); a final answer that does not, or that shares the leading agreement group with
the direct answer, or is outside it while the direct answer is in it, loses to the direct answer; what the entry
point never reaches is pruned, and an answer that pruning breaks loses too.
``merge_record`` adds the proposals to the library (the library serializes writes). ``run_synthesis``
(``amr_dspy.synthesis.run``) drives the two with N records in flight; a distributed engine can call the same two
functions on its own workers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from pydantic import BaseModel, Field

from amr_dspy.agreement import Candidate, CandidatePool, CandidateRun, Selection, choose, contradicted, observed
from amr_dspy.decontam import Verdict
from amr_dspy.entry_points import (
    defined_names,
    named_entry_points,
    prune_response,
    prune_unreachable,
    referenced_names,
    requested_entry_point,
)
from amr_dspy.extract import balance_fences, extract_code
from amr_dspy.library import Library, ModuleRecord, Provenance
from amr_dspy.synthesis.inputs import InputItem
from amr_dspy.synthesis.records import (
    AgreementEvidence,
    DiscardedTest,
    EntryPointSource,
    Growth,
    ModuleSpecRecord,
    RecordResult,
    RecordVerification,
    RetrievedModule,
    SynthesisRecord,
    SynthesisSettings,
    Timings,
    VerificationStatus,
)
from amr_dspy.testcases import AssertTest, ExecutionRequest, ExecutionResult
from amr_dspy.usage import Usage, UsageMeter

if TYPE_CHECKING:
    import dspy

    from amr_dspy.decontam import Decontaminator
    from amr_dspy.programs import Executor

__all__ = ["synthesize_record", "merge_record"]


class _Meter:
    """Measures LM usage (``amr_dspy.usage``) and the seconds spent waiting on the teacher, and remembers the latest
    response any step produced (the fallback answer)."""

    def __init__(self) -> None:
        from dspy.utils.callback import BaseCallback

        meter = self

        class Callback(BaseCallback):  # type: ignore[misc]  # dspy ships no types
            def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
                with meter.lock:
                    meter.started[call_id] = time.perf_counter()

            def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
                with meter.lock:
                    start = meter.started.pop(call_id, None)
                    if start is not None:
                        meter.teacher_s += time.perf_counter() - start

            def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
                if exception is None and outputs is not None:
                    for key in ("response", "repaired_response"):
                        text = getattr(outputs, key, None) if not isinstance(outputs, dict) else outputs.get(key)
                        if isinstance(text, str) and text.strip():
                            meter.best = text

        self.callback = Callback()
        self.usage_meter = UsageMeter()
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.teacher_s = 0.0
        self.best: str | None = None

    def usage(self) -> Usage:
        return self.usage_meter.usage()


@contextmanager
def _metered() -> Iterator[_Meter]:
    import dspy

    meter = _Meter()
    with dspy.context(callbacks=[*dspy.settings.callbacks, meter.callback, meter.usage_meter]):
        yield meter


def _one_line(exc: BaseException, width: int = 300) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:width] if text else ''}".rstrip(": ")


def _run_program(program: dspy.Module, item: InputItem, settings: SynthesisSettings) -> tuple[Any, int, str | None]:
    """The prediction (None after the last failure), the attempts made and the last error."""
    import dspy

    error = None
    for attempt in range(1, settings.retries + 2):
        lm = dspy.settings.lm
        # A re-run reads no cache: a cached answer that failed to parse would fail again.
        overrides = {"lm": lm.copy(cache=False)} if attempt > 1 and lm is not None and hasattr(lm, "copy") else {}
        try:
            with dspy.context(**overrides):
                return program(instruction=item.instruction, entry_point=item.entry_point), attempt, None
        except Exception as exc:  # LM faults past the LM's own retries, unparsable outputs, program bugs
            error = _one_line(exc)
            if attempt <= settings.retries:
                time.sleep(settings.backoff_s * 2 ** (attempt - 1))
    return None, settings.retries + 1, error


def _test_writer(program: Any) -> Any:
    """The program's own (possibly compiled) unit-test predictor, else a plain one."""
    import dspy

    from signatures import UnitTests

    writer = getattr(program, "write_tests", None)
    return writer if isinstance(writer, dspy.Predict) else dspy.Predict(UnitTests)


_FENCE_LANGUAGE = re.compile(r"^```[ \t]*([A-Za-z][\w+#-]*)", re.MULTILINE)


def _no_code_message(response: str | None) -> str:
    """Why there is nothing to run: often the answer is code, but not Python (SQL, JavaScript, HTML...)."""
    languages = sorted({m.lower() for m in _FENCE_LANGUAGE.findall(response or "")} - {"python", "py"})
    if languages:
        return f"the response's code is {', '.join(languages)}, not Python; only Python is verified"
    return "the response has no code"


class _Answer(BaseModel):
    """A candidate for the record's answer: the program's final one, or its direct one."""

    response: str
    code: str | None = None
    kept: str | None = None
    pruned: list[str] = Field(default_factory=list)
    leading: bool = False  # its code is in the leading agreement group (``_judge``)


class _EntryPoint(BaseModel):
    name: str | None = None
    source: EntryPointSource | None = None
    keep: list[str] = Field(default_factory=list)  # the other functions the instruction asks for: never pruned


class _Tried(BaseModel):
    """An answer and what the record's unit tests did on it (no result: nothing was run)."""

    answer: _Answer
    tests: list[AssertTest] = Field(default_factory=list)
    result: ExecutionResult | None = None


class _Checked(BaseModel):
    """What the checks of one record decided."""

    answer: _Answer
    entry: _EntryPoint
    notes: list[str]
    verification: RecordVerification
    contamination: Verdict | None = None
    growth: Growth = Field(default_factory=Growth)
    proposed: list[ModuleRecord] = Field(default_factory=list)


def _entry_point(item: InputItem, prediction: Any) -> _EntryPoint:
    """The item's entry point, else the function the instruction names, else the direct answer's main function."""
    if item.entry_point:
        return _EntryPoint(name=item.entry_point, source="item")
    direct = prediction.get("direct_response")
    direct_code = extract_code(direct) if direct else None
    name = requested_entry_point(item.instruction, direct_code)
    named = named_entry_points(item.instruction, direct_code)
    if name is None:
        return _EntryPoint()
    source: EntryPointSource = "instruction" if name in named else "direct answer"
    return _EntryPoint(name=name, source=source, keep=[n for n in named if n != name])


def _answers(prediction: Any, item: InputItem, notes: list[str]) -> tuple[_Answer, _Answer | None]:
    """The program's final answer and, when its text differs, the direct answer (the one a tie goes to)."""
    final = _Answer(response=prediction.get("response") or "", code=prediction.get("code"), kept=prediction.get("kept"))
    direct = prediction.get("direct_response")
    if direct and direct == final.response and final.kept not in (None, "direct", "fallback"):
        notes.append(f"tie: direct kept (the {final.kept} response is the direct one)")
        return final.model_copy(update={"kept": "direct"}), None
    if not direct or direct == final.response:
        return final, None
    return final, _Answer(response=direct, code=extract_code(direct, item.entry_point), kept="direct")


def _defines(code: str | None, name: str | None) -> bool:
    return name is None or name in defined_names(code or "")


def _label(answer: _Answer) -> str:
    return answer.kept or "final"


def _structural(final: _Answer, direct: _Answer | None, entry: _EntryPoint, notes: list[str]) -> _Answer:
    """A final answer without code, or without the entry point, loses to the direct answer before any test."""
    if direct is None:
        return final
    if final.code is None and direct.code is not None:
        notes.append(f"kept direct: the {_label(final)} response has no code")
        return direct
    if not _defines(final.code, entry.name):
        nor = "" if _defines(direct.code, entry.name) else "; nor does the direct one"
        notes.append(f"kept direct: the {_label(final)} response does not define {entry.name}{nor}")
        return direct
    return final


class _Trial:
    """The tests the record's answer is judged on, run on it (and on a pruned copy) as they are, not probed."""

    def __init__(self, executor: Executor, entry_point: str | None, tests: list[AssertTest]) -> None:
        self.executor, self.entry_point, self.tests = executor, entry_point, tests

    def run(self, answer: _Answer, tests: list[AssertTest] | None = None) -> _Tried:
        tests = self.tests if tests is None else tests
        request = ExecutionRequest(code=answer.code or "", entry_point=self.entry_point, tests=[*tests],
                                   fail_fast=False)
        return _Tried(answer=answer, tests=tests, result=self.executor.run(request) if tests else None)


def _n_passed(tried: _Tried) -> int:
    return sum(o.status == "passed" for o in tried.result.outcomes) if tried.result else 0


# ------------------------------------------------------------------------------------------------ agreement


class _Evidence(BaseModel):
    """What the record is judged on: the instruction's examples and the teacher's tests, and where they came from."""

    examples: list[AssertTest] = Field(default_factory=list)
    tests: list[AssertTest] = Field(default_factory=list)
    source: Literal["record", "selection"] = "record"
    selection: Selection | None = None  # the program's own choice among sampled candidates, if it made one
    failure: str | None = None  # why there are no teacher tests
    error: bool = False  # writing them failed (the teacher gone, an unparsable answer)


class _Judged(BaseModel):
    """The record's answer by agreement, the direct answer to fall back on, and the tests the answer must pass."""

    answer: _Answer
    fallback: _Answer | None = None  # the direct answer, when another one was chosen: kept if pruning breaks that one
    tests: list[AssertTest]  # the examples, then the teacher tests the leading group does not contradict
    evidence: AgreementEvidence


def _evidence(program: Any, prediction: Any, item: InputItem, answer: _Answer) -> _Evidence:
    """The evidence the program's selection chose by, when it made one with tests: its examples, tests and pool.
    Else the instruction's examples (as the programs read them) and unit tests the teacher writes for the answer."""
    from amr_dspy.examples import instruction_examples
    from amr_dspy.framing import frame_instruction
    from amr_dspy.programs import write_unit_tests

    selection = prediction.get("selection")
    selection = selection if isinstance(selection, Selection) else None
    if selection is not None and selection.tests:
        return _Evidence(examples=_as_tests(selection.examples, "example"), tests=_as_tests(selection.tests, "unit"),
                         source="selection", selection=selection)  # fmt: skip
    instruction = frame_instruction(item.instruction, item.entry_point)  # as the programs frame it for predictors
    examples = instruction_examples(instruction, item.entry_point)
    try:
        tests = write_unit_tests(_test_writer(program), instruction=instruction, code=answer.code or "")
    except Exception as exc:  # the teacher gone, or an answer with no assert at all
        return _Evidence(examples=examples, selection=selection, error=True,
                         failure=f"writing unit tests failed: {_one_line(exc)}")  # fmt: skip
    failure = None if tests else "the teacher wrote no valid assert statement"
    return _Evidence(examples=examples, tests=tests, selection=selection, failure=failure)


def _as_tests(codes: Sequence[str], prefix: str) -> list[AssertTest]:
    return [AssertTest(name=f"{prefix}_{i}", code=code, time_limit_s=3.0) for i, code in enumerate(codes, 1)]


def _judge(answer: _Answer, rival: _Answer | None, entry: _EntryPoint, evidence: _Evidence, executor: Executor,
           notes: list[str]) -> _Judged:  # fmt: skip
    """Verification by agreement (``amr_dspy.agreement``), on the same evidence as the programs' selection.

    The candidates: the direct answer and the final one (``rival`` and ``answer``), and every candidate of the
    program's selection when it drew samples. Each runs on the instruction's examples and the teacher's tests;
    candidates that behave the same form a group, and the leading group is the one ``choose`` picks: among those
    passing the most examples, the most members × teacher tests passed; ties go to the direct answer. Teacher tests
    the leading group contradicts (``contradicted``: at least two different programs passing every example return
    one other value, or raise one exception) are discarded, and a note says which. The record keeps the direct
    answer when it is in the leading group, else the final one; it is verified when it is in the leading group and
    passes every example and every teacher test kept. So with two candidates that agree, a test both contradict
    with the same output is discarded; with one, or with two that disagree, every teacher test counts.
    """
    ours = [a for a in (rival, answer) if a is not None]  # the direct answer first: ties go to it
    pool = CandidatePool(executor, examples=evidence.examples, tests=evidence.tests, entry_point=entry.name)
    names = _fill(pool, ours, evidence.selection)
    runs = pool.runs
    chosen, groups, reason = choose(runs)
    leading = next((g for g in groups if chosen.name in g.members), None)
    members = leading.members if leading else []
    lead_codes = {r.code for r in runs if r.name in members}
    marked = [a.model_copy(update={"leading": a.code in lead_codes}) for a in ours]
    kept = next((a for a in marked if a.leading), marked[-1])
    dropped = set(contradicted(leading, runs)) if leading else set()
    discarded = [DiscardedTest(test=t.code, observed=observed(chosen.tests[i]))
                 for i, t in enumerate(pool.tests) if i in dropped]  # fmt: skip
    # ``assert sorted([1, 6]) == [1, 6]`` passes whatever the answer is: it verifies nothing
    defined = defined_names(kept.code or "")
    undisputed = [t for i, t in enumerate(pool.tests) if i not in dropped]
    survivors = [t for t in undisputed if referenced_names(t.code) & defined]
    idle = [t.code for t in undisputed if t not in survivors]
    whose = "the program's selection's" if evidence.source == "selection" else "written for the answer"
    notes.append(f"verification by agreement: {len(runs)} candidate(s) on {len(pool.examples)} example(s) of the "
                 f"instruction and {len(pool.tests)} unit test(s) ({whose}); leading {reason}")  # fmt: skip
    if len(marked) == 2:
        notes.append(_choice_note(marked[0], marked[1], [_run(runs, name) for name in names]))
    if discarded:
        listed = "; ".join(f"{d.test.splitlines()[-1]} ({d.observed})" for d in discarded)
        notes.append(f"discarded {len(discarded)} teacher test(s) contradicted by the leading group: {listed}")
    if idle:
        notes.append(f"dropped {len(idle)} teacher test(s) that name nothing the answer defines: {'; '.join(idle)}")
    record = AgreementEvidence(pool=pool.selection(), tests_from=evidence.source, leading=members,
                               answer=names[marked.index(kept)], kept=[t.code for t in survivors],
                               discarded=discarded, unexercised=idle)  # fmt: skip
    fallback = marked[0] if len(marked) == 2 and kept is not marked[0] else None
    return _Judged(answer=kept, fallback=fallback, tests=[*pool.examples, *survivors], evidence=record)


def _fill(pool: CandidatePool, ours: list[_Answer], selection: Selection | None) -> list[str]:
    """Add the selection's candidates to the pool, then each of ours whose code none has; returns ours' names."""
    for run in selection.candidates if selection else []:
        pool.add(Candidate(name=run.name, kind=run.kind, response="", code=run.code))
    names = []
    for answer in ours:
        name = next((r.name for r in pool.runs if r.code == answer.code), None)
        if name is None:
            direct = answer.kept == "direct" or (len(ours) == 1 and answer.kept is None)
            name = _unique("direct" if direct else _label(answer), {r.name for r in pool.runs})
            pool.add(Candidate(name=name, kind="direct" if name == "direct" else "evolved", response=answer.response,
                               code=answer.code))  # fmt: skip
        names.append(name)
    return names


def _unique(name: str, taken: set[str]) -> str:
    candidate, suffix = name, 1
    while candidate in taken:
        suffix += 1
        candidate = f"{name}_{suffix}"
    return candidate


def _run(runs: list[CandidateRun], name: str) -> CandidateRun:
    return next(r for r in runs if r.name == name)


def _choice_note(direct: _Answer, final: _Answer, runs: list[CandidateRun]) -> str:
    """Which of the direct and the final answer the record keeps, and their scores on the record's tests."""
    label, (d, f) = _label(final), runs
    n = len(d.examples) + len(d.tests)
    scores = (f"record's tests: direct {d.examples_passed + d.tests_passed}/{n}, "
              f"{label} {f.examples_passed + f.tests_passed}/{n}")  # fmt: skip
    if direct.leading and final.leading:
        return f"tie: direct kept (both in the leading group; {scores})"
    if direct.leading:
        return f"kept direct: it is in the leading group, the {label} response is not ({scores})"
    if final.leading:
        return f"kept {label}: it is in the leading group, the direct response is not ({scores})"
    return f"kept {label}: neither it nor the direct response is in the leading group ({scores})"


# ------------------------------------------------------------------------------------------------ pruning


def _pruned(tried: _Tried, entry: _EntryPoint, trial: _Trial | None, notes: list[str]) -> _Tried | None:
    """The answer without what the entry point never reaches; None when pruning breaks it.

    Broken: the pruned code does not compile, or fails a test the unpruned code passed. A test that calls a
    pruned function tests code the instruction did not ask for: it is dropped, not counted against the answer.
    """
    answer = tried.answer
    if entry.name is None or answer.code is None:
        return tried
    code = prune_unreachable(answer.code, entry.name, entry.keep)
    if code is None:
        return None
    if code == answer.code:
        return tried
    dropped = sorted(defined_names(answer.code) - defined_names(code))
    pruned = answer.model_copy(update={"response": prune_response(answer.response, dropped), "code": code,
                                       "pruned": dropped})  # fmt: skip
    if trial is None or tried.result is None:
        notes.append(f"pruned what {entry.name} never reaches (untested): {', '.join(dropped)}")
        return _Tried(answer=pruned)
    tests = [t for t in tried.tests if not referenced_names(t.code) & set(dropped)]
    after = trial.run(pruned, tests)
    passed = {o.name for o in tried.result.outcomes if o.status == "passed"}
    if after.result is not None and any(o.name in passed and o.status != "passed" for o in after.result.outcomes):
        return None
    notes.append(f"pruned what {entry.name} never reaches: {', '.join(dropped)}")
    return after


def _settle(answer: _Answer, fallback: _Answer | None, entry: _EntryPoint, trial: _Trial | None,
            notes: list[str]) -> _Tried:  # fmt: skip
    """Run the tests on the answer and prune it; when pruning breaks it, the direct answer (``fallback``, pruned in
    turn) is kept instead."""
    tried = trial.run(answer) if trial else _Tried(answer=answer)
    if (pruned := _pruned(tried, entry, trial, notes)) is not None:
        return pruned
    label = _label(answer)
    if fallback is not None:
        notes.append(f"kept direct: pruning the {label} response broke it")
        tried = trial.run(fallback) if trial else _Tried(answer=fallback)
        if (pruned := _pruned(tried, entry, trial, notes)) is not None:
            return pruned
        label = "direct"
    notes.append(f"kept the {label} response unpruned: pruning broke it")
    return tried


# ------------------------------------------------------------------------------------------------ the verdict


def _verification(tried: _Tried, evidence: AgreementEvidence) -> RecordVerification:
    """Passed: the answer is in the leading group and passes every test it is judged on (``_judge``)."""
    n_examples, n_discarded = sum(t.name.startswith("example_") for t in tried.tests), len(evidence.discarded)
    if not tried.tests:
        return RecordVerification(status="no_tests", message="no unit test left that exercises the answer",
                                  n_discarded=n_discarded, evidence=evidence)  # fmt: skip
    result = tried.result or ExecutionResult()
    failure = result.first_failure()
    message = (failure.message or failure.status)[:500] if failure else result.crash_reason
    if not tried.answer.leading:
        message = f"the answer is not in the leading agreement group ({', '.join(evidence.leading) or 'none'})"
    return RecordVerification(
        status="passed" if result.passed and tried.answer.leading else "failed",
        n_tests=len(tried.tests),
        n_passed=_n_passed(tried),
        n_examples=n_examples,
        n_discarded=n_discarded,
        failed_test=failure.name if failure else None,
        message=message,
        evidence=evidence,
    )


def _rival(answer: _Answer, direct: _Answer | None, entry: _EntryPoint) -> _Answer | None:
    """The direct answer as the other candidate to keep; a direct answer without code or the entry point is none."""
    if direct is None or answer is direct or not direct.code or not _defines(direct.code, entry.name):
        return None
    return direct


def _verify(program: Any, prediction: Any, answer: _Answer, direct: _Answer | None, item: InputItem,
            entry: _EntryPoint, executor: Executor, notes: list[str]) -> tuple[RecordVerification, _Tried]:  # fmt: skip
    """The answer kept by agreement among the candidates and its verification (``_judge``), then pruning."""
    if not answer.code:
        return RecordVerification(status="no_code", message=_no_code_message(answer.response)), _Tried(answer=answer)
    if not _defines(answer.code, entry.name):
        message = f"the code does not define {entry.name}, which the {entry.source} asks for"
        return RecordVerification(status="failed", message=message), _Tried(answer=answer)
    rival = _rival(answer, direct, entry)
    evidence = _evidence(program, prediction, item, answer)
    if not evidence.examples and not evidence.tests:
        status: VerificationStatus = "error" if evidence.error else "no_tests"
        return RecordVerification(status=status, message=evidence.failure), _settle(answer, rival, entry, None, notes)
    if evidence.failure:
        notes.append(f"{evidence.failure}; judged on the instruction's {len(evidence.examples)} example(s) only")
    judged = _judge(answer, rival, entry, evidence, executor, notes)
    tried = _settle(judged.answer, judged.fallback, entry, _Trial(executor, entry.name, judged.tests), notes)
    return _verification(tried, judged.evidence), tried


def _propose(
    library: Library, prediction: Any, answer: _Answer, item: InputItem, tests: list[AssertTest],
    settings: SynthesisSettings, executor: Executor, entry_point: str | None,
) -> tuple[Growth, list[ModuleRecord]]:  # fmt: skip
    import dspy

    from amr_dspy.growth import grow_library

    def replay(**_: Any) -> dspy.Prediction:  # the tests that just verified the code; no second teacher call
        return dspy.Prediction(tests=[t.code for t in tests])

    provenance = Provenance(source=settings.provenance_source, task_id=item.task_id, instruction_id=item.id,
                            teacher=settings.teacher,
                            artifact=settings.artifact_sha256 or settings.artifact)  # fmt: skip
    kept = dspy.Prediction(code=answer.code, modules=prediction.get("modules") or [])  # the kept answer's modules
    report, records = grow_library(library, kept, item.instruction, provenance=provenance, executor=executor,
                                   entry_point=entry_point, write_tests=replay)  # fmt: skip
    return Growth(candidates=report.candidates, proposed=len(records), reason=report.reason), records


def _overlap(decontaminator: Decontaminator | None, response: str) -> Verdict | None:
    return decontaminator.check_response(response) if decontaminator and response else None


def _dropped(contamination: Verdict) -> RecordVerification:
    return RecordVerification(status="skipped", message=f"dropped: the response overlaps {contamination.benchmark_id}")


def _leaks(contamination: Verdict | None) -> TypeGuard[Verdict]:
    return contamination is not None and contamination.contaminated


def _kept_and_verified(
    program: Any, prediction: Any, answer: _Answer, direct: _Answer | None, item: InputItem, entry: _EntryPoint,
    settings: SynthesisSettings, executor: Executor, decontaminator: Decontaminator | None, notes: list[str],
) -> tuple[RecordVerification, _Tried, Verdict | None]:  # fmt: skip
    """The answer to keep and its verification, unless it leaks a benchmark (checked again if the answer changed)."""
    contamination = _overlap(decontaminator, answer.response)
    if _leaks(contamination):
        return _dropped(contamination), _Tried(answer=answer), contamination
    if not settings.verify:
        verification = RecordVerification(status="skipped", message="verification off")
        return verification, _settle(answer, _rival(answer, direct, entry), entry, None, notes), contamination
    try:
        verification, tried = _verify(program, prediction, answer, direct, item, entry, executor, notes)
    except Exception as exc:  # the sandbox itself failed; the record still stands, unverified
        return RecordVerification(status="error", message=_one_line(exc)), _Tried(answer=answer), contamination
    if tried.answer.response != answer.response:  # the direct answer or a pruned one is kept instead
        contamination = _overlap(decontaminator, tried.answer.response)
        if _leaks(contamination):
            return _dropped(contamination), tried, contamination
    return verification, tried, contamination


def _grown(
    library: Library | None, prediction: Any, item: InputItem, tried: _Tried, checked: RecordVerification,
    contamination: Verdict | None, entry: _EntryPoint, settings: SynthesisSettings, executor: Executor,
) -> tuple[Growth, list[ModuleRecord]]:  # fmt: skip
    """The novel modules of a verified answer, proposed for the library."""
    if _leaks(contamination):
        return Growth(reason="response contaminated"), []
    if not settings.verify:
        return Growth(reason="not verified"), []
    if checked.status != "passed":
        return Growth(reason=f"not verified ({checked.status})"), []
    if not settings.grow or library is None:
        return Growth(reason="growth off"), []
    try:
        return _propose(library, prediction, tried.answer, item, tried.tests, settings, executor, entry.name)
    except Exception as exc:  # growth is a by-product; it must not lose the record
        return Growth(reason=f"growth failed: {_one_line(exc)}"), []


def _check(
    program: Any,
    prediction: Any,
    item: InputItem,
    library: Library | None,
    settings: SynthesisSettings,
    executor: Executor,
    decontaminator: Decontaminator | None,
) -> _Checked:
    """Choose the answer to keep, verify it (unless it leaks a benchmark) and propose the modules of verified code.

    The answer: the program's final one, unless it lacks code or the entry point (then the direct one), the direct
    one is in the leading agreement group (then the direct one, ``_judge``), or it breaks when what its entry point
    never reaches is pruned (then the direct one, pruned in turn).
    """
    notes: list[str] = []
    entry = _entry_point(item, prediction)
    final, direct = _answers(prediction, item, notes)
    answer = _structural(final, direct, entry, notes)
    verification, tried, contamination = _kept_and_verified(program, prediction, answer, direct, item, entry, settings,
                                                            executor, decontaminator, notes)  # fmt: skip
    growth, proposed = _grown(library, prediction, item, tried, verification, contamination, entry, settings,
                              executor)  # fmt: skip
    return _Checked(answer=tried.answer, entry=entry, notes=notes, verification=verification,
                    contamination=contamination, growth=growth, proposed=proposed)  # fmt: skip


def synthesize_record(
    item: InputItem,
    program: dspy.Module,
    library: Library | None,
    *,
    settings: SynthesisSettings,
    executor: Executor,
    decontaminator: Decontaminator | None = None,
) -> RecordResult:
    """Make one record: run the program (retrying with backoff), check, verify and propose modules; writes nothing.

    Never raises for a teacher fault or a bad teacher output: past the retries the record keeps the best response
    seen so far, with the error recorded.
    """
    import dspy

    started, clock = datetime.now(UTC), time.perf_counter()
    with _metered() as meter:
        prediction, attempts, error = _run_program(program, item, settings)
        program_s = time.perf_counter() - clock
        fallback = prediction is None
        if fallback:
            best = meter.best or ""
            prediction = dspy.Prediction(response=best, code=extract_code(best, item.entry_point) if best else None,
                                         modules=[], retrieved=[], notes=[], kept="fallback")  # fmt: skip
        verify_clock = time.perf_counter()
        checked = _check(program, prediction, item, library, settings, executor, decontaminator)
        verify_s = time.perf_counter() - verify_clock
    framed = prediction.get("framed_instruction")
    answer = checked.answer
    record = SynthesisRecord(
        id=item.id,
        instruction=item.instruction,
        framed_instruction=framed if framed != item.instruction else None,
        source=settings.source,
        task_id=item.task_id,
        direct_response=prediction.get("direct_response"),
        modules=[ModuleSpecRecord(name=m.name, signature=m.signature, description=m.description)
                 for m in prediction.get("modules") or []],  # fmt: skip
        retrieved=[RetrievedModule(id=r.id, name=r.name, score=round(float(r.score), 4))
                   for r in prediction.get("retrieved") or []],  # fmt: skip
        evolved_response=prediction.get("evolved_response"),
        response=balance_fences(answer.response),
        kept=answer.kept,
        code=answer.code,
        entry_point=checked.entry.name,
        entry_point_source=checked.entry.source,
        pruned=answer.pruned,
        notes=[*(prediction.get("notes") or []), *checked.notes],
        verification=checked.verification,
        contamination=checked.contamination,
        growth=checked.growth,
        teacher=settings.teacher,
        variant=settings.variant,
        artifact=settings.artifact,
        artifact_sha256=settings.artifact_sha256,
        usage=meter.usage(),
        timings=Timings(started_at=started, program_s=round(program_s, 3), verify_s=round(verify_s, 3),
                        total_s=round(time.perf_counter() - clock, 3),
                        teacher_s=round(meter.teacher_s, 3)),  # fmt: skip
        attempts=attempts,
        fallback=fallback,
        error=error,
    )
    return RecordResult(record=record, proposed=checked.proposed)


def merge_record(library: Library, result: RecordResult, *, novelty_threshold: float = 0.95) -> SynthesisRecord:
    """Add the record's proposed modules that are still novel (other records may have added them meanwhile)."""
    record = result.record
    if not result.proposed:
        return record
    fresh = [m for m in result.proposed if library.is_novel(m.code, m.embedding_text, threshold=novelty_threshold)]
    added = library.add(fresh) if fresh else []
    reason = None if added else "proposed modules were added by another record first"
    return record.model_copy(update={"growth": record.growth.model_copy(update={"added": added, "reason": reason})})
