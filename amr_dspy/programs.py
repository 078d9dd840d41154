"""The prompt variants as ``dspy.Module``s with one output contract, so eval, compile and compare treat them alike.

Every program is called as ``program(instruction=..., entry_point=None)`` and returns a ``dspy.Prediction`` with
``response`` (the final markdown answer), ``code`` (its extracted code, or None), ``direct_response``,
``modules`` (decomposed specs), ``retrieved`` (library ids with scores), ``notes`` (why a step was skipped,
which answer was kept) and ``framed_instruction`` (the text the teacher saw in place of the raw instruction).

The signature-based variants frame a completion-style instruction once, in ``_Program.forward``, so all their
predictors see the same text (``amr_dspy.framing``); ``direct-plain`` sends the one message a user would try first.

``direct-select`` and ``amr-select`` also return ``selection`` (``amr_dspy.agreement.Selection``, JSON-serialisable):
the pool of candidates (direct, evolved for amr-select, ``samples`` answers sampled through ``respond``), what each
did on the instruction's own examples (``amr_dspy.examples``) and on the teacher's unit tests, the groups of agreeing
candidates with their scores, the one chosen and whether the early exit fired. ``amr-verified`` also returns
``module_checks`` (one ``ModuleCheck`` per implemented module: its tests, outcome, whether it was regenerated).
"""

from __future__ import annotations

import ast
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, Protocol

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import BaseModel, Field

from amr_dspy.agreement import DIRECT, Candidate, CandidatePool, Kind
from amr_dspy.errors import ConfigError
from amr_dspy.examples import instruction_examples
from amr_dspy.extract import defined_functions, extract_code, hollow_functions
from amr_dspy.framing import frame_instruction, insist_on_body, plain_prompt
from amr_dspy.library.records import module_text
from amr_dspy.salvage import assert_lines, lenient_specs, strip_field_markers
from amr_dspy.testcases import AssertTest, ExecutionRequest, ExecutionResult
from signatures import (
    DirectResponse,
    ModularDecomposition,
    ModuleAwareGeneration,
    ModuleCode,
    ModuleRegeneration,
    ModuleSpec,
    RepairResponse,
    ResponseEvolution,
    UnitTests,
)

__all__ = [
    "DirectProgram",
    "DirectPlainProgram",
    "CoTProgram",
    "AnsRepairProgram",
    "AMRConfig",
    "AMRProgram",
    "SelectConfig",
    "DirectSelectProgram",
    "AMRSelectConfig",
    "AMRSelectProgram",
    "AMRVerifiedConfig",
    "AMRVerifiedProgram",
    "ModuleCheck",
    "Retrieved",
    "VARIANTS",
    "build_program",
    "parse_unit_tests",
    "write_unit_tests",
]


class Executor(Protocol):
    """What programs need from a sandbox (``amr_dspy.sandbox.Sandbox`` fits)."""

    def run(self, request: ExecutionRequest) -> ExecutionResult: ...


class Retriever(Protocol):
    """What programs need from a module library (``amr_dspy.library.Library`` fits)."""

    def search(self, queries: Sequence[str], k: int = 1) -> list[list[Any]]: ...


class Retrieved(BaseModel):
    """A verified module put in the teacher's context, and how similar its query was."""

    id: str
    name: str
    score: float
    query: str
    code: str


def _result(response: str, entry_point: str | None, direct: str, notes: list[str], **extra: Any) -> dspy.Prediction:
    return dspy.Prediction(
        response=response,
        code=extract_code(response, entry_point),
        direct_response=direct,
        notes=notes,
        **{"modules": [], "retrieved": [], **extra},
    )


def _answer(predict: dspy.Module, notes: list[str], field: str = "response", **inputs: Any) -> dspy.Prediction:
    """The predictor's answer; one with code that misses the adapter's field markers is kept whole as the response.

    A small teacher often writes its reasoning and a correct code block but forgets ``[[ ## response ## ]]``:
    dropping such an answer would score the prompt format, not the code. Without code it stays an error.
    """
    try:
        return predict(**inputs)
    except AdapterParseError as exc:
        text = strip_field_markers(exc.lm_response or "")
        if extract_code(text, None) is None:
            raise
        notes.append("answer missed the field markers; kept it whole")
        return dspy.Prediction(**{field: text, "reasoning": ""})


def _hollow(response: str, entry_point: str | None) -> set[str]:
    """The functions an answer leaves without a body when it is a stub echoed back, else nothing.

    Hollow: the entry point has no body, or (entry point unknown or missing) no function of the answer has one.
    """
    code = extract_code(response, entry_point)
    if code is None:
        return set()
    defined, hollow = defined_functions(code), hollow_functions(code)
    if entry_point in defined:
        return hollow if entry_point in hollow else set()
    return hollow if hollow == defined else set()


def _substance(response: str, entry_point: str | None) -> tuple[bool, int]:
    """Which of two hollow answers is better: one with code, then one with fewer functions left without a body."""
    return extract_code(response, entry_point) is not None, -len(_hollow(response, entry_point))


def _rollout(predict: dspy.Module) -> dict[str, int]:
    """The re-ask's own rollout id, the one after the LM's (as dspy's Refine numbers its tries).

    In dspy 3.4 the rollout id is part of the cache key at any temperature (despite dspy's warning at temperature 0),
    so the re-ask never reads another call's cache entry, also under an optimizer's rollout ids. At temperature 0
    the same prompt still decodes the same, so what changes the answer is the amended instruction.
    """
    return {"rollout_id": _lm_rollout(predict) + 1}


def _lm_rollout(predict: dspy.Module) -> int:
    """The rollout id the predictor's LM calls with (0 when it sets none)."""
    own = [p.lm for _, p in predict.named_predictors() if p.lm is not None]  # ChainOfThought keeps it inside
    lm = own[0] if own else dspy.settings.lm
    return int((getattr(lm, "kwargs", None) or {}).get("rollout_id") or 0)


def _direct_answer(predict: dspy.Module, notes: list[str], instruction: str,
                   entry_point: str | None) -> dspy.Prediction:  # fmt: skip
    """Every variant's direct step. A stub echoed back is never the direct answer: the same predictor is asked once
    more, with the instruction amended to insist on the body; if that answer is hollow too, the better one is kept."""
    first = _answer(predict, notes, instruction=instruction)
    missing = _hollow(first.response, entry_point)
    if not missing:
        return first
    left = f"the direct answer left {', '.join(sorted(missing))} without a body"
    try:
        second = _answer(predict, notes, instruction=insist_on_body(instruction, missing), config=_rollout(predict))
    except AdapterParseError:
        notes.append(f"{left}; the re-ask gave no answer, kept the first")
        return first
    if not _hollow(second.response, entry_point) and extract_code(second.response, entry_point) is not None:
        notes.append(f"{left}; re-asked once, kept the re-asked answer")
        return _retrace(second, first, instruction)
    better = _substance(second.response, entry_point) > _substance(first.response, entry_point)
    kept = "re-asked" if better else "first"
    notes.append(f"{left}; the re-asked answer has no implementation either, kept the {kept} one")
    return _retrace(second, first, instruction) if better else _retrace(first, second, instruction)


def _retrace(kept: dspy.Prediction, dropped: dspy.Prediction, instruction: str) -> dspy.Prediction:
    """Leave an optimizer's trace (its demos come from it) with the kept answer as the answer to the instruction
    itself: a stub echoed back must not become a demo, nor the amended instruction a demo's input."""
    trace = dspy.settings.trace
    if trace is not None:
        trace[:] = [(predictor, {**inputs, "instruction": instruction} if outputs is kept else inputs, outputs)
                    for predictor, inputs, outputs in trace if outputs is not dropped]  # fmt: skip
    return kept


class _Shared:
    """A resource (library, sandbox) that copies of a program share: optimizers deep-copy programs."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self

    def executor(self) -> Executor:
        if self.value is None:  # a program built without one (the Python API); commands pass the run's sandbox
            from amr_dspy.run import sandbox_limits
            from amr_dspy.sandbox import Sandbox

            sandbox = Sandbox(sandbox_limits(), workers=1)
            weakref.finalize(self, sandbox.close)  # closed with the program, or at exit
            self.value = sandbox
        executor: Executor = self.value
        return executor


class _Program(dspy.Module):  # type: ignore[misc]  # dspy ships no types
    """A variant built from DSPy signatures: ``solve`` sees the instruction framed once, as all its predictors do.

    Framing here, at the program's boundary, gives eval, compile, compare, synthesize and generate the same text;
    callers keep passing (and recording) the raw instruction.
    """

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        framed = frame_instruction(instruction, entry_point)
        prediction = self.solve(framed, entry_point)
        prediction.framed_instruction = framed
        return prediction

    def solve(self, instruction: str, entry_point: str | None) -> dspy.Prediction:
        raise NotImplementedError


class DirectProgram(_Program):
    """The teacher answers the instruction once (the paper's "direct" baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict(DirectResponse)

    def solve(self, instruction: str, entry_point: str | None) -> dspy.Prediction:
        notes: list[str] = []
        response = _direct_answer(self.respond, notes, instruction, entry_point).response
        return _result(response, entry_point, response, notes)


class DirectPlainProgram(dspy.Module):  # type: ignore[misc]  # dspy ships no types
    """The anchor: the one message a user would try first, through ``dspy.LM`` but outside any signature.

    No instructions, field markers or adapter, and no predictors (nothing to compile). A completion-style
    instruction asks to complete the stub in a fenced block; a prose one is sent with a line asking for one block.
    """

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        lm = dspy.settings.lm
        if lm is None:
            raise ConfigError("direct-plain needs a configured LM (dspy.configure(lm=...))")
        prompt = plain_prompt(instruction, entry_point)
        output = lm(prompt)[0]  # a prompt string is sent as one user message (messages= is deprecated in dspy 3.4)
        response = (output.get("text") or "") if isinstance(output, dict) else str(output)
        return _result(response, entry_point, response, [], framed_instruction=prompt)


class CoTProgram(_Program):
    """The teacher reasons step by step before answering (the paper's CoT baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.ChainOfThought(DirectResponse)

    def solve(self, instruction: str, entry_point: str | None) -> dspy.Prediction:
        notes: list[str] = []
        answer = _direct_answer(self.respond, notes, instruction, entry_point)
        return _result(answer.response, entry_point, answer.response, notes, reasoning=answer.reasoning)


def parse_unit_tests(tests: Sequence[str]) -> list[AssertTest]:
    """One test per assert statement in the generated tests (a small teacher often puts several in one string).

    An assert that calls nothing tests no code (``assert [1, 4], [3, 2] == [4, 1]`` asserts a non-empty tuple,
    which every candidate passes) and is dropped: it would only make large groups of candidates score higher.
    """
    kept: list[AssertTest] = []
    for text in tests:
        text = text.strip().strip("`").strip()
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assert) and any(isinstance(n, ast.Call) for n in ast.walk(node.test)):
                code = ast.get_source_segment(text, node) or ast.unparse(node)
                kept.append(AssertTest(name=f"unit_{len(kept) + 1}", code=code, time_limit_s=3.0))
    return kept


def write_unit_tests(predict: dspy.Module, *, instruction: str, code: str,
                     config: dict[str, Any] | None = None) -> list[AssertTest]:  # fmt: skip
    """The teacher's unit tests for ``code``, one ``AssertTest`` per assert statement (``config``: the LM call's,
    e.g. a rollout id and temperature).

    The 0.5B teacher often writes good asserts in a code block instead of a list of strings; those are kept.
    Any other failure (the teacher gone) propagates.
    """
    try:
        extra = {"config": config} if config else {}
        written = predict(instruction=instruction, code=code, **extra).tests or []
    except AdapterParseError as exc:
        written = assert_lines(exc.lm_response or "")
    return parse_unit_tests([str(t) for t in written])


def _run_tests(
    executor: Executor, code: str | None, tests: list[AssertTest], entry_point: str | None
) -> ExecutionResult:
    if code is None:
        return ExecutionResult()
    return executor.run(ExecutionRequest(code=code, entry_point=entry_point, tests=[*tests], fail_fast=False))


def _n_passed(result: ExecutionResult) -> int:
    return sum(outcome.status == "passed" for outcome in result.outcomes)


class AnsRepairProgram(_Program):
    """The paper's AnsRepair baseline: the teacher writes tests, they run, and a failing answer is repaired once."""

    def __init__(self, executor: Executor | None = None) -> None:
        super().__init__()
        self.respond = dspy.Predict(DirectResponse)
        self.write_tests = dspy.Predict(UnitTests)
        self.repair = dspy.Predict(RepairResponse)
        self._executor = _Shared(executor)

    def solve(self, instruction: str, entry_point: str | None) -> dspy.Prediction:
        notes: list[str] = []
        direct = _direct_answer(self.respond, notes, instruction, entry_point).response
        code = extract_code(direct, entry_point)
        if code is None:
            notes.append("repair skipped: the direct response has no code")
            return _result(direct, entry_point, direct, notes)
        try:
            tests = write_unit_tests(self.write_tests, instruction=instruction, code=code)
        except Exception as exc:  # a small teacher's unparsable output must not lose the answer
            notes.append(f"repair skipped: unit tests unparsable ({type(exc).__name__})")
            return _result(direct, entry_point, direct, notes)
        if not tests:
            notes.append("repair skipped: no valid unit tests")
            return _result(direct, entry_point, direct, notes)
        failure = _run_tests(self._executor.executor(), code, tests, entry_point).first_failure()
        if failure is None:
            notes.append(f"kept direct: passed all {len(tests)} unit tests")
            return _result(direct, entry_point, direct, notes)
        failing = next(t.code for t in tests if t.name == failure.name)
        try:
            repaired = _answer(self.repair, notes, "repaired_response", instruction=instruction, response=direct,
                               failure=f"{failing}\n{failure.message}")  # fmt: skip
        except Exception as exc:
            notes.append(f"repair failed ({type(exc).__name__}); kept direct")
            return _result(direct, entry_point, direct, notes)
        repaired_code = extract_code(repaired.repaired_response, entry_point)
        flaw = "has no code" if repaired_code is None else _structural_flaw(code, repaired_code, entry_point)
        if flaw:  # a small teacher often answers with the test's expected output instead of the fixed code
            notes.append(f"kept direct: the repair after failing {failure.name} {flaw}")
            return _result(direct, entry_point, direct, notes)
        notes.append(f"repaired after failing {failure.name}")
        return _result(repaired.repaired_response, entry_point, direct, notes)


class AMRConfig(BaseModel):
    """Which AMR-Evol stages run; the variants and ablations are presets of it."""

    decompose: bool = True  # False: the direct response itself is the retrieval query (amr-no-decomposition)
    retrieve: bool = True  # False: evolve from the decomposition alone (amr-no-retrieval)
    generate_modules: bool = True  # False: the paper's single ARE call (amr-paper)
    guard: bool = True  # keep the evolved answer only if it passes at least as many teacher unit tests
    k: int = 1  # retrieved modules per query (top-1 in the paper)
    min_score: float = 0.0


class ModuleCheck(BaseModel):
    """amr-verified: how one implemented module fared on the unit tests written from its spec."""

    name: str
    tests: list[str] = Field(default_factory=list)  # the tests' code
    outcome: Literal["passed", "failed", "untested"]  # untested: the teacher wrote no valid test for it
    regenerated: bool = False  # it failed once and was regenerated with the failing test and its neighbours
    failure: str | None = None  # the first failing test and its error, before the regeneration
    neighbours: list[str] = Field(default_factory=list)  # ids of the verified modules the regeneration saw


class _Modules(BaseModel):
    """The modules' text the evolution step sees, the implementations behind it and (amr-verified) their checks."""

    text: str
    implementations: list[ModuleCode] = Field(default_factory=list)
    checks: list[ModuleCheck] | None = None


class _Evolution(BaseModel):
    """What AMR's stages after the direct answer made of it; no ``response`` when they stopped (``stopped``: why)."""

    specs: list[ModuleSpec] = Field(default_factory=list)
    retrieved: list[Retrieved] = Field(default_factory=list)
    checks: list[ModuleCheck] | None = None
    response: str | None = None
    stopped: str | None = None

    def steps(self) -> dict[str, Any]:
        """The prediction's record of the stages; ``module_checks`` only where modules were verified."""
        checks = {} if self.checks is None else {"module_checks": self.checks}
        return {"modules": self.specs, "retrieved": self.retrieved, **checks}


def _attempt(notes: list[str], step: str, call: Callable[[], Any]) -> Any:
    """Run one teacher step; a teacher's bad output becomes a note, never an exception."""
    try:
        return call()
    except Exception as exc:
        notes.append(f"{step} failed: {type(exc).__name__}: {str(exc)[:160]}")
        return None


def _spec_text(spec: ModuleSpec) -> str:
    return module_text(spec.signature, spec.description, name=spec.name).strip()


def _render_specs(specs: Sequence[ModuleSpec]) -> str:
    return "\n\n".join(f'{s.signature.rstrip(":")}:\n    """{s.description}"""' for s in specs)


def _render_code(implementations: Sequence[ModuleCode]) -> str:
    return "\n\n".join(m.code.strip() for m in implementations)


def _render_retrieved(retrieved: Sequence[Retrieved]) -> str:
    return "\n\n".join(f"# verified module {r.name} (similarity {r.score:.2f})\n{r.code.strip()}" for r in retrieved)


class AMRProgram(_Program):
    """AMR-Evol: direct response → modular decomposition → retrieval → module-aware generation → evolution."""

    def __init__(
        self, library: Retriever | None = None, config: AMRConfig | None = None, executor: Executor | None = None
    ) -> None:
        super().__init__()
        self.config = config or AMRConfig()
        self._library = _Shared(library)
        self._executor = _Shared(executor)
        self.respond = dspy.Predict(DirectResponse)
        self.decompose = dspy.Predict(ModularDecomposition)
        self.generate = dspy.Predict(ModuleAwareGeneration)
        self.evolve = dspy.Predict(ResponseEvolution)
        self.write_tests = dspy.Predict(UnitTests)

    def solve(self, instruction: str, entry_point: str | None) -> dspy.Prediction:
        notes: list[str] = []
        direct = _direct_answer(self.respond, notes, instruction, entry_point).response
        evolution = self._evolve(instruction, direct, notes)
        evolved, steps = evolution.response, evolution.steps()
        if evolved is None:
            notes.append(f"kept direct: {evolution.stopped}")
            return _result(direct, entry_point, direct, notes, **steps)

        final = self._select(instruction, direct, evolved, entry_point, notes) if self.config.guard else evolved
        return _result(final, entry_point, direct, notes, **steps, evolved_response=evolved,
                       kept="evolved" if final is evolved else "direct")  # fmt: skip

    def _evolve(self, instruction: str, direct: str, notes: list[str]) -> _Evolution:
        """Modular decomposition → retrieval per module → module-aware generation → evolution of ``direct``."""
        cfg = self.config
        specs: list[ModuleSpec] = []
        if cfg.decompose:
            specs = self._try(notes, "decomposition", lambda: self._decompose(instruction, direct, notes)) or []
            if not specs:
                return _Evolution(stopped="no modules from decomposition")

        queries = [_spec_text(s) for s in specs] if specs else [direct]
        retrieved = self._retrieve(queries, notes) if cfg.retrieve else []

        modules = _Modules(text=_render_specs(specs) if specs else "")
        if cfg.generate_modules and specs:
            modules = self._implement(instruction, specs, retrieved, notes) or modules

        evolved = self._try(notes, "evolution", lambda: _answer(
            self.evolve, notes, instruction=instruction, direct_response=direct, modules=modules.text,
            retrieved_modules=_render_retrieved(retrieved)).response)  # fmt: skip
        if not evolved:
            return _Evolution(specs=specs, retrieved=retrieved, checks=modules.checks,
                              stopped="evolution produced nothing")  # fmt: skip
        return _Evolution(specs=specs, retrieved=retrieved, checks=modules.checks, response=evolved)

    def _implement(self, instruction: str, specs: list[ModuleSpec], retrieved: list[Retrieved],
                   notes: list[str]) -> _Modules | None:  # fmt: skip
        """Module-aware generation: an implementation of every module; None when the teacher gives none."""
        implementations = self._try(notes, "module generation", lambda: self.generate(
            instruction=instruction, modules=specs, retrieved_modules=_render_retrieved(retrieved)).implementations)
        if not implementations:
            return None
        return _Modules(text=_render_code(implementations), implementations=implementations)

    def _decompose(self, instruction: str, direct: str, notes: list[str]) -> list[ModuleSpec]:
        try:
            modules: list[ModuleSpec] = self.decompose(instruction=instruction, direct_response=direct).modules
            return modules
        except AdapterParseError as exc:
            specs = lenient_specs(exc.lm_response or "")
            if not specs:
                raise
            notes.append(f"decomposition read leniently: {len(specs)} module(s) from a malformed answer")
            return specs

    def _try(self, notes: list[str], step: str, call: Callable[[], Any]) -> Any:
        return _attempt(notes, step, call)

    def _retrieve(self, queries: list[str], notes: list[str]) -> list[Retrieved]:
        library = self._library.value
        if library is None:
            notes.append("retrieval skipped: no module library")
            return []
        found: dict[str, Retrieved] = {}
        for query, hits in zip(queries, library.search(queries, k=self.config.k), strict=True):
            for hit in hits:
                record = hit.record
                if hit.score >= self.config.min_score and record.id not in found:
                    found[record.id] = Retrieved(id=record.id, name=record.name, score=float(hit.score),
                                                 query=query.splitlines()[0], code=record.code)  # fmt: skip
        if not found:
            notes.append("retrieval found no module")
        return list(found.values())

    def _select(self, instruction: str, direct: str, evolved: str, entry_point: str | None, notes: list[str]) -> str:
        """The quality guard: a small teacher can make its answer worse by rewriting it."""
        direct_code, evolved_code = extract_code(direct, entry_point), extract_code(evolved, entry_point)
        if evolved_code is None:
            notes.append("kept direct: the evolved response has no code")
            return direct
        if direct_code is None:
            notes.append("kept evolved: the direct response has no code")
            return evolved
        if flaw := _structural_flaw(direct_code, evolved_code, entry_point):
            notes.append(f"kept direct: the evolved response {flaw}")
            return direct
        tests = self._try(notes, "unit tests", lambda: write_unit_tests(
            self.write_tests, instruction=instruction, code=direct_code)) or []  # fmt: skip
        if not tests:
            notes.append("kept evolved: no valid unit tests to compare with")
            return evolved
        executor = self._executor.executor()
        n_direct = _n_passed(_run_tests(executor, direct_code, tests, entry_point))
        n_evolved = _n_passed(_run_tests(executor, evolved_code, tests, entry_point))
        kept = "evolved" if n_evolved >= n_direct else "direct"
        notes.append(f"kept {kept}: unit tests passed direct {n_direct}/{len(tests)}, evolved {n_evolved}/{len(tests)}")
        return evolved if kept == "evolved" else direct


def _structural_flaw(direct_code: str, evolved_code: str, entry_point: str | None) -> str | None:
    """What makes an evolved (or repaired) answer worse than the direct one without running it (ties on unit tests
    hide it)."""
    if entry_point and entry_point in defined_functions(direct_code) - defined_functions(evolved_code):
        return f"does not define {entry_point}"
    hollow = hollow_functions(evolved_code) - hollow_functions(direct_code)
    return f"leaves {', '.join(sorted(hollow))} unimplemented" if hollow else None


# --------------------------------------------------------------------------------------------
# selection by execution agreement: direct-select, amr-select (amr_dspy.agreement)


class SelectConfig(BaseModel):
    """How the -select variants sample candidates and when they stop early."""

    # answers sampled from `respond` besides the direct one; 7 and 8 tie on mbpp+ train (45 tasks) + dev (39), 45 of
    # 84 chosen answers pass against 41 at 4 (artifacts/reports/select-{train,dev}/selection-curve.md); 8 has the
    # larger oracle (48 vs 47)
    samples: int = Field(default=8, ge=0)
    temperature: float = Field(default=0.8, gt=0.0)  # a sample at temperature 0 would repeat the direct answer
    early_exit_after: int = Field(default=2, ge=0)  # samples that must agree with a direct answer passing all tests
    # sets of unit tests the teacher writes; the first as configured, the others sampled at `temperature`
    test_sets: int = Field(default=1, ge=1)

    @property
    def first_samples(self) -> int:
        return min(self.early_exit_after, self.samples)


class _Selecting:
    """What direct-select and amr-select share: samples through ``respond`` (its demos apply), the pool of
    candidates run on the instruction's examples and the teacher's tests, and the answer it chooses."""

    respond: dspy.Predict
    write_tests: dspy.Predict
    config: SelectConfig
    _executor: _Shared
    _on_early_exit = "no more samples"

    def _start(self, instruction: str, entry_point: str | None,
               notes: list[str]) -> tuple[dict[str, dspy.Prediction], CandidatePool, str | None]:  # fmt: skip
        """The direct answer, the pool it opens with the teacher's tests and the first samples, and why the pool
        can stop there (None: it cannot). Samples are drawn only when they can change the choice."""
        first = range(1, self.config.first_samples + 1)
        answers = {DIRECT: _direct_answer(self.respond, notes, instruction, entry_point)}
        sampled = extract_code(answers[DIRECT].response, entry_point) is None  # the tests need a sample's function
        if sampled:
            answers |= self._sample(instruction, first, notes)
        pool = self._open_pool(instruction, entry_point, answers, notes)
        if pool.settled():
            return answers, pool, _settled_reason(len(pool.examples))
        if not sampled:
            more = self._sample(instruction, first, notes)
            for candidate in _candidates(more, entry_point):
                pool.add(candidate)
            answers |= more
        if pool.exits_early(self.config.first_samples):
            return answers, pool, (f"the direct answer passed every example and unit test and the first "
                                   f"{self.config.first_samples} sample(s) agree with it")  # fmt: skip
        return answers, pool, None

    def _sample(self, instruction: str, numbers: range, notes: list[str]) -> dict[str, dspy.Prediction]:
        """Answers ``sample_<number>`` drawn at temperature > 0; a sample the teacher botches is a note, no error."""
        base = _lm_rollout(self.respond)
        drawn = {f"sample_{n}": self._draw(instruction, base + n, notes) for n in numbers}
        return {name: answer for name, answer in drawn.items() if answer is not None}

    def _draw(self, instruction: str, rollout_id: int, notes: list[str]) -> dspy.Prediction | None:
        """One sample through ``respond``, with its own rollout id: dspy's cache keys on it, so samples differ."""
        config = {"rollout_id": rollout_id, "temperature": self.config.temperature}
        return _attempt(notes, f"sample (rollout {rollout_id})", lambda: _answer(
            self.respond, notes, instruction=instruction, config=config))  # fmt: skip

    def _open_pool(self, instruction: str, entry_point: str | None, answers: dict[str, dspy.Prediction],
                   notes: list[str]) -> CandidatePool:  # fmt: skip
        """The pool with ``answers`` in it, tested on the instruction's examples and tests the teacher writes now."""
        candidates = _candidates(answers, entry_point)
        code = next((c.code for c in candidates if c.code is not None), "")  # the tests' function name and parameters
        tests = self._write_tests(instruction, code, notes)
        pool = CandidatePool(self._executor.executor(), examples=instruction_examples(instruction, entry_point),
                             tests=tests, entry_point=entry_point)  # fmt: skip
        notes.append(f"candidates run on {len(pool.examples)} example(s) of the instruction and "
                     f"{len(pool.tests)} unit test(s)")  # fmt: skip
        for candidate in candidates:
            pool.add(candidate)
        return pool

    def _write_tests(self, instruction: str, code: str, notes: list[str]) -> list[AssertTest]:
        """The teacher's unit tests, ``test_sets`` sets of them: more tests tell more candidates apart, and the
        agreement among candidates discards the wrong ones. Each further set has its own rollout id (as samples do)."""
        base = _lm_rollout(self.write_tests)
        tests: list[AssertTest] = []
        for n in range(self.config.test_sets):
            config = {"rollout_id": base + n, "temperature": self.config.temperature} if n else None
            step = f"unit tests (rollout {base + n})" if n else "unit tests"
            write = partial(write_unit_tests, self.write_tests, instruction=instruction, code=code, config=config)
            tests += _attempt(notes, step, write) or []
        return [t.model_copy(update={"name": f"unit_{i}"}) for i, t in enumerate(tests, 1)]

    def _finish(self, pool: CandidatePool, answers: dict[str, dspy.Prediction], entry_point: str | None,
                notes: list[str], *, early_exit: str | None = None, **extra: Any) -> dspy.Prediction:  # fmt: skip
        selection = pool.selection(early_exit=early_exit is not None)
        if early_exit is not None:
            notes.append(f"early exit: {early_exit}; {self._on_early_exit}")
        notes.append(f"selected {selection.chosen}: {selection.reason}")
        _keep_in_trace(answers, selection.chosen)
        return _result(pool.response(selection.chosen), entry_point, answers[DIRECT].response, notes,
                       selection=selection, **extra)  # fmt: skip


def _settled_reason(examples: int) -> str:
    stated = (f"beyond the instruction's {examples} example(s), which the direct answer passes" if examples
              else "and the instruction states no example")  # fmt: skip
    return f"the teacher wrote no unit test {stated}, so no sample could change the choice"


def _candidates(answers: dict[str, dspy.Prediction], entry_point: str | None) -> list[Candidate]:
    return [_candidate(name, answer.response, entry_point) for name, answer in answers.items()]


def _candidate(name: str, response: str, entry_point: str | None) -> Candidate:
    kind: Kind = "direct" if name == DIRECT else "evolved" if name == "evolved" else "sample"
    return Candidate(name=name, kind=kind, response=response, code=extract_code(response, entry_point))


def _keep_in_trace(answers: dict[str, dspy.Prediction], chosen: str) -> None:
    """Leave an optimizer's trace one answer of ``respond``: the chosen one, or the direct one when another step's
    answer was chosen (the other steps took it as input). An unchosen sample must not become a demo."""
    trace = dspy.settings.trace
    keep = answers.get(chosen, answers[DIRECT])
    if trace is not None:
        dropped = [answer for answer in answers.values() if answer is not keep]
        trace[:] = [entry for entry in trace if not any(entry[2] is answer for answer in dropped)]


class DirectSelectProgram(_Selecting, _Program):
    """The control for amr-select: the direct answer and N samples, chosen by execution agreement; no modules.

    It shows whether AMR's modules add anything beyond sampling and testing.
    """

    def __init__(self, executor: Executor | None = None, config: SelectConfig | None = None) -> None:
        super().__init__()
        self.config = config or SelectConfig()
        self.respond = dspy.Predict(DirectResponse)
        self.write_tests = dspy.Predict(UnitTests)
        self._executor = _Shared(executor)

    def solve(self, instruction: str, entry_point: str | None) -> dspy.Prediction:
        cfg = self.config
        notes: list[str] = []
        answers, pool, early_exit = self._start(instruction, entry_point, notes)
        if early_exit is not None:
            return self._finish(pool, answers, entry_point, notes, early_exit=early_exit)

        more = self._sample(instruction, range(cfg.first_samples + 1, cfg.samples + 1), notes)
        for candidate in _candidates(more, entry_point):
            pool.add(candidate)
        return self._finish(pool, answers | more, entry_point, notes)


class AMRSelectConfig(AMRConfig, SelectConfig):
    """AMR's stages, then the choice by execution agreement among direct, evolved and sampled answers."""

    guard: bool = False  # not used: the choice by execution agreement replaces the quality guard
    # decomposition and evolution cost about four samples: at 4, amr-select spends what direct-select does at 8
    # (4,593 vs 3,712 tokens per task on mbpp+:dev), the comparison that says whether the modules add anything
    samples: int = Field(default=4, ge=0)


class AMRSelectProgram(_Selecting, AMRProgram):
    """AMR-Evol whose final answer is chosen by execution agreement from the direct, evolved and sampled answers.

    An easy task stops after the direct answer and the first samples (no decomposition) when they all agree and pass.
    """

    config: AMRSelectConfig
    _on_early_exit = "no more samples, no decomposition"

    def __init__(self, library: Retriever | None = None, config: AMRSelectConfig | None = None,
                 executor: Executor | None = None) -> None:  # fmt: skip
        super().__init__(library=library, config=config or AMRSelectConfig(), executor=executor)

    def solve(self, instruction: str, entry_point: str | None) -> dspy.Prediction:
        cfg = self.config
        notes: list[str] = []
        answers, pool, early_exit = self._start(instruction, entry_point, notes)
        if early_exit is not None:
            return self._finish(pool, answers, entry_point, notes, early_exit=early_exit)

        evolution = self._evolve(instruction, answers[DIRECT].response, notes)
        if evolution.response is None:
            notes.append(f"no evolved candidate: {evolution.stopped}")
        else:
            pool.add(_candidate("evolved", evolution.response, entry_point))
        more = self._sample(instruction, range(cfg.first_samples + 1, cfg.samples + 1), notes)
        for candidate in _candidates(more, entry_point):
            pool.add(candidate)
        return self._finish(pool, answers | more, entry_point, notes, **evolution.steps(),
                            evolved_response=evolution.response)  # fmt: skip

    def _finish(self, *args: Any, **kwargs: Any) -> dspy.Prediction:
        prediction = super()._finish(*args, **kwargs)
        prediction.kept = prediction.selection.kind  # which answer won: "direct", "evolved" or "sample"
        return prediction


# --------------------------------------------------------------------------------------------
# amr-verified: every implemented module is tested on its own before the evolution step composes them


class AMRVerifiedConfig(AMRConfig):
    """AMR's stages with module-level verification."""

    verify_k: int = Field(default=3, ge=0, le=3)  # verified neighbours a failing module is regenerated with


class _Verified(BaseModel):
    """One module after verification: its check, and its code when it passes (None: only its spec goes on)."""

    check: ModuleCheck
    code: str | None
    spec: ModuleSpec


class AMRVerifiedProgram(AMRProgram):
    """AMR-Evol with verified modules: each implemented module gets unit tests written from its spec and runs in the
    sandbox; a failing one is regenerated once with the failing test and its top-k (≤ 3) verified neighbours from
    the library. The evolution step composes the modules that pass and sees only the spec of those that still fail.
    """

    config: AMRVerifiedConfig

    def __init__(self, library: Retriever | None = None, config: AMRVerifiedConfig | None = None,
                 executor: Executor | None = None) -> None:  # fmt: skip
        super().__init__(library=library, config=config or AMRVerifiedConfig(), executor=executor)
        self.write_module_tests = dspy.Predict(UnitTests)  # its own demos: a module's spec, not the whole task
        self.regenerate = dspy.Predict(ModuleRegeneration)

    def _implement(self, instruction: str, specs: list[ModuleSpec], retrieved: list[Retrieved],
                   notes: list[str]) -> _Modules | None:  # fmt: skip
        generated = super()._implement(instruction, specs, retrieved, notes)
        if generated is None:
            return None
        by_name, current, verified = {spec.name: spec for spec in specs}, list(generated.implementations), []
        for i, module in enumerate(generated.implementations):
            spec = by_name.get(module.name) or _spec_of(module)
            verified.append(self._verify(instruction, module, spec, current, notes))
            if verified[-1].code is not None:  # later modules run beside the code that passed
                current[i] = ModuleCode(name=module.name, code=verified[-1].code)
        checks = [v.check for v in verified]
        notes.append(f"module verification: {sum(c.outcome == 'passed' for c in checks)} of {len(checks)} module(s) "
                     f"pass their tests, {sum(c.outcome == 'untested' for c in checks)} untested, "
                     f"{sum(c.regenerated for c in checks)} regenerated")  # fmt: skip
        text = "\n\n".join(v.code.strip() if v.code is not None else _render_specs([v.spec]) for v in verified)
        kept = [ModuleCode(name=v.check.name, code=v.code) for v in verified if v.code is not None]
        return _Modules(text=text, implementations=kept, checks=checks)

    def _verify(self, instruction: str, module: ModuleCode, spec: ModuleSpec, modules: list[ModuleCode],
                notes: list[str]) -> _Verified:  # fmt: skip
        brief = _spec_text(spec)
        tests = self._try(notes, f"unit tests of {module.name}", lambda: write_unit_tests(
            self.write_module_tests, instruction=brief, code=module.code)) or []  # fmt: skip
        check = ModuleCheck(name=module.name, tests=[t.code for t in tests], outcome="untested")
        if not tests:
            return _Verified(check=check, code=module.code, spec=spec)
        failure = self._module_failure(module.name, module.code, modules, tests)
        if failure is None:
            return _Verified(check=check.model_copy(update={"outcome": "passed"}), code=module.code, spec=spec)

        neighbours = self._neighbours(brief)
        rewritten = self._try(notes, f"regeneration of {module.name}", lambda: self.regenerate(
            instruction=instruction, module=spec, code=module.code, failure=failure,
            retrieved_modules=_render_retrieved(neighbours)).implementation)  # fmt: skip
        code = extract_code(rewritten or "", module.name)
        passed = code is not None and self._module_failure(module.name, code, modules, tests) is None
        check = check.model_copy(update={"outcome": "passed" if passed else "failed", "regenerated": True,
                                         "failure": failure, "neighbours": [n.id for n in neighbours]})  # fmt: skip
        return _Verified(check=check, code=code if passed else None, spec=spec)

    def _module_failure(self, name: str, code: str, modules: list[ModuleCode], tests: list[AssertTest]) -> str | None:
        """The first failing test and its error when ``code`` runs beside the other modules (it may call them)."""
        program = "\n\n".join([*(m.code for m in modules if m.name != name), code])
        result = _run_tests(self._executor.executor(), program, tests, name)
        failure = result.first_failure()
        if failure is None and result.outcomes:
            return None
        if failure is None:
            return "the tests did not run"
        failing = next((t.code for t in tests if t.name == failure.name), failure.name)
        return f"{failing}\n{failure.message or failure.status}"

    def _neighbours(self, query: str) -> list[Retrieved]:
        """The failing module's top-k verified neighbours in the library (none without one)."""
        library, cfg = self._library.value, self.config
        if library is None or not cfg.retrieve or cfg.verify_k == 0:
            return []
        hits = library.search([query], k=cfg.verify_k)[0]
        return [Retrieved(id=h.record.id, name=h.record.name, score=float(h.score), query=query.splitlines()[0],
                          code=h.record.code) for h in hits if h.score >= cfg.min_score]  # fmt: skip


def _spec_of(module: ModuleCode) -> ModuleSpec:
    """A spec for an implementation the decomposition did not list: its def line, no description."""
    header = next((line.strip() for line in module.code.splitlines() if line.lstrip().startswith("def ")), module.name)
    return ModuleSpec(name=module.name, signature=header, description="")


def _amr_verified(library: Retriever | None = None, executor: Executor | None = None,
                  **overrides: Any) -> AMRVerifiedProgram:  # fmt: skip
    return AMRVerifiedProgram(library=library, config=AMRVerifiedConfig(**overrides), executor=executor)


def _amr(**preset: bool) -> Callable[..., AMRProgram]:
    def factory(library: Retriever | None = None, executor: Executor | None = None, **overrides: Any) -> AMRProgram:
        return AMRProgram(library=library, config=AMRConfig(**{**preset, **overrides}), executor=executor)

    return factory


def _direct_select(executor: Executor | None = None, **settings: Any) -> DirectSelectProgram:
    return DirectSelectProgram(executor=executor, config=SelectConfig(**settings))


def _amr_select(library: Retriever | None = None, executor: Executor | None = None, guard: bool | None = None,
                **settings: Any) -> AMRSelectProgram:  # fmt: skip
    del guard  # eval and compile pass --no-guard to every AMR variant; here the choice by agreement replaces it
    return AMRSelectProgram(library=library, config=AMRSelectConfig(**settings), executor=executor)


VARIANTS: dict[str, Callable[..., dspy.Module]] = {
    "direct": DirectProgram,
    "cot": CoTProgram,
    "ans-repair": AnsRepairProgram,
    "amr": _amr(),
    "amr-paper": _amr(generate_modules=False),
    "amr-no-retrieval": _amr(generate_modules=False, retrieve=False),
    "amr-no-decomposition": _amr(generate_modules=False, decompose=False),
    "direct-plain": DirectPlainProgram,
    "direct-select": _direct_select,
    "amr-select": _amr_select,
    "amr-verified": _amr_verified,
}
_SELECT = set(SelectConfig.model_fields)
_NEEDS = {"direct": set(), "cot": set(), "ans-repair": {"executor"}, "direct-plain": set(),
          "direct-select": {"executor", *_SELECT}}  # fmt: skip


def build_program(variant: str, **kwargs: Any) -> dspy.Module:
    """Instantiate a variant by name; options a variant does not take (library, executor, guard) are ignored."""
    try:
        factory = VARIANTS[variant]
    except KeyError:
        raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}") from None
    if variant in _NEEDS:
        kwargs = {k: v for k, v in kwargs.items() if k in _NEEDS[variant]}
    return factory(**{k: v for k, v in kwargs.items() if v is not None})
