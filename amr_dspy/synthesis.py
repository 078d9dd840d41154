"""Synthesis, the main job: every input instruction becomes one training record with a verified response.

Each record is made by ``synthesize_record``, a pure function of (instruction, program, library snapshot):
it runs the program, chooses the answer to keep, checks it for benchmark overlap, verifies it by execution
agreement among the candidate answers on the instruction's examples and teacher-written unit tests in the sandbox
(``_judge``) and proposes the novel function modules of a verified answer, writing nothing. The answer kept must
define the requested entry point (the item's, else the one the instruction names, else the direct answer's main
function, ``amr_dspy.entry_points``); a final answer that does not, or that shares the leading agreement group with
the direct answer, or is outside it while the direct answer is in it, loses to the direct answer; what the entry
point never reaches is pruned, and an answer that pruning breaks loses too.
``merge_record`` adds the proposals to the library (the library serializes writes). ``run_synthesis`` drives
the two with N records in flight; a distributed engine can call the same two functions on its own workers.

Durability: ``records.jsonl`` is the commit log. A finished record is appended with one ``write`` of a full
line followed by ``fsync``; when a record added modules, the library is saved (atomically) *before* its line
is written, so the library on disk always holds the modules of every committed record. A ``kill -9`` loses
only the records in flight; ``--resume`` drops a torn last line and skips the ids already committed.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.table import Table

from amr_dspy.agreement import Candidate, CandidatePool, CandidateRun, Selection, choose, contradicted, observed
from amr_dspy.decontam import DecontamConfig, Verdict
from amr_dspy.entry_points import (
    defined_names,
    named_entry_points,
    prune_response,
    prune_unreachable,
    referenced_names,
    requested_entry_point,
)
from amr_dspy.errors import ConfigError, DataError, TeacherUnavailableError
from amr_dspy.extract import extract_code
from amr_dspy.library import Library, ModuleRecord, Provenance
from amr_dspy.rows import file_rows
from amr_dspy.testcases import AssertTest, ExecutionRequest, ExecutionResult

if TYPE_CHECKING:
    import dspy

    from amr_dspy.decontam import Decontaminator
    from amr_dspy.programs import Executor

__all__ = [
    "DEFAULT_MAX_INSTRUCTION_CHARS",
    "InputItem",
    "InvalidRow",
    "InputBatch",
    "read_inputs",
    "Usage",
    "Timings",
    "RetrievedModule",
    "ModuleSpecRecord",
    "DiscardedTest",
    "AgreementEvidence",
    "RecordVerification",
    "Growth",
    "SynthesisRecord",
    "SynthesisSettings",
    "RecordResult",
    "synthesize_record",
    "merge_record",
    "RecordLog",
    "SynthesisJob",
    "Prepared",
    "ProgressSink",
    "RunSummary",
    "YieldReport",
    "prepare",
    "execute",
    "open_run",
    "run_synthesis",
    "load_program",
    "artifact_sha256",
    "check_teacher",
    "write_exports",
    "read_records",
    "summary_table",
]

DEFAULT_MAX_INSTRUCTION_CHARS = 16_000  # about 4k tokens: the local teacher's context must also hold the answer
RECORDS, LIBRARY_DIR, RUN_FILE, SUMMARY_FILE = "records.jsonl", "library", "run.json", "summary.json"
SFT_FILE, DECONTAM_FILE = "sft.jsonl", "decontamination.jsonl"
DATASET_FILE = "dataset/data/train-00000-of-00001.parquet"  # datasets.load_dataset("OUT/dataset") finds it


# ================================================================================================ inputs


class InputItem(BaseModel):
    """One instruction to synthesize a record for."""

    id: str
    instruction: str
    where: str  # file:line (or dataset row) it came from
    task_id: str | None = None  # a benchmark task id when the input is a benchmark
    entry_point: str | None = None


class InvalidRow(BaseModel):
    where: str
    message: str  # the one-line error, naming file and line


class InputBatch(BaseModel):
    name: str  # what the provenance calls the input, e.g. "sample_instructions.jsonl" or "hf:NAME:SPLIT"
    spec: str
    rows: int  # rows read, valid or not
    items: list[InputItem]
    invalid: list[InvalidRow] = Field(default_factory=list)


class _Fields(BaseModel):
    instruction: str = "instruction"
    input: str | None = "input"  # appended to the instruction when present (Alpaca style)
    id: str | None = None  # default: "<file stem>/<row index>"
    max_chars: int = Field(DEFAULT_MAX_INSTRUCTION_CHARS, ge=1)


def read_inputs(
    spec: str,
    *,
    instruction_field: str = "instruction",
    input_field: str | None = "input",
    id_field: str | None = None,
    max_chars: int = DEFAULT_MAX_INSTRUCTION_CHARS,
    skip_invalid: bool = False,
    limit: int | None = None,
) -> InputBatch:
    """Read ``FILE`` (.jsonl, .json list, .parquet), ``hf:NAME[:SPLIT]`` or a benchmark spec into input items.

    A bad row (invalid JSON, non-UTF-8 bytes, a missing, empty or over-long instruction, a duplicate id) raises
    DataError naming the file and line, or with ``skip_invalid`` is counted in ``invalid`` and skipped.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    fields = _Fields(instruction=instruction_field, input=input_field, id=id_field, max_chars=max_chars)
    from amr_dspy.tasks import benchmark_name

    spec = spec.strip()
    if benchmark_name(spec) is not None:  # mbpp+[stub][:split], humaneval+, bigcodebench[-complete][:split][@subset]
        return _benchmark_inputs(spec, limit)
    if spec.startswith("hf:"):
        name, _, split = spec[3:].partition(":")
        if not name:
            raise ConfigError("hf: input needs a dataset name, as in hf:NAME[:SPLIT]")
        split = split or "train"
        rows, label, stem = _hf_rows(name, split), f"hf:{name}:{split}", name.rstrip("/").rsplit("/", 1)[-1]
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"--input {spec}: no such file (expected a .jsonl, .json or .parquet file or hf:NAME)")
        rows, label, stem = file_rows(path), path.name, path.stem
    batch = InputBatch(name=label, spec=spec, rows=0, items=[])
    seen: set[str] = set()
    for index, (where, row) in enumerate(rows):
        batch.rows += 1
        try:
            item = _item(where, index, row, fields, stem)
            if item.id in seen:
                raise DataError(f"{where}: duplicate id {item.id!r}")
        except DataError as exc:
            if not skip_invalid:
                raise
            batch.invalid.append(InvalidRow(where=where, message=str(exc)))
            continue
        seen.add(item.id)
        batch.items.append(item)
        if limit is not None and len(batch.items) >= limit:
            break
    return batch


def _hf_rows(name: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many unrelated types (network, config, missing split)
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"hf:{name}:{split}: cannot load dataset ({type(exc).__name__}: {message})") from exc
    return ((f"hf:{name}:{split} row {i + 1}", row) for i, row in enumerate(ds))


def _item(where: str, index: int, row: Any, fields: _Fields, stem: str) -> InputItem:
    if isinstance(row, DataError):
        raise row
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    instruction = row.get(fields.instruction)
    if instruction is not None and not isinstance(instruction, str):
        raise DataError(f"{where}: field {fields.instruction!r} is a {type(instruction).__name__}, not a string")
    if not instruction or not instruction.strip():
        raise DataError(f"{where}: missing or empty field {fields.instruction!r}")
    extra = row.get(fields.input) if fields.input else None
    if isinstance(extra, str) and extra.strip():
        instruction = f"{instruction}\n{extra}"
    if len(instruction) > fields.max_chars:
        raise DataError(
            f"{where}: instruction is {len(instruction):,} characters, over the limit of {fields.max_chars:,} "
            "(--max-instruction-chars)"
        )
    item_id = f"{stem}/{index}"
    if fields.id:
        value = row.get(fields.id)
        if value is None or str(value).strip() == "":
            raise DataError(f"{where}: missing or empty id field {fields.id!r}")
        item_id = str(value)
    return InputItem(id=item_id, instruction=instruction, where=where)


def _benchmark_inputs(spec: str, limit: int | None) -> InputBatch:
    from amr_dspy.tasks import load_tasks

    tasks = load_tasks(spec, limit=limit)
    items = [InputItem(id=t.task_id, instruction=t.instruction, where=f"{spec} {t.task_id}", task_id=t.task_id,
                       entry_point=t.entry_point) for t in tasks]  # fmt: skip
    return InputBatch(name=spec, spec=spec, rows=len(items), items=items)


# ================================================================================================ records


class Usage(BaseModel):
    lm_calls: int = 0  # every LM call, cache hits included
    uncached_lm_calls: int = 0  # calls that reported usage (cache hits report none and count 0 tokens)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Timings(BaseModel):
    started_at: datetime
    program_s: float = 0.0
    verify_s: float = 0.0
    total_s: float = 0.0
    teacher_s: float = 0.0  # waiting on LM calls, program and verification (a cache hit counts its lookup)


class RetrievedModule(BaseModel):
    id: str
    name: str
    score: float


class ModuleSpecRecord(BaseModel):
    name: str
    signature: str
    description: str


VerificationStatus = Literal["passed", "failed", "no_code", "no_tests", "error", "skipped"]
EntryPointSource = Literal["item", "instruction", "direct answer"]


class DiscardedTest(BaseModel):
    """A teacher test the leading agreement group contradicts: not counted for or against the answer."""

    test: str  # its code
    observed: str  # what every member of the leading group did on it: "returned VALUE" or "raised TYPE"


class AgreementEvidence(BaseModel):
    """What verification by agreement saw, kept on the record for an audit (``_judge``).

    ``pool`` is every candidate run on the instruction's examples and the teacher's tests, with what each did on
    each of them, the groups and their scores, and the leading group's first member as ``chosen``.
    """

    pool: Selection
    tests_from: Literal["record", "selection"]  # tests the teacher wrote for the record, or the program's selection's
    leading: list[str] = Field(default_factory=list)  # the leading group's members
    answer: str | None = None  # the candidate holding the record's answer (before pruning)
    kept: list[str] = Field(default_factory=list)  # the teacher tests the answer is judged on, besides the examples
    discarded: list[DiscardedTest] = Field(default_factory=list)


class RecordVerification(BaseModel):
    """The kept answer's verification: ``agreement`` (records made before it say ``unit_tests``).

    ``passed``: the answer is in the leading agreement group and passes every example of the instruction and every
    teacher test the leading group does not contradict.
    """

    status: VerificationStatus
    method: Literal["unit_tests", "agreement"] = "agreement"
    n_tests: int = 0  # the tests the answer was judged on: the instruction's examples and the teacher tests kept
    n_passed: int = 0
    n_examples: int = 0  # of n_tests, the instruction's own examples
    n_discarded: int = 0  # teacher tests the leading group contradicts (not in n_tests)
    failed_test: str | None = None
    message: str | None = None
    evidence: AgreementEvidence | None = None


class Growth(BaseModel):
    candidates: int = 0  # novel modules of the verified code (against the snapshot)
    proposed: int = 0  # records handed to the merge step
    added: list[str] = Field(default_factory=list)  # library ids added by the merge step
    reason: str | None = None  # why nothing was proposed or added


class SynthesisRecord(BaseModel):
    """One line of ``records.jsonl``."""

    id: str
    instruction: str  # as the input gave it (the SFT prompt)
    framed_instruction: str | None = None  # what the teacher saw instead, when the program framed it
    source: str  # the input's name
    task_id: str | None = None
    direct_response: str | None = None
    modules: list[ModuleSpecRecord] = Field(default_factory=list)
    retrieved: list[RetrievedModule] = Field(default_factory=list)
    evolved_response: str | None = None  # the evolution step's answer (AMR variants), kept or not
    response: str  # the final answer: the training target
    kept: str | None = None  # "evolved", "direct" or "fallback"
    code: str | None = None
    entry_point: str | None = None  # the function the answer must define: the item's, or derived
    entry_point_source: EntryPointSource | None = None
    pruned: list[str] = Field(default_factory=list)  # definitions the entry point never reaches, cut from the answer
    notes: list[str] = Field(default_factory=list)
    verification: RecordVerification
    contamination: Verdict | None = None  # the response's benchmark-overlap check
    growth: Growth = Field(default_factory=Growth)
    teacher: str
    variant: str
    artifact: str | None = None
    artifact_sha256: str | None = None
    usage: Usage = Field(default_factory=Usage)
    timings: Timings
    attempts: int = 1
    fallback: bool = False  # the program failed past its retries; ``response`` is the best one seen
    error: str | None = None

    @property
    def verified(self) -> bool:
        return self.verification.status == "passed"

    @property
    def contaminated(self) -> bool:
        return self.contamination is not None and self.contamination.contaminated


class SynthesisSettings(BaseModel):
    """What every record of a run shares."""

    source: str  # the input's name
    teacher: str
    variant: str
    artifact: str | None = None
    artifact_sha256: str | None = None
    retries: int = Field(2, ge=0)  # program re-runs after a failure (the LM retries transport faults itself)
    backoff_s: float = Field(2.0, ge=0.0)  # before re-run k: backoff_s * 2**(k-1)
    verify: bool = True
    grow: bool = True

    @property
    def provenance_source(self) -> str:
        return f"synthesize:{self.source}"


class RecordResult(BaseModel):
    """A record and the module records it proposes for the library (not yet added)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    record: SynthesisRecord
    proposed: list[ModuleRecord] = Field(default_factory=list)


# ================================================================================================ one record


class _Meter:
    """Counts LM calls and the seconds spent waiting on them, and remembers the latest response any step produced
    (the fallback answer)."""

    def __init__(self) -> None:
        from dspy.utils.callback import BaseCallback

        meter = self

        class Callback(BaseCallback):  # type: ignore[misc]  # dspy ships no types
            def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
                with meter.lock:
                    meter.calls += 1
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
        self.lock = threading.Lock()
        self.calls = 0
        self.started: dict[str, float] = {}
        self.teacher_s = 0.0
        self.best: str | None = None
        self.tracker: Any = None

    def usage(self) -> Usage:
        entries = [e for batch in (self.tracker.usage_data.values() if self.tracker else []) for e in batch]
        return Usage(
            lm_calls=self.calls,
            uncached_lm_calls=len(entries),
            prompt_tokens=sum(int(e.get("prompt_tokens") or 0) for e in entries),
            completion_tokens=sum(int(e.get("completion_tokens") or 0) for e in entries),
        )


@contextmanager
def _metered() -> Iterator[_Meter]:
    import dspy
    from dspy.utils.usage_tracker import track_usage

    meter = _Meter()
    with dspy.context(callbacks=[*dspy.settings.callbacks, meter.callback]), track_usage() as tracker:
        meter.tracker = tracker
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
    survivors = [t for i, t in enumerate(pool.tests) if i not in dropped]
    whose = "the program's selection's" if evidence.source == "selection" else "written for the answer"
    notes.append(f"verification by agreement: {len(runs)} candidate(s) on {len(pool.examples)} example(s) of the "
                 f"instruction and {len(pool.tests)} unit test(s) ({whose}); leading {reason}")  # fmt: skip
    if len(marked) == 2:
        notes.append(_choice_note(marked[0], marked[1], [_run(runs, name) for name in names]))
    if discarded:
        listed = "; ".join(f"{d.test.splitlines()[-1]} ({d.observed})" for d in discarded)
        notes.append(f"discarded {len(discarded)} teacher test(s) contradicted by the leading group: {listed}")
    record = AgreementEvidence(pool=pool.selection(), tests_from=evidence.source, leading=members,
                               answer=names[marked.index(kept)], kept=[t.code for t in survivors],
                               discarded=discarded)  # fmt: skip
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
        return RecordVerification(status="no_tests", message="no unit test left that exercises the entry point",
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
        response=answer.response,
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


# ================================================================================================ the records log


class RecordLog:
    """``records.jsonl``: read on open (dropping a torn last line), appended one fsynced line per record."""

    def __init__(self, path: Path, records: list[SynthesisRecord], *, repaired_bytes: int = 0) -> None:
        self.path = path
        self.repaired_bytes = repaired_bytes
        self._records = records
        self._ids = {r.id for r in records}
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def open(cls, path: Path) -> RecordLog:
        repaired = _repair_tail(path) if path.exists() else 0
        return cls(path, read_records(path) if path.exists() else [], repaired_bytes=repaired)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[SynthesisRecord]:
        with self._lock:
            return list(self._records)

    def append(self, record: SynthesisRecord) -> None:
        data = (record.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            if record.id in self._ids:
                raise DataError(f"{self.path}: record {record.id!r} is already committed")
            view = memoryview(data)
            while view:  # one write for a regular file; the loop only guards against a short write
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
            self._records.append(record)
            self._ids.add(record.id)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _repair_tail(path: Path) -> int:
    """Cut a last line without its newline (a write torn by a kill); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        keep = 0
        chunk = 1 << 16
        pos = size
        while pos > 0:  # find the last newline from the end without reading a large file whole
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            index = block.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                break
            pos = start
        if keep == size:
            return 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def read_records(path: Path) -> list[SynthesisRecord]:
    """Every record of a ``records.jsonl``; DataError naming the line for a corrupt record or a duplicate id."""
    records: list[SynthesisRecord] = []
    seen: set[str] = set()
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = SynthesisRecord.model_validate_json(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "(line)"
                raise DataError(f"{path}:{lineno}: corrupt record ({where}: {first['msg']})") from None
            if record.id in seen:
                raise DataError(f"{path}:{lineno}: second record for id {record.id!r}")
            seen.add(record.id)
            records.append(record)
    return records


# ================================================================================================ the run


class SynthesisJob(BaseModel):
    """Everything a synthesis run is asked to do (the CLI's options)."""

    input: str
    out: Path
    variant: str = "amr"
    artifact: Path | None = None
    seed_library: Path | None = None  # copied to OUT/library for a new run; default: resources.default_library()
    # False: no library at all (--no-library): no retrieval, no OUT/library, so no growth either
    use_library: bool = True
    instruction_field: str = "instruction"
    input_field: str | None = "input"
    id_field: str | None = None
    max_instruction_chars: int = Field(DEFAULT_MAX_INSTRUCTION_CHARS, ge=1)
    skip_invalid: bool = False
    limit: int | None = Field(None, ge=1)
    concurrency: int = Field(1, ge=1)
    resume: bool = False
    grow: bool = True
    guard: bool = True
    samples: int | None = Field(None, ge=0)  # the -select variants' samples (None: SelectConfig's default)
    verify: bool = True
    retries: int = Field(2, ge=0)
    backoff_s: float = Field(2.0, ge=0.0)
    sft_all: bool = False
    decontaminate: bool = True
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    sandbox_workers: int = Field(2, ge=1)


class Prepared(BaseModel):
    """What ``prepare`` checked before any work: the inputs and the state of the output directory."""

    batch: InputBatch
    existing_records: int = 0


class ProgressSink(Protocol):
    def start(self, total: int, done: int) -> None: ...

    def advance(self, record: SynthesisRecord) -> None: ...


def prepare(job: SynthesisJob) -> Prepared:
    """Read and check the inputs and the output directory, and apply the leakage guard; writes nothing."""
    from amr_dspy.growth import check_growth_allowed

    batch = read_inputs(job.input, instruction_field=job.instruction_field, input_field=job.input_field,
                        id_field=job.id_field, max_chars=job.max_instruction_chars, skip_invalid=job.skip_invalid,
                        limit=job.limit)  # fmt: skip
    if job.grow:
        try:
            check_growth_allowed(Provenance(source=f"synthesize:{batch.name}"))
        except ConfigError as exc:
            raise ConfigError(f"{exc}; synthesize from non-benchmark instructions, or pass --no-grow") from None
    existing = _existing_run(job.out)
    if existing is not None and not job.resume:
        raise ConfigError(
            f"{job.out} already holds a synthesis run ({existing} records); pass --resume to continue it "
            "or choose another --out"
        )
    if existing is not None:
        _check_same_input(job.out / RUN_FILE, batch.spec)
        _check_same_library(job)
    if not job.use_library and job.seed_library is not None:
        raise ConfigError(f"--library {job.seed_library} and --no-library: give one of them")
    seed = _seed(job)
    if _keeps_library(job) and not (job.out / LIBRARY_DIR).is_dir() and not (seed / "manifest.json").is_file():
        raise ConfigError(f"--library {seed}: not a function-module library (manifest.json is missing)")
    load_program(job.variant, job.artifact, samples=job.samples)  # an unknown variant or artifact fails here, early
    return Prepared(batch=batch, existing_records=existing or 0)


def _check_same_input(run_file: Path, spec: str) -> None:
    """Record ids name rows of one input; resuming on another input would skip the wrong rows."""
    try:
        started_on = json.loads(run_file.read_text(encoding="utf-8")).get("input")
    except (OSError, ValueError):
        return  # killed before run.json was written: nothing to compare
    if started_on and started_on != spec:
        raise ConfigError(
            f"{run_file.parent} was started on --input {started_on}, not {spec}; resume it with the same input"
        )


def _seed(job: SynthesisJob) -> Path:
    from amr_dspy.resources import default_library

    return job.seed_library or default_library()


def _keeps_library(job: SynthesisJob) -> bool:
    """Whether the run keeps OUT/library: never with --no-library; else when its variant retrieves, it grows the
    library, or it already has one (a resumed run goes on with its library)."""
    from amr_dspy.resources import retrieves

    return job.use_library and (job.grow or (job.out / LIBRARY_DIR).is_dir() or retrieves(job.variant))


def _check_same_library(job: SynthesisJob) -> None:
    """Every record of a run retrieves from its library, or none does: resuming cannot switch retrieval."""
    from amr_dspy.resources import retrieves

    if not job.use_library and (job.out / LIBRARY_DIR).is_dir():
        raise ConfigError(f"{job.out} was started with a module library; resume it without --no-library")
    if job.use_library and retrieves(job.variant) and _started_without_library(job.out / RUN_FILE):
        raise ConfigError(f"{job.out} was started without a module library; resume it with --no-library")


def _started_without_library(run_file: Path) -> bool:
    try:
        meta = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # killed before run.json was written: nothing to compare
    return "seed_library" in meta and meta["seed_library"] is None


def _existing_run(out: Path) -> int | None:
    """The number of committed lines of a run in ``out``, or None when ``out`` holds no run."""
    records = out / RECORDS
    if not (records.exists() or (out / RUN_FILE).exists() or (out / LIBRARY_DIR).exists()):
        return None
    if not records.exists():
        return 0
    with records.open("rb") as fh:
        return sum(1 for line in fh if line.endswith(b"\n") and line.strip())


def open_run(job: SynthesisJob, batch: InputBatch, *, teacher: str) -> tuple[RecordLog, Library | None]:
    """Create (or reopen, on resume) the output directory: the library copy (None when the run keeps no library),
    ``run.json`` and the records log."""
    out = job.out
    keeps = _keeps_library(job)
    out.mkdir(parents=True, exist_ok=True)
    library_dir = out / LIBRARY_DIR
    if keeps and not library_dir.is_dir():
        _copy_library(_seed(job), library_dir)
    run_file = out / RUN_FILE
    if not run_file.exists():
        meta = {"input": batch.spec, "variant": job.variant, "artifact": str(job.artifact) if job.artifact else None,
                "teacher": teacher, "seed_library": str(_seed(job)) if keeps else None,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        _write_atomic(run_file, json.dumps(meta, indent=2).encode())
    log = RecordLog.open(out / RECORDS)
    return log, Library.open(library_dir) if keeps else None


def _copy_library(seed: Path, target: Path) -> None:
    """Copy the seed library's files (never touching the seed) and move the copy into place in one rename."""
    Library.open(seed)  # a clear LibraryError for a broken seed before anything is copied
    staging = target.with_name(f".{target.name}.copy")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(seed, staging, ignore=shutil.ignore_patterns(".*"))
    os.replace(staging, target)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_synthesis(
    items: Sequence[InputItem],
    *,
    program: dspy.Module,
    library: Library | None,
    executor: Executor,
    settings: SynthesisSettings,
    log: RecordLog,
    concurrency: int = 1,
    decontaminator: Decontaminator | None = None,
    progress: ProgressSink | None = None,
) -> list[SynthesisRecord]:
    """Synthesize every item whose id ``log`` lacks, ``concurrency`` at a time; returns this run's records."""
    todo = [item for item in items if item.id not in log]
    if progress is not None:
        progress.start(total=len(items), done=len(items) - len(todo))
    made: list[SynthesisRecord] = []
    queue = iter(todo)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="synthesize") as pool:

        def submit() -> Future[RecordResult] | None:
            item = next(queue, None)
            if item is None:
                return None
            context = contextvars.copy_context()  # the teacher and adapter set by dspy.context in this thread
            return pool.submit(context.run, synthesize_record, item, program, library, settings=settings,
                               executor=executor, decontaminator=decontaminator)  # fmt: skip

        pending = {f for f in (submit() for _ in range(concurrency)) if f is not None}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record = _commit(future.result(), library, log)
                    made.append(record)
                    if progress is not None:
                        progress.advance(record)
                    nxt = submit()
                    if nxt is not None:
                        pending.add(nxt)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return made


def _commit(result: RecordResult, library: Library | None, log: RecordLog) -> SynthesisRecord:
    """Merge, then save the library, then append the record: the record line is the commit point."""
    record = merge_record(library, result) if library is not None and result.proposed else result.record
    if library is not None and record.growth.added:
        library.save()
    log.append(record)
    return record


def execute(
    job: SynthesisJob,
    prepared: Prepared,
    *,
    teacher: str,
    progress: ProgressSink | None = None,
    status: Callable[[str], Any] | None = None,
) -> RunSummary:
    """Run a prepared job with the DSPy LM configured in the caller's context (see ``teacher_session``)."""
    from amr_dspy.sandbox import Sandbox

    say = status or (lambda _message: None)
    started = time.perf_counter()
    batch = prepared.batch
    log, library = open_run(job, batch, teacher=teacher)
    library_start = len(library) if library is not None else 0
    try:
        decontaminator, items, dropped = _decontaminate(job, batch.items, say)
        with Sandbox(workers=job.sandbox_workers) as sandbox:
            say("loading the program")
            program, digest = load_program(job.variant, job.artifact, library=library, executor=sandbox,
                                           guard=job.guard, samples=job.samples)  # fmt: skip
            settings = SynthesisSettings(source=batch.name, teacher=teacher, variant=job.variant,
                                         artifact=str(job.artifact) if job.artifact else None, artifact_sha256=digest,
                                         retries=job.retries, backoff_s=job.backoff_s, verify=job.verify,
                                         grow=job.grow)  # fmt: skip
            loop_started = time.perf_counter()
            made = run_synthesis(items, program=program, library=library, executor=sandbox, settings=settings,
                                 log=log, concurrency=job.concurrency, decontaminator=decontaminator,
                                 progress=progress)  # fmt: skip
            loop_s = time.perf_counter() - loop_started
        if library is not None and library.stats().unsaved:  # additions are saved before their record; a safety net
            library.save()
        records = log.records
    finally:
        log.close()
    wall_s = time.perf_counter() - started
    exports = write_exports(job.out, records, sft_all=job.sft_all)
    summary = _summarize(job, batch, records, made, dropped, exports, wall_s=wall_s, loop_s=loop_s, teacher=teacher,
                         digest=digest, library_start=library_start,
                         library_end=len(library) if library is not None else 0,
                         repaired=log.repaired_bytes)  # fmt: skip
    _write_atomic(job.out / SUMMARY_FILE, (summary.model_dump_json(indent=2) + "\n").encode())
    return summary


def _decontaminate(
    job: SynthesisJob, items: list[InputItem], say: Callable[[str], Any]
) -> tuple[Decontaminator | None, list[InputItem], list[dict[str, Any]]]:
    """The checker, the items that pass it, and a report line per dropped instruction (also written to a file)."""
    from amr_dspy.decontam import Decontaminator, teacher_judge

    if not job.decontaminate:
        return None, items, []
    say("decontamination: loading benchmarks and embeddings")
    judge = teacher_judge() if job.decontam.judge_threshold is not None else None
    checker = Decontaminator.from_config(job.decontam, judge=judge)
    say(f"decontamination: checking {len(items)} instructions")
    verdicts = checker.check_instructions([item.instruction for item in items])
    kept, dropped = [], []
    for item, verdict in zip(items, verdicts, strict=True):
        if verdict.contaminated:
            dropped.append({"id": item.id, "where": item.where, **verdict.model_dump(mode="json")})
        else:
            kept.append(item)
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dropped)
    _write_atomic(job.out / DECONTAM_FILE, lines.encode("utf-8"))
    return checker, kept, dropped


# ================================================================================================ program, teacher


def artifact_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_program(variant: str, artifact: Path | None, **build_kwargs: Any) -> tuple[dspy.Module, str | None]:
    """Build ``variant`` (``build_kwargs``: library, executor, guard, samples) and load the compiled ``artifact``
    into it; returns the program and the artifact's sha256."""
    from amr_dspy.programs import build_program

    program = build_program(variant, **build_kwargs)
    if artifact is None:
        return program, None
    if not artifact.is_file():
        raise ConfigError(f"--program {artifact}: no such file")
    from optimize.artifact import load_artifact

    load_artifact(artifact, variant, program=program)
    return program, artifact_sha256(artifact)


def check_teacher(lm: dspy.LM, name: str) -> None:
    """One tiny uncached call without retries; TeacherUnavailableError (one line) when the teacher does not answer."""
    probe = lm.copy(num_retries=0, cache=False)
    try:
        probe("Reply with the word OK.")
    except Exception as exc:  # LiteLLM/DSPy raise many types; the user needs one line
        where = getattr(lm, "kwargs", {}).get("api_base") or getattr(lm, "api_base", None)
        at = f" at {where}" if where else ""
        raise TeacherUnavailableError(f"teacher {name}{at} is unreachable: {_one_line(exc, 200)}") from None


# ================================================================================================ exports


def _dataset_features() -> Any:
    from datasets import Features, Value

    string, integer, number = Value("string"), Value("int64"), Value("float64")
    return Features({
        "id": string, "instruction": string, "response": string, "code": string, "source": string,
        "direct_response": string, "evolved_response": string, "kept": string, "notes": [string],
        "entry_point": string, "entry_point_source": string, "pruned": [string],
        "modules": [{"name": string, "signature": string, "description": string}],
        "retrieved": [{"id": string, "name": string, "score": number}],
        "verified": Value("bool"), "verification_status": string, "verification_n_tests": integer,
        "verification_n_passed": integer, "verification_method": string, "verification_n_examples": integer,
        "verification_n_discarded": integer, "verification_discarded": [string], "verification_leading": [string],
        "verification_evidence": string, "library_added": [string], "teacher": string, "variant": string,
        "artifact_sha256": string, "lm_calls": integer, "uncached_lm_calls": integer, "prompt_tokens": integer,
        "completion_tokens": integer, "total_s": number, "teacher_s": number, "attempts": integer,
        "fallback": Value("bool"), "error": string,
    })  # fmt: skip


def _dataset_row(r: SynthesisRecord) -> dict[str, Any]:
    v, evidence = r.verification, r.verification.evidence
    return {
        "id": r.id, "instruction": r.instruction, "response": r.response, "code": r.code, "source": r.source,
        "direct_response": r.direct_response, "evolved_response": r.evolved_response, "kept": r.kept,
        "notes": r.notes, "entry_point": r.entry_point, "entry_point_source": r.entry_point_source,
        "pruned": r.pruned, "modules": [m.model_dump() for m in r.modules],
        "retrieved": [m.model_dump() for m in r.retrieved], "verified": r.verified,
        "verification_status": r.verification.status, "verification_n_tests": r.verification.n_tests,
        "verification_n_passed": r.verification.n_passed, "verification_method": v.method,
        "verification_n_examples": v.n_examples, "verification_n_discarded": v.n_discarded,
        "verification_discarded": [d.test for d in evidence.discarded] if evidence else [],
        "verification_leading": evidence.leading if evidence else [],
        "verification_evidence": evidence.model_dump_json() if evidence else None, "library_added": r.growth.added,
        "teacher": r.teacher, "variant": r.variant, "artifact_sha256": r.artifact_sha256,
        "lm_calls": r.usage.lm_calls, "uncached_lm_calls": r.usage.uncached_lm_calls,
        "prompt_tokens": r.usage.prompt_tokens, "completion_tokens": r.usage.completion_tokens,
        "total_s": r.timings.total_s, "teacher_s": r.timings.teacher_s, "attempts": r.attempts,
        "fallback": r.fallback, "error": r.error,
    }  # fmt: skip


def write_exports(out: Path, records: Sequence[SynthesisRecord], *, sft_all: bool = False) -> dict[str, int]:
    """The HF dataset (parquet, every record without benchmark overlap) and the SFT chat file; returns row counts.

    The SFT file holds verified records only unless ``sft_all`` (then every record with a response).
    """
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    clean = [r for r in records if not r.contaminated]
    table = datasets.Dataset.from_list([_dataset_row(r) for r in clean], features=_dataset_features())
    target = out / DATASET_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    bars = not are_progress_bars_disabled()
    disable_progress_bars()  # a bar per export would litter the command's output
    try:
        table.to_parquet(str(tmp))
    finally:
        if bars:
            enable_progress_bars()
    os.replace(tmp, target)
    sft = [r for r in clean if r.response.strip() and (sft_all or r.verified)]
    lines = "".join(json.dumps({"id": r.id, "verified": r.verified, "messages": [
        {"role": "user", "content": r.instruction}, {"role": "assistant", "content": r.response}]},
        ensure_ascii=False) + "\n" for r in sft)  # fmt: skip
    _write_atomic(out / SFT_FILE, lines.encode("utf-8"))
    return {"dataset": len(clean), "sft": len(sft)}


# ================================================================================================ summary


class YieldReport(BaseModel):
    """Where the input rows went, read → skipped (by reason) → verified → SFT, and what a teacher-hour yields.

    Every row read is skipped or verified once the run is complete (a row is an invalid row, an instruction dropped
    by decontamination, or a record). A teacher-hour is an hour of this run's synthesis loop, the teacher's whole
    time with concurrent calls overlapping in it (it is ~99% of the loop); the rate counts the records this run made,
    so a resumed run is not credited with earlier sessions' records.
    """

    read: int  # input rows read
    skipped: dict[str, int] = Field(default_factory=dict)  # rows without a verified record, by reason (nonzero only)
    verified: int  # records whose answer passed verification
    sft: int  # records in sft.jsonl (the verified ones, unless --sft-all)
    teacher_s: float  # this run's synthesis loop, wall time
    verified_this_run: int  # verified records this run made
    verified_per_teacher_hour: float


# why a record is not verified, by its verification status (a response overlapping a benchmark is "skipped" too)
_NOT_VERIFIED = {"no_code": "no_code", "no_tests": "no_tests", "failed": "failed", "error": "error",
                 "skipped": "verification_off"}  # fmt: skip


def _yield_report(batch: InputBatch, dropped: int, records: Sequence[SynthesisRecord], made: Sequence[SynthesisRecord],
                  sft: int, loop_s: float) -> YieldReport:  # fmt: skip
    skipped = Counter({"invalid_row": len(batch.invalid), "instruction_overlaps_benchmark": dropped})
    for r in records:
        if r.contaminated:
            skipped["response_overlaps_benchmark"] += 1
        elif not r.verified:
            skipped[_NOT_VERIFIED[r.verification.status]] += 1
    verified, verified_now = sum(r.verified for r in records), sum(r.verified for r in made)
    per_hour = round(3600 * verified_now / loop_s, 1) if loop_s else 0.0
    return YieldReport(read=batch.rows, skipped={k: n for k, n in skipped.items() if n}, verified=verified, sft=sft,
                       teacher_s=round(loop_s, 1), verified_this_run=verified_now,
                       verified_per_teacher_hour=per_hour)  # fmt: skip


class RunSummary(BaseModel):
    """Counts, pass rates, tokens and throughput of a run (``summary.json``)."""

    input: str
    input_name: str
    out: str
    teacher: str
    server: str | None = None  # how a local teacher was served
    variant: str
    artifact: str | None = None
    artifact_sha256: str | None = None
    rows_read: int
    invalid: int
    invalid_examples: list[str] = Field(default_factory=list)
    decontaminated: int  # instructions dropped before synthesis
    decontaminated_by_method: dict[str, int] = Field(default_factory=dict)
    records: int  # in records.jsonl, all runs of this directory
    resumed: int  # already committed when this run started
    processed: int  # made by this run
    response_contaminated: int
    errors: int  # records whose program failed past its retries
    fallbacks: int
    verification: dict[str, int]
    pass_rate: float  # verified records / records
    pass_rate_this_run: float
    library_start: int
    library_end: int
    modules_added: int
    lm_calls: int
    uncached_lm_calls: int
    prompt_tokens: int
    completion_tokens: int
    tokens_this_run: int
    wall_s: float  # the whole command after the teacher started: decontamination, synthesis, exports
    synthesis_s: float  # the synthesis loop alone
    records_per_min: float  # this run, over synthesis_s
    tokens_per_s: float  # this run, over synthesis_s
    dataset_rows: int
    sft_records: int
    yield_report: YieldReport
    repaired_bytes: int = 0  # a torn last line dropped on resume
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def _summarize(
    job: SynthesisJob,
    batch: InputBatch,
    records: list[SynthesisRecord],
    made: list[SynthesisRecord],
    dropped: list[dict[str, Any]],
    exports: dict[str, int],
    *,
    wall_s: float,
    loop_s: float,
    teacher: str,
    digest: str | None,
    library_start: int,
    library_end: int,
    repaired: int,
) -> RunSummary:
    import dspy

    from amr_dspy.teacher import served_by

    n, n_made = len(records), len(made)
    tokens_made = sum(r.usage.tokens for r in made)
    return RunSummary(
        input=batch.spec,
        input_name=batch.name,
        out=str(job.out),
        teacher=teacher,
        server=served_by(dspy.settings.lm),
        variant=job.variant,
        artifact=str(job.artifact) if job.artifact else None,
        artifact_sha256=digest,
        rows_read=batch.rows,
        invalid=len(batch.invalid),
        invalid_examples=[row.message for row in batch.invalid[:10]],
        decontaminated=len(dropped),
        decontaminated_by_method=dict(Counter(str(d["method"]) for d in dropped)),
        records=n,
        resumed=n - n_made,
        processed=n_made,
        response_contaminated=sum(r.contaminated for r in records),
        errors=sum(r.error is not None for r in records),
        fallbacks=sum(r.fallback for r in records),
        verification=dict(Counter(r.verification.status for r in records).most_common()),
        pass_rate=sum(r.verified for r in records) / n if n else 0.0,
        pass_rate_this_run=sum(r.verified for r in made) / n_made if n_made else 0.0,
        library_start=library_start,
        library_end=library_end,
        modules_added=sum(len(r.growth.added) for r in made),
        lm_calls=sum(r.usage.lm_calls for r in records),
        uncached_lm_calls=sum(r.usage.uncached_lm_calls for r in records),
        prompt_tokens=sum(r.usage.prompt_tokens for r in records),
        completion_tokens=sum(r.usage.completion_tokens for r in records),
        tokens_this_run=tokens_made,
        wall_s=round(wall_s, 2),
        synthesis_s=round(loop_s, 2),
        records_per_min=round(60 * n_made / loop_s, 2) if loop_s else 0.0,
        tokens_per_s=round(tokens_made / loop_s, 1) if loop_s else 0.0,
        dataset_rows=exports["dataset"],
        sft_records=exports["sft"],
        yield_report=_yield_report(batch, len(dropped), records, made, exports["sft"], loop_s),
        repaired_bytes=repaired,
    )


def _yield_rows(report: YieldReport) -> list[tuple[str, str]]:
    skipped = sum(report.skipped.values())
    reasons = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report.skipped.items())
    flow = (f"{report.read} read → {skipped} skipped{f' ({reasons})' if reasons else ''} → [bold]{report.verified}"
            f" verified[/] → {report.sft} SFT")  # fmt: skip
    rate = (f"{report.verified_per_teacher_hour:.1f} verified records per teacher-hour "
            f"({report.verified_this_run} in this run's {report.teacher_s:.0f}s)")  # fmt: skip
    return [("yield", flow), ("teacher time", rate)]


def summary_table(summary: RunSummary) -> Table:
    title = f"synthesize — {summary.input_name} · {summary.variant} · {summary.teacher}"
    table = Table(title=title, title_justify="left", show_header=False)
    rows = [
        ("records", f"{summary.records} ({summary.processed} this run, {summary.resumed} resumed)"),
        ("verified", f"[bold]{100 * summary.pass_rate:.1f}%[/] "
                     f"({', '.join(f'{n} {k}' for k, n in summary.verification.items()) or 'none'})"),
        ("input rows", f"{summary.rows_read} read, {summary.invalid} invalid skipped"),
        ("decontamination", f"{summary.decontaminated} instructions dropped"
                            + (f" ({', '.join(f'{n} {k}' for k, n in summary.decontaminated_by_method.items())})"
                               if summary.decontaminated_by_method else "")
                            + f", {summary.response_contaminated} responses dropped"),
        ("errors", f"{summary.errors} ({summary.fallbacks} fell back to the best response so far)"),
        ("library", f"{summary.library_start} → {summary.library_end} modules (+{summary.modules_added})"),
        ("LM calls", f"{summary.lm_calls} ({summary.uncached_lm_calls} uncached)"),
        ("tokens in/out", f"{summary.prompt_tokens:,}/{summary.completion_tokens:,}"),
        ("throughput", f"{summary.records_per_min:.1f} records/min, {summary.tokens_per_s:.0f} tokens/s "
                       f"({summary.synthesis_s:.1f}s synthesizing, {summary.wall_s:.1f}s in all)"),
        ("exports", f"{summary.dataset_rows} dataset rows, {summary.sft_records} SFT records"),
        *_yield_rows(summary.yield_report),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table
