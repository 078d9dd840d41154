"""The prompt variants as ``dspy.Module``s with one output contract, so eval, compile and compare treat them alike.

Every program is called as ``program(instruction=..., entry_point=None)`` and returns a ``dspy.Prediction`` with
``response`` (the final markdown answer), ``code`` (its extracted code, or None), ``direct_response``,
``modules`` (decomposed specs), ``retrieved`` (library ids with scores) and ``notes`` (why a step was skipped,
which answer was kept).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import BaseModel

from amr_dspy.errors import ConfigError
from amr_dspy.extract import defined_functions, extract_code, hollow_functions
from amr_dspy.library.records import module_text
from amr_dspy.salvage import assert_lines, lenient_specs, strip_field_markers
from amr_dspy.testcases import AssertTest, ExecutionRequest, ExecutionResult
from signatures import (
    DirectResponse,
    ModularDecomposition,
    ModuleAwareGeneration,
    ModuleCode,
    ModuleSpec,
    RepairResponse,
    ResponseEvolution,
    UnitTests,
)

__all__ = [
    "DirectProgram",
    "CoTProgram",
    "AnsRepairProgram",
    "AMRConfig",
    "AMRProgram",
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


class _Shared:
    """A resource (library, sandbox) that copies of a program share: optimizers deep-copy programs."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self

    def executor(self) -> Executor:
        if self.value is None:
            from amr_dspy.sandbox import Sandbox

            self.value = Sandbox(workers=1)
        return self.value


class DirectProgram(dspy.Module):
    """The teacher answers the instruction once (the paper's "direct" baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict(DirectResponse)

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        notes: list[str] = []
        response = _answer(self.respond, notes, instruction=instruction).response
        return _result(response, entry_point, response, notes)


class CoTProgram(dspy.Module):
    """The teacher reasons step by step before answering (the paper's CoT baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.ChainOfThought(DirectResponse)

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        notes: list[str] = []
        answer = _answer(self.respond, notes, instruction=instruction)
        return _result(answer.response, entry_point, answer.response, notes, reasoning=answer.reasoning)


def parse_unit_tests(tests: Sequence[str]) -> list[AssertTest]:
    """One test per assert statement in the generated tests (a small teacher often puts several in one string)."""
    kept = []
    for text in tests:
        text = text.strip().strip("`").strip()
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assert):
                code = ast.get_source_segment(text, node) or ast.unparse(node)
                kept.append(AssertTest(name=f"unit_{len(kept) + 1}", code=code, time_limit_s=3.0))
    return kept


def write_unit_tests(predict: dspy.Module, *, instruction: str, code: str) -> list[AssertTest]:
    """The teacher's unit tests for ``code``, one ``AssertTest`` per assert statement.

    The 0.5B teacher often writes good asserts in a code block instead of a list of strings; those are kept.
    Any other failure (the teacher gone) propagates.
    """
    try:
        written = predict(instruction=instruction, code=code).tests or []
    except AdapterParseError as exc:
        written = assert_lines(exc.lm_response or "")
    return parse_unit_tests([str(t) for t in written])


def _run_tests(executor: Executor, code: str | None, tests: list[AssertTest], entry_point: str | None) -> ExecutionResult:
    if code is None:
        return ExecutionResult()
    return executor.run(ExecutionRequest(code=code, entry_point=entry_point, tests=tests, fail_fast=False))


def _n_passed(result: ExecutionResult) -> int:
    return sum(outcome.status == "passed" for outcome in result.outcomes)


class AnsRepairProgram(dspy.Module):
    """The paper's AnsRepair baseline: the teacher writes tests, they run, and a failing answer is repaired once."""

    def __init__(self, executor: Executor | None = None) -> None:
        super().__init__()
        self.respond = dspy.Predict(DirectResponse)
        self.write_tests = dspy.Predict(UnitTests)
        self.repair = dspy.Predict(RepairResponse)
        self._executor = _Shared(executor)

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        notes: list[str] = []
        direct = _answer(self.respond, notes, instruction=instruction).response
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


def _spec_text(spec: ModuleSpec) -> str:
    return module_text(spec.signature, spec.description, name=spec.name).strip()


def _render_specs(specs: Sequence[ModuleSpec]) -> str:
    return "\n\n".join(f'{s.signature.rstrip(":")}:\n    """{s.description}"""' for s in specs)


def _render_code(implementations: Sequence[ModuleCode]) -> str:
    return "\n\n".join(m.code.strip() for m in implementations)


def _render_retrieved(retrieved: Sequence[Retrieved]) -> str:
    return "\n\n".join(f"# verified module {r.name} (similarity {r.score:.2f})\n{r.code.strip()}" for r in retrieved)


class AMRProgram(dspy.Module):
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

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        cfg, notes = self.config, []
        direct = _answer(self.respond, notes, instruction=instruction).response

        specs: list[ModuleSpec] = []
        if cfg.decompose:
            specs = self._try(notes, "decomposition", lambda: self._decompose(instruction, direct, notes)) or []
            if not specs:
                notes.append("kept direct: no modules from decomposition")
                return _result(direct, entry_point, direct, notes)

        queries = [_spec_text(s) for s in specs] if specs else [direct]
        retrieved = self._retrieve(queries, notes) if cfg.retrieve else []

        modules_text = _render_specs(specs) if specs else ""
        if cfg.generate_modules and specs:
            implementations = self._try(notes, "module generation", lambda: self.generate(
                instruction=instruction, modules=specs, retrieved_modules=_render_retrieved(retrieved)).implementations)
            if implementations:
                modules_text = _render_code(implementations)

        evolved = self._try(notes, "evolution", lambda: _answer(
            self.evolve, notes, instruction=instruction, direct_response=direct, modules=modules_text,
            retrieved_modules=_render_retrieved(retrieved)).response)  # fmt: skip
        if not evolved:
            notes.append("kept direct: evolution produced nothing")
            return _result(direct, entry_point, direct, notes, modules=specs, retrieved=retrieved)

        final = self._select(instruction, direct, evolved, entry_point, notes) if cfg.guard else evolved
        return _result(final, entry_point, direct, notes, modules=specs, retrieved=retrieved,
                       evolved_response=evolved, kept="evolved" if final is evolved else "direct")  # fmt: skip

    def _decompose(self, instruction: str, direct: str, notes: list[str]) -> list[ModuleSpec]:
        try:
            return self.decompose(instruction=instruction, direct_response=direct).modules
        except AdapterParseError as exc:
            specs = lenient_specs(exc.lm_response or "")
            if not specs:
                raise
            notes.append(f"decomposition read leniently: {len(specs)} module(s) from a malformed answer")
            return specs

    def _try(self, notes: list[str], step: str, call: Callable[[], Any]) -> Any:
        """Run one teacher step; a teacher's bad output becomes a note, never an exception."""
        try:
            return call()
        except Exception as exc:
            notes.append(f"{step} failed: {type(exc).__name__}: {str(exc)[:160]}")
            return None

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
    """What makes an evolved answer worse than the direct one without running it (ties on unit tests hide it)."""
    if entry_point and entry_point in defined_functions(direct_code) - defined_functions(evolved_code):
        return f"does not define {entry_point}"
    hollow = hollow_functions(evolved_code) - hollow_functions(direct_code)
    return f"leaves {', '.join(sorted(hollow))} unimplemented" if hollow else None


def _amr(**preset: bool) -> Callable[..., AMRProgram]:
    def factory(library: Retriever | None = None, executor: Executor | None = None, **overrides: Any) -> AMRProgram:
        return AMRProgram(library=library, config=AMRConfig(**{**preset, **overrides}), executor=executor)

    return factory


VARIANTS: dict[str, Callable[..., dspy.Module]] = {
    "direct": DirectProgram,
    "cot": CoTProgram,
    "ans-repair": AnsRepairProgram,
    "amr": _amr(),
    "amr-paper": _amr(generate_modules=False),
    "amr-no-retrieval": _amr(generate_modules=False, retrieve=False),
    "amr-no-decomposition": _amr(generate_modules=False, decompose=False),
}
_NEEDS = {"direct": set(), "cot": set(), "ans-repair": {"executor"}}


def build_program(variant: str, **kwargs: Any) -> dspy.Module:
    """Instantiate a variant by name; options a variant does not take (library, executor, guard) are ignored."""
    try:
        factory = VARIANTS[variant]
    except KeyError:
        raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}") from None
    if variant in _NEEDS:
        kwargs = {k: v for k, v in kwargs.items() if k in _NEEDS[variant]}
    return factory(**{k: v for k, v in kwargs.items() if v is not None})
