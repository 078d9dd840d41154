"""A whole synthesis run: ``prepare`` checks a ``SynthesisJob`` before any work, ``execute`` runs it into the
output directory (``open_run``: the library copy, ``run.json``, the records log), decontaminates the inputs,
drives ``run_synthesis`` and writes the exports and the summary. ``run_synthesis`` drives ``synthesize_record``
and ``merge_record`` (``amr_dspy.synthesis.pipeline``) with N records in flight and commits each record to the
log (``amr_dspy.synthesis.record_log``); a resumed run skips the ids already committed. Also the program and
teacher check a run starts with (``check_teacher``); the program comes from ``amr_dspy.run.load_program``.
"""

from __future__ import annotations

import contextvars
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from amr_dspy.decontam import DecontamConfig
from amr_dspy.errors import ConfigError, TeacherUnavailableError
from amr_dspy.library import Library, Provenance
from amr_dspy.run import load_program
from amr_dspy.synthesis.exports import write_exports
from amr_dspy.synthesis.inputs import DEFAULT_MAX_INSTRUCTION_CHARS, InputBatch, InputItem, read_inputs
from amr_dspy.synthesis.pipeline import _one_line, merge_record, synthesize_record
from amr_dspy.synthesis.record_log import RecordLog, _write_atomic
from amr_dspy.synthesis.records import RecordResult, SynthesisRecord, SynthesisSettings
from amr_dspy.synthesis.summary import RunSummary, _summarize

if TYPE_CHECKING:
    import dspy

    from amr_dspy.decontam import Decontaminator
    from amr_dspy.programs import Executor

__all__ = [
    "SynthesisJob",
    "Prepared",
    "ProgressSink",
    "prepare",
    "execute",
    "open_run",
    "run_synthesis",
    "check_teacher",
]

RECORDS, LIBRARY_DIR, RUN_FILE, SUMMARY_FILE = "records.jsonl", "library", "run.json", "summary.json"
DECONTAM_FILE = "decontamination.jsonl"


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
    python_only: bool = False
    limit: int | None = Field(None, ge=1)
    concurrency: int = Field(1, ge=1)
    resume: bool = False
    grow: bool = True
    guard: bool = True
    samples: int | None = Field(None, ge=0)  # the -select variants' samples (None: SelectConfig's default)
    test_sets: int | None = Field(None, ge=1)  # the -select variants' sets of unit tests
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
    from amr_dspy.leakage import check_provenance

    batch = read_inputs(job.input, instruction_field=job.instruction_field, input_field=job.input_field,
                        id_field=job.id_field, max_chars=job.max_instruction_chars, skip_invalid=job.skip_invalid,
                        limit=job.limit, python_only=job.python_only)  # fmt: skip
    if job.grow:
        try:
            check_provenance(Provenance(source=f"synthesize:{batch.name}"))
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
    # an unknown variant or artifact fails here, early
    load_program(job.variant, job.artifact, samples=job.samples, test_sets=job.test_sets)
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
    sandbox: Executor,
    progress: ProgressSink | None = None,
    status: Callable[[str], Any] | None = None,
) -> RunSummary:
    """Run a prepared job with the DSPy LM configured in the caller's context and the run's ``sandbox`` (both from
    ``amr_dspy.run.open_resources``)."""
    say = status or (lambda _message: None)
    started = time.perf_counter()
    batch = prepared.batch
    log, library = open_run(job, batch, teacher=teacher)
    library_start = len(library) if library is not None else 0
    try:
        decontaminator, items, dropped = _decontaminate(job, batch.items, say)
        say("loading the program")
        loaded = load_program(job.variant, job.artifact, library=library, executor=sandbox, guard=job.guard,
                              samples=job.samples, test_sets=job.test_sets)  # fmt: skip
        digest = loaded.sha256
        settings = SynthesisSettings(source=batch.name, teacher=teacher, variant=job.variant,
                                     artifact=str(job.artifact) if job.artifact else None, artifact_sha256=digest,
                                     retries=job.retries, backoff_s=job.backoff_s, verify=job.verify,
                                     grow=job.grow)  # fmt: skip
        loop_started = time.perf_counter()
        made = run_synthesis(items, program=loaded.module, library=library, executor=sandbox, settings=settings,
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


# ================================================================================================ teacher


def check_teacher(lm: dspy.LM, name: str) -> None:
    """One tiny uncached call without retries; TeacherUnavailableError (one line) when the teacher does not answer."""
    probe = lm.copy(num_retries=0, cache=False)
    try:
        probe("Reply with the word OK.")
    except Exception as exc:  # LiteLLM/DSPy raise many types; the user needs one line
        where = getattr(lm, "kwargs", {}).get("api_base") or getattr(lm, "api_base", None)
        at = f" at {where}" if where else ""
        raise TeacherUnavailableError(f"teacher {name}{at} is unreachable: {_one_line(exc, 200)}") from None
