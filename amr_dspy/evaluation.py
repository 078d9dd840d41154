"""Benchmark evaluation: run a program (or read a samples file), check every solution, report evalplus pass@1.

A solution is checked as ``evalplus.evaluate`` checks it: the base inputs in one fresh run, then the
plus inputs in another, each stopping at its first failure. Base pass = all base tests pass; plus
pass = base and plus all pass. ``crosscheck_evalplus`` runs evalplus itself on the same samples so
the two numbers can be compared side by side.

BigCodeBench tasks have one unittest module and no plus tests (base = plus): a task passes when every test
method passes. A task whose run needed a library that is not installed is *skipped*, and one on the exclusion
list (``amr_dspy.bigcodebench``) *excluded*; both are counted and listed, and left out of pass@1's denominator.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, Field
from rich.table import Table

from amr_dspy.errors import AmrDspyError, DataError
from amr_dspy.tasks import Task
from amr_dspy.testcases import ExecutionRequest, ExecutionResult, TestOutcome

if TYPE_CHECKING:
    import dspy

    from amr_dspy.resume import EvalCheckpoint
    from amr_dspy.sandbox import Sandbox, SandboxLimits

__all__ = [
    "Failure",
    "PassAt1",
    "TaskResult",
    "CrossCheck",
    "EvalResults",
    "SolutionCheck",
    "check_solutions",
    "evalplus_limits",
    "bigcodebench_limits",
    "execution_limits",
    "evaluate_program",
    "run_parallel",
    "program_config",
    "evaluate_samples",
    "read_samples",
    "write_samples",
    "write_results",
    "crosscheck_evalplus",
    "results_table",
    "summary_table",
    "left_out_summary",
    "raise_if_all_failed",
    "BenchSide",
    "SandboxBench",
    "bench_sandbox",
    "bench_table",
]

EvalplusDataset = Literal["mbpp", "humaneval"]  # the datasets evalplus itself can check
Failure = Literal["no_code", "wrong_answer", "error", "timeout", "memory", "program_error"]
Kept = Literal["direct", "evolved", "sample"]
_STATUS_FAILURE: dict[str, Failure] = {
    "failed": "wrong_answer",
    "error": "error",
    "timeout": "timeout",
    "memory": "memory",
}


class PassAt1(BaseModel):
    base: float
    plus: float


class SolutionCheck(BaseModel):
    """How one solution fared on a task's base and plus tests."""

    base_passed: bool
    plus_passed: bool
    failure: Failure | None = None
    failure_message: str | None = None
    failed_test: str | None = None
    exec_s: float = 0.0
    missing_modules: list[str] = Field(default_factory=list)  # skipped: these libraries are not installed here
    excluded: str | None = None  # not run: on the exclusion list, for this reason

    @property
    def scored(self) -> bool:
        """Counts towards pass@1 (neither skipped for a missing library nor excluded)."""
        return not self.missing_modules and self.excluded is None


class TaskResult(SolutionCheck):
    task_id: str
    lm_calls: int = 0  # every LM call, cache hits included
    uncached_lm_calls: int = 0  # calls this run paid for (the others were DSPy cache hits)
    prompt_tokens: int = 0  # tokens of every call, cache hits included (their stored usage)
    completion_tokens: int = 0
    wall_s: float = 0.0  # the program's time for this task (cache hits make it short)
    # which answer the program kept: the quality guard's choice (AMR), the chosen candidate's kind (-select)
    kept: Kept | None = None


class CrossCheck(BaseModel):
    """The project's pass@1 next to ``evalplus.evaluate``'s on the same samples."""

    project: PassAt1
    evalplus: PassAt1
    agree: bool
    disagreements: list[str] = Field(default_factory=list)  # task ids whose base or plus verdicts differ
    evalplus_results: str  # evalplus's *_eval_results.json


class EvalResults(BaseModel):
    benchmark: str
    variant: str | None = None
    teacher: str | None = None
    server: str | None = None  # how a local teacher was served (batching can change greedy outputs)
    artifact: str | None = None  # the compiled program loaded into the variant
    library: str | None = None  # the module library retrieved from (resources.library_id); None: no retrieval
    program_config: dict[str, Any] | None = None  # the program's settings (AMR stages, the -select samples)
    samples: str | None = None
    n_tasks: int
    pass_at_1: PassAt1  # over the scored tasks
    failures: dict[str, int]
    n_scored: int | None = None  # None in results written before tasks could be skipped or excluded: all were
    skipped: dict[str, list[str]] = Field(default_factory=dict)  # task id -> libraries that are not installed here
    excluded: dict[str, str] = Field(default_factory=dict)  # task id -> why it is left out of scoring
    lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float
    tasks: list[TaskResult]
    crosscheck: CrossCheck | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def collect(cls, benchmark: str, tasks: list[TaskResult], wall_s: float, **meta: Any) -> EvalResults:
        scored = [t for t in tasks if t.scored]
        n = len(scored)
        return cls(
            benchmark=benchmark,
            n_tasks=len(tasks),
            pass_at_1=PassAt1(
                base=sum(t.base_passed for t in scored) / n if n else 0.0,
                plus=sum(t.plus_passed for t in scored) / n if n else 0.0,
            ),
            failures=dict(Counter(t.failure for t in scored if t.failure)),
            n_scored=n,
            skipped={t.task_id: t.missing_modules for t in tasks if t.missing_modules},
            excluded={t.task_id: t.excluded for t in tasks if t.excluded is not None},
            lm_calls=sum(t.lm_calls for t in tasks),
            prompt_tokens=sum(t.prompt_tokens for t in tasks),
            completion_tokens=sum(t.completion_tokens for t in tasks),
            wall_s=wall_s,
            tasks=tasks,
            versions=package_versions(),
            **meta,
        )


# --------------------------------------------------------------------------------------------
# checking solutions


def evalplus_limits() -> SandboxLimits:
    """Sandbox limits as loose as evalplus's: 4 GiB (capped by RAM) and a phase's 60 s + grace."""
    import psutil

    from amr_dspy.sandbox import SandboxLimits

    memory_mb = min(4096, psutil.virtual_memory().total // 2**20)
    return SandboxLimits(memory_mb=memory_mb, cpu_s=62, max_wall_s=62.0)


# Imported once per worker, so each task's child forks with them loaded instead of importing them (seconds).
_BIGCODEBENCH_PRELOAD = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats", "sklearn")


def bigcodebench_limits() -> SandboxLimits:
    """Limits for BigCodeBench's unittest modules.

    A task imports pandas, matplotlib, scipy or sklearn (about 550 MB of address space once preloaded, a few
    hundred MB resident) and builds frames, plots and models on top: 2 GiB of address space per process. Its
    module gets 60 s for all its methods (``amr_dspy.bigcodebench.TIME_LIMIT_S``), the solution 60 s to load;
    the request's wall clock covers both. Some tasks run subprocesses, threads or a multiprocessing pool: 8 more
    processes or threads at most, so a request holds at most 9 x 2 GiB. Files: 64 MB each (archives, images and
    CSVs some tasks write).
    """
    from amr_dspy.bigcodebench import TIME_LIMIT_S
    from amr_dspy.sandbox import SandboxLimits

    return SandboxLimits(
        memory_mb=2048,
        cpu_s=int(2 * TIME_LIMIT_S) + 2,
        file_size_mb=64,
        max_wall_s=2 * TIME_LIMIT_S + 10,
        load_timeout_s=TIME_LIMIT_S,
        max_processes=8,
        preload=_BIGCODEBENCH_PRELOAD,
    )


def execution_limits(tasks: Sequence[Task]) -> SandboxLimits:
    """The sandbox limits for checking ``tasks``: BigCodeBench's when any task is from it, else evalplus's."""
    return bigcodebench_limits() if any(t.dataset == "bigcodebench" for t in tasks) else evalplus_limits()


def check_solutions(sandbox: Sandbox, pairs: Sequence[tuple[Task, str | None]]) -> list[SolutionCheck]:
    """Check each ``(task, code)``: base tests first, plus tests only for solutions that pass base.

    An excluded task is not run; one whose run needed a library that is not installed is skipped.
    """
    for task, _ in pairs:
        if not task.tests:
            raise DataError(
                f"task {task.task_id!r} ({task.source}) has no hidden tests; pick a benchmark such as mbpp+:test"
            )
    runnable = [i for i, (task, code) in enumerate(pairs) if code and code.strip() and task.excluded is None]
    base = _run_phase(sandbox, pairs, runnable, plus=False)
    passed_base = [i for i in runnable if _phase_passed(base[i], pairs[i][0], plus=False)]
    plus = _run_phase(sandbox, pairs, [i for i in passed_base if pairs[i][0].plus_tests], plus=True)

    checks = []
    for i, (task, _) in enumerate(pairs):
        if task.excluded is not None:
            checks.append(SolutionCheck(base_passed=False, plus_passed=False, excluded=task.excluded))
            continue
        if i not in base:
            checks.append(SolutionCheck(base_passed=False, plus_passed=False, failure="no_code"))
            continue
        exec_s = base[i].wall_s + (plus[i].wall_s if i in plus else 0.0)
        if skipped := _skipped(base[i]):
            checks.append(SolutionCheck(base_passed=False, plus_passed=False, missing_modules=skipped, exec_s=exec_s,
                                        failure_message=f"not installed here: {', '.join(skipped)}"))  # fmt: skip
            continue
        if i not in passed_base:
            failing = base[i]
        elif i in plus and not _phase_passed(plus[i], task, plus=True):
            failing = plus[i]
        else:
            checks.append(SolutionCheck(base_passed=True, plus_passed=True, exec_s=exec_s))
            continue
        failure, message, test = _classify(failing)
        checks.append(
            SolutionCheck(
                base_passed=i in passed_base,
                plus_passed=False,
                failure=failure,
                failure_message=message,
                failed_test=test,
                exec_s=exec_s,
            )
        )
    return checks


def _run_phase(
    sandbox: Sandbox, pairs: Sequence[tuple[Task, str | None]], indices: list[int], *, plus: bool
) -> dict[int, ExecutionResult]:
    requests = []
    for i in indices:
        task, code = pairs[i]
        requests.append(
            ExecutionRequest(
                code=code or "",
                entry_point=task.entry_point,
                tests=task.plus_tests if plus else task.base_tests,
                task_id=task.task_id,
                dataset=task.dataset,
                fail_fast=True,
            )
        )
    return dict(zip(indices, sandbox.run_many(requests) if requests else [], strict=True))


def _phase_passed(result: ExecutionResult, task: Task, *, plus: bool) -> bool:
    # at least one outcome per test: a unittest module has one per test method
    expected = len(task.plus_tests if plus else task.base_tests)
    return result.passed and len(result.outcomes) >= expected


def _skipped(result: ExecutionResult) -> list[str]:
    """The missing libraries of a run that failed no test on its own (a failure anywhere is the solution's)."""
    return result.missing_modules if result.first_failure() is None else []


def _classify(result: ExecutionResult) -> tuple[Failure, str | None, str | None]:
    first: TestOutcome | None = result.first_failure()
    if first is None:
        reason = result.crash_reason or "the run ended before all tests reported"
        return ("memory" if "memory" in reason.lower() else "error"), reason, None
    return _STATUS_FAILURE.get(first.status, "error"), first.message, first.name


# --------------------------------------------------------------------------------------------
# running a program


class _RunStats(BaseModel):
    lm_calls: int = 0
    uncached_lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    error: str | None = None


def _entry_tokens(entry: dict[str, Any]) -> tuple[int, int]:
    """Prompt and completion tokens of one LM history entry; a cache hit keeps them on its stored response."""
    usage = entry.get("usage") or {}
    if usage:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    response = entry.get("response")
    response = response[0] if isinstance(response, list | tuple) and response else response
    stored = getattr(response, "usage", None)
    prompt = getattr(stored, "input_tokens", None) or getattr(stored, "prompt_tokens", None)
    completion = getattr(stored, "output_tokens", None) or getattr(stored, "completion_tokens", None)
    return int(prompt or 0), int(completion or 0)


def _instrumented(program: dspy.Module) -> dspy.Module:
    """Wrap ``program`` so each call records its LM calls, tokens, time and any exception on the prediction.

    Tokens count every call, cache hits included (DSPy reports no usage for those, but keeps the stored response's),
    so variants that share cached calls are compared on what they use; ``uncached_lm_calls`` is what a run paid for.
    """
    import dspy
    from dspy.utils.callback import BaseCallback

    class CallMeter(BaseCallback):  # type: ignore[misc]  # dspy ships no types
        def __init__(self) -> None:
            self.stats = _RunStats()
            self.lms: dict[str, Any] = {}

        def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self.stats.lm_calls += 1
            self.lms[call_id] = instance

        def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
            history = getattr(self.lms.pop(call_id, None), "history", None) or []
            entry = next((e for e in reversed(history[-64:]) if e.get("outputs") is outputs), None)
            if entry is None:
                return
            prompt, completion = _entry_tokens(entry)
            self.stats.prompt_tokens += prompt
            self.stats.completion_tokens += completion
            self.stats.uncached_lm_calls += bool(entry.get("usage"))

    class Instrumented(dspy.Module):  # type: ignore[misc]  # dspy ships no types
        def __init__(self, inner: dspy.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: Any) -> dspy.Prediction:
            meter = CallMeter()
            started = time.perf_counter()
            error = None
            with dspy.context(callbacks=[*dspy.settings.callbacks, meter]):
                try:
                    prediction = self.inner(**inputs)
                except Exception as exc:  # a failing task is a recorded outcome, not the end of the run
                    prediction, error = dspy.Prediction(response="", code=None), f"{type(exc).__name__}: {exc}"
            prediction._amr_stats = meter.stats.model_copy(
                update={"wall_s": time.perf_counter() - started, "error": error})  # fmt: skip
            return prediction

    return Instrumented(program)


class _Recorder:
    """dspy.Evaluate's metric: checks each prediction and keeps the per-task record."""

    def __init__(self, sandbox: Sandbox, on_result: Callable[[TaskResult], None] | None,
                 checkpoint: EvalCheckpoint | None = None) -> None:  # fmt: skip
        self.sandbox = sandbox
        self.on_result = on_result
        self.checkpoint = checkpoint
        self.started = time.perf_counter()
        self.results: dict[str, TaskResult] = {}
        self.solutions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, example: dspy.Example, prediction: Any, trace: Any = None) -> float:
        from amr_dspy.metric import prediction_code

        task: Task = example.task
        stats: _RunStats = getattr(prediction, "_amr_stats", None) or _RunStats()
        code = None if stats.error else prediction_code(prediction, task.entry_point)
        if stats.error and task.excluded is None:  # an excluded task is reported as excluded, whatever happened
            check = SolutionCheck(
                base_passed=False, plus_passed=False, failure="program_error", failure_message=stats.error
            )
        else:
            check = check_solutions(self.sandbox, [(task, code)])[0]
        details = _program_details(prediction, task.instruction)
        kept = details["kept"] if details["kept"] in get_args(Kept) else None
        result = TaskResult(task_id=task.task_id, **check.model_dump(), **stats.model_dump(exclude={"error"}),
                            kept=kept)  # fmt: skip
        response = prediction.get("response") if hasattr(prediction, "get") else None
        record = {"code": code, "response": response, **details}
        with self._lock:
            self.results[task.task_id] = result
            self.solutions[task.task_id] = record
        if self.checkpoint is not None:
            self.checkpoint.add(result, record, time.perf_counter() - self.started)
        if self.on_result is not None:
            self.on_result(result)
        return float(result.plus_passed)


def _program_details(prediction: Any, instruction: str) -> dict[str, Any]:
    """What a program says about its own steps: notes, which answer was kept (AMR, -select), what was retrieved,
    the text the teacher saw when the program framed ``instruction`` (None when it saw the instruction as it is),
    the -select variants' ``selection`` and amr-verified's ``module_checks`` (None when the program has none)."""
    get = prediction.get if hasattr(prediction, "get") else lambda key, default=None: default
    retrieved = [{"id": r.id, "name": r.name, "score": round(r.score, 4)} for r in get("retrieved", None) or []]
    framed, selection, checks = get("framed_instruction", None), get("selection", None), get("module_checks", None)
    kept = get("kept", None) or getattr(selection, "kind", None)  # direct-select says it only in its selection
    return {"notes": list(get("notes", None) or []), "kept": kept, "retrieved": retrieved,
            "framed_instruction": framed if framed != instruction else None, "selection": _as_json(selection),
            "module_checks": None if checks is None else [_as_json(c) for c in checks]}  # fmt: skip


def _as_json(value: Any) -> Any:
    """A pydantic record as plain JSON (predictions.jsonl and the checkpoint are JSON); anything else as it is."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def program_config(program: Any) -> dict[str, Any] | None:
    """A program's settings (its pydantic ``config``), or None for a program without one."""
    config = getattr(program, "config", None)
    return config.model_dump() if isinstance(config, BaseModel) else None


def run_parallel(function: Callable[[Any], Any], items: Sequence[Any], *, threads: int,
                 provide_traceback: bool = True) -> list[Any]:  # fmt: skip
    """``function`` over ``items`` on ``threads`` threads with DSPy's settings (``dspy.Evaluate``'s executor).

    Without its straggler re-submission: when at most 3 items are left and one has run 120 s, DSPy starts it
    again beside itself. A long AMR task on the local teacher always takes that long, so the copy only took slots
    from the original (it was recorded twice, and the teacher did the work twice). An item that raises gives None.
    """
    from dspy.utils.parallelizer import ParallelExecutor

    if not items:
        return []
    executor = ParallelExecutor(num_threads=threads, max_errors=len(items) + 1, disable_progress_bar=True,
                                provide_traceback=provide_traceback, timeout=0)  # fmt: skip
    results: list[Any] = executor.execute(function, list(items))
    return results


def evaluate_program(
    program: dspy.Module,
    tasks: Sequence[Task],
    sandbox: Sandbox,
    *,
    benchmark: str,
    threads: int = 4,
    on_result: Callable[[TaskResult], None] | None = None,
    checkpoint: EvalCheckpoint | None = None,
    **meta: Any,
) -> tuple[EvalResults, dict[str, dict[str, Any]]]:
    """Run ``program`` on every task, ``threads`` at a time; return the results and each task's code/response.

    With a ``checkpoint``, tasks an earlier session finished are taken from it and each new one is appended.
    """
    from amr_dspy.metric import task_to_example

    _check_unique(tasks)
    recorder = _Recorder(sandbox, on_result, checkpoint)
    if checkpoint is not None:
        for task in tasks:
            if (done := checkpoint.done.get(task.task_id)) is not None:
                recorder.results[task.task_id] = TaskResult.model_validate(done.result)
                recorder.solutions[task.task_id] = done.record
    pending = [t for t in tasks if t.task_id not in recorder.results]
    instrumented = _instrumented(program)
    started = time.perf_counter()
    try:
        run_parallel(lambda example: recorder(example, instrumented(**example.inputs())),
                     [task_to_example(t) for t in pending], threads=threads)  # fmt: skip
    except BaseException:
        if checkpoint is not None:
            checkpoint.close()  # before the caller closes the sandbox under the threads still running
        raise
    wall_s = time.perf_counter() - started + (checkpoint.prior_wall_s if checkpoint else 0.0)
    for task in tasks:  # only a bug in checking itself leaves a task unrecorded
        if task.task_id not in recorder.results:
            recorder.results[task.task_id] = TaskResult(
                task_id=task.task_id,
                base_passed=False,
                plus_passed=False,
                failure="error",
                failure_message="the evaluation of this task raised; see the log",
            )
            recorder.solutions[task.task_id] = {"code": None, "response": None}
    ordered = [recorder.results[t.task_id] for t in tasks]
    return EvalResults.collect(benchmark, ordered, wall_s, **meta), recorder.solutions


def evaluate_samples(
    tasks: Sequence[Task],
    solutions: dict[str, str],
    sandbox: Sandbox,
    *,
    benchmark: str,
    **meta: Any,
) -> EvalResults:
    """Check existing solutions (one per task, as in an evalplus samples file)."""
    _check_unique(tasks)
    missing = [t.task_id for t in tasks if t.task_id not in solutions]
    if missing:
        raise DataError(
            f"{meta.get('samples') or 'samples'}: no solution for {len(missing)} task(s) of {benchmark}, "
            f"e.g. {missing[0]}"
        )
    started = time.perf_counter()
    checks = check_solutions(sandbox, [(t, solutions[t.task_id]) for t in tasks])
    wall_s = time.perf_counter() - started
    results = [TaskResult(task_id=t.task_id, **c.model_dump()) for t, c in zip(tasks, checks, strict=True)]
    return EvalResults.collect(benchmark, results, wall_s, **meta)


def _check_unique(tasks: Sequence[Task]) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            raise DataError(f"{task.source}: duplicate task id {task.task_id!r}")
        seen.add(task.task_id)


# --------------------------------------------------------------------------------------------
# files


def read_samples(path: Path) -> dict[str, str]:
    """An evalplus samples file (JSONL of ``{"task_id", "solution"}``), one sample per task."""
    solutions: dict[str, str] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read samples ({exc.strerror})") from exc
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
                row = json.loads(line) if line.strip() else None
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not valid UTF-8") from exc
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON ({exc.msg})") from exc
            if row is None:
                continue
            if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
                raise DataError(f"{where}: expected an object with a string 'task_id'")
            if not isinstance(row.get("solution"), str):
                raise DataError(f"{where}: expected a string 'solution' (evalplus samples format)")
            if row["task_id"] in solutions:
                raise DataError(f"{where}: second sample for {row['task_id']}; pass@1 takes one sample per task")
            solutions[row["task_id"]] = row["solution"]
    return solutions


def write_samples(path: Path, task_ids: Sequence[str], solutions: Mapping[str, str | None]) -> None:
    """evalplus samples (``{"task_id", "solution"}``); a task without code gets an empty solution, which fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for task_id in task_ids:
            handle.write(json.dumps({"task_id": task_id, "solution": solutions.get(task_id) or ""}) + "\n")


def write_results(path: Path, results: EvalResults) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# evalplus cross-check


def crosscheck_evalplus(
    samples_path: Path, results: EvalResults, dataset: EvalplusDataset, *, workdir: Path, parallel: int = 2
) -> CrossCheck:
    """Run ``evalplus.evaluate`` on the same solutions and compare its verdicts with ``results`` task by task.

    evalplus insists on a sample for every task of its dataset, so tasks outside ``results`` get an
    empty solution; only the tasks in ``results`` are compared.
    """
    from amr_dspy.tasks import evalplus_problems

    problems, _ = evalplus_problems(dataset)  # also points evalplus at the same dataset file
    solutions = read_samples(samples_path)
    unknown = [t.task_id for t in results.tasks if t.task_id not in problems]
    if unknown:
        raise DataError(f"{samples_path}: task {unknown[0]} is not in evalplus's {dataset} dataset")
    workdir.mkdir(parents=True, exist_ok=True)
    padded = workdir / "evalplus_samples.jsonl"
    report = workdir / "evalplus_samples_eval_results.json"
    report.unlink(missing_ok=True)  # evalplus would silently reuse an old report
    write_samples(padded, list(problems), solutions)

    _run_evalplus(dataset, padded, parallel, workdir / "evalplus.log")
    verdicts = json.loads(report.read_text(encoding="utf-8"))["eval"]

    theirs: list[tuple[bool, bool]] = []
    disagreements = []
    for task in results.tasks:
        entry = verdicts[task.task_id][0]
        base = entry["base_status"] == "pass"
        plus = base and entry["plus_status"] == "pass"
        theirs.append((base, plus))
        if (base, plus) != (task.base_passed, task.plus_passed):
            disagreements.append(task.task_id)
    n = len(theirs) or 1
    evalplus = PassAt1(base=sum(b for b, _ in theirs) / n, plus=sum(p for _, p in theirs) / n)
    return CrossCheck(
        project=results.pass_at_1,
        evalplus=evalplus,
        agree=not disagreements and evalplus == results.pass_at_1,
        disagreements=disagreements,
        evalplus_results=str(report),
    )


_EVALPLUS_SCRIPT = """
import os, sys
import evalplus.evaluate as ev
ev.CACHE_DIR = sys.argv[3]  # the ground truth the project used
ev.evaluate(sys.argv[1], samples=sys.argv[2], parallel=int(sys.argv[4]), i_just_wanna_run=False)
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)  # evalplus leaves a watchdog thread sleeping in 20 s steps
"""


def _run_evalplus(dataset: EvalplusDataset, samples: Path, parallel: int, log: Path) -> None:
    """``evalplus.evaluate`` in a fresh, lean interpreter: forking this one per test is far slower."""
    _run_python(_EVALPLUS_SCRIPT, [dataset, str(samples), _groundtruth_dir(), str(parallel)], log, "evalplus.evaluate")


def _groundtruth_dir() -> str:
    import evalplus.evaluate

    return str(evalplus.evaluate.CACHE_DIR)


def _run_python(script: str, args: list[str], log: Path, what: str) -> None:
    """Run ``script`` in a fresh interpreter that sees the same evalplus dataset files as this one."""
    import subprocess
    import sys

    import evalplus.data.humaneval
    import evalplus.data.mbpp

    env = dict(os.environ)
    for var, value in (
        ("MBPP_OVERRIDE_PATH", evalplus.data.mbpp.MBPP_OVERRIDE_PATH),
        ("HUMANEVAL_OVERRIDE_PATH", evalplus.data.humaneval.HUMANEVAL_OVERRIDE_PATH),
    ):
        if value:
            env[var] = value
        else:
            env.pop(var, None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        code = subprocess.run(
            [sys.executable, "-c", script, *args], env=env, stdout=handle, stderr=subprocess.STDOUT, check=False
        ).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise AmrDspyError(f"{what} failed (exit {code}): {tail[0]} (log: {log})")


# --------------------------------------------------------------------------------------------
# sandbox throughput against evalplus


class BenchSide(BaseModel):
    """One executor's run over the same solutions and tests."""

    executor: str
    wall_s: float
    executions: int  # test calls actually run
    executions_per_s: float
    tasks_passed: int


class SandboxBench(BaseModel):
    benchmark: str
    n_tasks: int
    workers: int
    project: BenchSide
    evalplus: BenchSide
    ratio: float  # project executions/s over evalplus executions/s
    note: str = "samples are the canonical solutions; both sides stop a test group at its first failure"
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def bench_sandbox(tasks: Sequence[Task], sandbox: Sandbox, *, benchmark: str, workers: int) -> SandboxBench:
    """Test executions per second of ``sandbox`` and of evalplus's checker on the canonical solutions."""
    dataset = tasks[0].dataset if tasks else None
    if dataset not in ("mbpp", "humaneval") or any(t.dataset != dataset or not t.canonical_solution for t in tasks):
        raise DataError(
            f"{benchmark}: the sandbox bench needs evalplus tasks with canonical solutions (mbpp+ or humaneval+)"
        )
    project = _bench_project(tasks, sandbox)
    evalplus = _bench_evalplus(tasks, dataset, workers)
    return SandboxBench(
        benchmark=benchmark,
        n_tasks=len(tasks),
        workers=workers,
        project=project,
        evalplus=evalplus,
        ratio=project.executions_per_s / evalplus.executions_per_s if evalplus.executions_per_s else float("inf"),
        versions=package_versions("amr-dspy", "evalplus"),
    )


def _bench_project(tasks: Sequence[Task], sandbox: Sandbox) -> BenchSide:
    requests = [
        ExecutionRequest(
            code=t.canonical_solution or "",
            entry_point=t.entry_point,
            tests=group,
            task_id=t.task_id,
            dataset=t.dataset,
            fail_fast=True,
        )
        for t in tasks
        for group in (t.base_tests, t.plus_tests)
        if group
    ]
    started = time.perf_counter()
    results = sandbox.run_many(requests)
    wall_s = time.perf_counter() - started
    executed = sum(o.status != "skipped" for r in results for o in r.outcomes)
    failed = {req.task_id for req, r in zip(requests, results, strict=True) if not r.passed}
    return BenchSide(
        executor="amr_dspy.sandbox",
        wall_s=wall_s,
        executions=executed,
        executions_per_s=executed / wall_s if wall_s else 0.0,
        tasks_passed=len(tasks) - len(failed),
    )


_BENCH_SCRIPT = """
import json, os, sys, time
from concurrent.futures import ProcessPoolExecutor
import evalplus.evaluate as ev
from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash, get_mbpp_plus, get_mbpp_plus_hash
from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
dataset, ev.CACHE_DIR, workers, ids_file, out_file = sys.argv[1:6]
if dataset == "mbpp":
    problems, digest, not_none = get_mbpp_plus(), get_mbpp_plus_hash(), MBPP_OUTPUT_NOT_NONE_TASKS
else:
    problems, digest, not_none = get_human_eval_plus(), get_human_eval_plus_hash(), []
truth = ev.get_groundtruth(problems, digest, not_none)
ids = json.load(open(ids_file))
started = time.perf_counter()
with ProcessPoolExecutor(max_workers=int(workers)) as pool:
    futures = [
        pool.submit(ev.check_correctness, dataset, 0, problems[i],
                    problems[i]["prompt"] + problems[i]["canonical_solution"], truth[i], False, True, i)
        for i in ids
    ]
    outcomes = [f.result() for f in futures]
wall_s = time.perf_counter() - started
json.dump({"wall_s": wall_s,
           "executions": sum(len(o["base"][1]) + len(o["plus"][1]) for o in outcomes),
           "passed": sum(o["base"][0] == "pass" and o["plus"][0] == "pass" for o in outcomes)}, open(out_file, "w"))
sys.stdout.flush()
os._exit(0)
"""


def _bench_evalplus(tasks: Sequence[Task], dataset: EvalplusDataset, workers: int) -> BenchSide:
    """As ``evalplus.evaluate`` does it, in its own lean interpreter: a process pool of ``check_correctness`` calls."""
    import tempfile

    from amr_dspy.tasks import evalplus_problems

    evalplus_problems(dataset)  # resolves the dataset files and fills the ground-truth cache
    with tempfile.TemporaryDirectory(prefix="amr-bench-") as tmp:
        ids, out = Path(tmp) / "ids.json", Path(tmp) / "out.json"
        ids.write_text(json.dumps([t.task_id for t in tasks]), encoding="utf-8")
        _run_python(
            _BENCH_SCRIPT,
            [dataset, _groundtruth_dir(), str(workers), str(ids), str(out)],
            Path(tmp) / "bench.log",
            "evalplus bench",
        )
        measured = json.loads(out.read_text(encoding="utf-8"))
    wall_s = measured["wall_s"]
    return BenchSide(
        executor="evalplus check_correctness",
        wall_s=wall_s,
        executions=measured["executions"],
        executions_per_s=measured["executions"] / wall_s if wall_s else 0.0,
        tasks_passed=measured["passed"],
    )


def bench_table(report: SandboxBench) -> Table:
    table = Table(
        title=f"test executions per second — {report.benchmark}, {report.n_tasks} tasks, {report.workers} workers",
        title_justify="left",
    )
    table.add_column("executor", no_wrap=True)
    for name in ("executions", "wall", "executions/s", "tasks passed"):
        table.add_column(name, justify="right")
    for side in (report.project, report.evalplus):
        table.add_row(
            side.executor,
            str(side.executions),
            f"{side.wall_s:.1f}s",
            f"{side.executions_per_s:,.0f}",
            f"{side.tasks_passed}/{report.n_tasks}",
        )
    table.caption = f"ratio (project / evalplus): [bold]{report.ratio:.2f}×[/]"
    return table


# --------------------------------------------------------------------------------------------
# rendering


def summary_table(results: EvalResults) -> Table:
    source = results.variant or (Path(results.samples).name if results.samples else None)
    title = " · ".join(x for x in (results.benchmark, source, results.teacher) if x)
    ran_program = results.samples is None
    table = Table(title=f"pass@1 — {title}", title_justify="left")
    for name in ("tasks", "base", "plus", "failures", *(("LM calls", "tokens in/out") if ran_program else ()), "wall"):
        table.add_column(name, justify="left" if name == "failures" else "right")
    failures = ", ".join(
        f"{n} {name.replace('_', ' ')}" for name, n in sorted(results.failures.items(), key=lambda x: -x[1])
    )
    usage = (str(results.lm_calls), f"{results.prompt_tokens}/{results.completion_tokens}") if ran_program else ()
    n_scored = results.n_tasks if results.n_scored is None else results.n_scored
    table.add_row(
        str(n_scored) if n_scored == results.n_tasks else f"{n_scored} of {results.n_tasks}",
        f"{100 * results.pass_at_1.base:.1f}%",
        f"[bold]{100 * results.pass_at_1.plus:.1f}%[/]",
        failures or "none",
        *usage,
        f"{results.wall_s:.1f}s",
    )
    table.caption = _kept_caption(results)
    if results.crosscheck is not None:
        cc = results.crosscheck
        table.caption = (
            f"evalplus.evaluate: base {100 * cc.evalplus.base:.1f}% · plus {100 * cc.evalplus.plus:.1f}% — "
            + ("[green]agrees[/]" if cc.agree else f"[red]differs on {len(cc.disagreements)} task(s)[/]")
        )
    return table


def _kept_caption(results: EvalResults) -> str | None:
    """Which answers the program kept: the guard's evolved/direct split, or what the -select variants chose."""
    kept = Counter(t.kept for t in results.tasks if t.kept is not None)
    n, rest = results.n_tasks, results.n_tasks - sum(kept.values())
    if not kept:
        return None
    if "sample" in kept or (results.variant or "").endswith("-select"):  # a selection may never pick a sample
        chosen = ", ".join(f"{kind} {kept[kind]}" for kind in get_args(Kept) if kept[kind])
        return f"answer chosen on {sum(kept.values())} of {n} tasks: {chosen}" + (f"; none on {rest}" if rest else "")
    return (f"evolved answer kept on {kept['evolved']} of {n} tasks, direct on {kept['direct']}; "
            f"{rest} ended before evolving")  # fmt: skip


def left_out_summary(results: EvalResults) -> str | None:
    """The tasks pass@1 leaves out, and why (libraries not installed here, the exclusion list); None if none."""
    if not (results.skipped or results.excluded):
        return None
    parts = []
    if results.skipped:
        libraries = Counter(name for names in results.skipped.values() for name in names)
        named = ", ".join(f"{name} ({n})" for name, n in libraries.most_common())
        parts.append(f"{len(results.skipped)} skipped, not installed: {named}")
    if results.excluded:
        parts.append(f"{len(results.excluded)} excluded (amr_dspy/data/bigcodebench_exclusions.json)")
    return "left out of pass@1: " + "; ".join(parts)


def results_table(results: EvalResults) -> Table:
    """One row per task."""
    ran_program = results.samples is None
    table = Table(title="per task", title_justify="left")
    table.add_column("task", no_wrap=True)
    table.add_column("base", justify="center")
    table.add_column("plus", justify="center")
    table.add_column("failure", no_wrap=True)
    table.add_column("first failing test", ratio=1)
    if ran_program:
        table.add_column("LM calls", justify="right")
        table.add_column("tokens", justify="right")
    table.add_column("wall", justify="right")
    mark = {True: "[green]✓[/]", False: "[red]✗[/]"}
    for t in results.tasks:
        detail = ": ".join(part for part in (t.failed_test, t.failure_message) if part)
        usage = (str(t.lm_calls), str(t.prompt_tokens + t.completion_tokens)) if ran_program else ()
        left_out = t.scored or ("[dim]excluded[/]" if t.excluded is not None else "[yellow]skipped[/]")
        table.add_row(
            t.task_id,
            mark[t.base_passed] if left_out is True else "–",
            mark[t.plus_passed] if left_out is True else "–",
            (t.failure or "").replace("_", " ") if left_out is True else left_out,
            _clip(detail, 100),
            *usage,
            f"{t.wall_s + t.exec_s:.1f}s",
        )
    return table


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def package_versions(*names: str) -> dict[str, str]:
    """The installed versions of ``names`` (default: amr-dspy, dspy, evalplus); missing packages are left out."""
    found = {}
    for name in names or ("amr-dspy", "dspy", "evalplus"):
        try:
            found[name] = version(name)
        except Exception:  # PackageNotFoundError, or broken metadata
            continue
    return found


def raise_if_all_failed(results: EvalResults) -> None:
    """A run where the program failed on every task measured nothing; say why instead of reporting 0%."""
    errors = [t for t in results.tasks if t.failure == "program_error"]
    if results.tasks and len(errors) == len(results.tasks):
        raise AmrDspyError(
            f"the program failed on all {len(errors)} tasks; first error: {_clip(errors[0].failure_message or '', 200)}"
        )
