"""BigCodeBench verdicts next to the reference harness's: the ``bigcodebench`` package's own ``untrusted_check``.

:func:`crosscheck_bigcodebench` runs ``bigcodebench.eval.untrusted_check`` (the check behind
``bigcodebench.evaluate --execution local``) on a samples file's solutions with that command's defaults: calibrated
solutions (the task's ``code_prompt`` and ``pass`` before the sample), 30 GiB of address space and of data, 10 MiB
of stack, and 240 s + 1 per task. ``evaluate`` first times the canonical solutions, but that time only matters past
240 s, so it is not measured (``gt_time_limit_s`` is its fallback). The tasks come from the package's own loader,
pointed at the project's copy of the release through ``BIGCODEBENCH_OVERRIDE_PATH`` (it reads ``.jsonl.gz`` as it is).

The harness forks once per task and sets its limits in the fork, so it never runs in the project's process: a fresh
interpreter runs it with a process pool, as ``evaluate`` does, in a session of its own (everything left of it is
killed at the end) and in a network namespace with only a loopback (the project's sandbox has no more, and nothing
outside this machine may be reached), with HOME and TMPDIR in a temporary directory. The pool imports numpy, pandas,
matplotlib, scipy and sklearn once before it forks (``ReferenceLimits.preload``), as the project's sandbox does.

Only the tasks the project scored are compared; its skipped (a library not installed) and excluded tasks are listed
apart with the reference's verdict, never counted as disagreements.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from amr_dspy.errors import AmrDspyError, ConfigError, DataError
from amr_dspy.evaluation import CrossCheck, EvalResults, PassAt1, TaskResult, package_versions, read_samples

__all__ = [
    "REFERENCE_MODULES",
    "ReferenceLimits",
    "ReferenceVerdict",
    "Disagreement",
    "LeftOut",
    "BigCodeBenchCrossCheck",
    "require_reference",
    "run_reference",
    "compare_verdicts",
    "crosscheck_bigcodebench",
    "crosscheck_headline",
    "crosscheck_lines",
]

# bigcodebench's evaluator and data loader import these (its other dependencies serve generation only)
REFERENCE_MODULES = ("bigcodebench", "numpy", "datasets", "appdirs", "tempdir", "wget", "matplotlib")
_SETUP_HINT = "run `make setup-bigcodebench`"
_TIMEOUT_LIMIT_S = 240.0  # bigcodebench.eval.utils.TIMEOUT_LIMIT
Status = Literal["pass", "fail", "timeout"]


class ReferenceLimits(BaseModel):
    """``bigcodebench.evaluate``'s defaults, and what the pool imports before it forks per task."""

    max_as_limit_mb: int = 30 * 1024
    max_data_limit_mb: int = 30 * 1024
    max_stack_limit_mb: int = 10
    min_time_limit_s: float = 1.0
    gt_time_limit_s: float = 20.0  # evaluate's value for a task without a measured canonical time
    calibrated: bool = True
    # As the project's sandbox does; else every task imports these anew (seconds each: hours on 2 cores). The fork
    # shares them; only the time a task takes changes. An empty tuple runs the reference exactly as it ships.
    preload: tuple[str, ...] = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats",
                                "sklearn")  # fmt: skip

    @property
    def timeout_s(self) -> float:
        """What ``untrusted_check`` gives a task (it waits one second more before killing it)."""
        return max(_TIMEOUT_LIMIT_S, self.min_time_limit_s, self.gt_time_limit_s) + 1


class ReferenceVerdict(BaseModel):
    task_id: str
    status: Status
    # test method ("ALL": the module as a whole) -> the last line of its traceback
    failed_tests: dict[str, str] = Field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def describe(self) -> str:
        if self.passed:
            return "pass"
        details = "; ".join(f"{name}: {line}" for name, line in sorted(self.failed_tests.items()))
        return f"{self.status} ({details})" if details else self.status


class Disagreement(BaseModel):
    task_id: str
    project_passed: bool
    project_failure: str | None = None  # "failure: failing test: message"
    reference: ReferenceVerdict


class LeftOut(BaseModel):
    """A task the project did not score (skipped or excluded), with the reference's verdict on it."""

    task_id: str
    reason: str
    reference: ReferenceVerdict


class BigCodeBenchCrossCheck(BaseModel):
    benchmark: str
    samples: str
    n_tasks: int
    n_scored: int
    project_passed: int  # of the scored tasks
    reference_passed: int  # of the same scored tasks
    reference_passed_all: int  # of every task, skipped and excluded ones included
    project: PassAt1
    reference: PassAt1
    agree: bool
    disagreements: list[Disagreement] = Field(default_factory=list)
    skipped: list[LeftOut] = Field(default_factory=list)
    excluded: list[LeftOut] = Field(default_factory=list)
    limits: ReferenceLimits
    reference_results: str  # the harness's raw verdicts (JSONL, full tracebacks)
    wall_s: float = 0.0
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def summary(self, path: Path) -> CrossCheck:
        """The evalplus-shaped record ``results.json`` keeps: its ``evalplus`` side holds the reference's pass@1."""
        return CrossCheck(
            project=self.project,
            evalplus=self.reference,
            agree=self.agree,
            disagreements=[d.task_id for d in self.disagreements],
            evalplus_results=str(path),
        )


# --------------------------------------------------------------------------------------------
# running the reference harness


def require_reference() -> None:
    """ConfigError naming the setup target when the ``bigcodebench`` package (or what its evaluator imports) is
    missing."""
    missing = [name for name in REFERENCE_MODULES if find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"--crosscheck on BigCodeBench needs the bigcodebench package's evaluator ({', '.join(missing)} "
            f"not installed): {_SETUP_HINT}"
        )


_REFERENCE_SCRIPT = r"""
import ctypes, fcntl, importlib, json, multiprocessing, os, signal, socket, struct, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed

def isolate():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: end with the project
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:  # an unprivileged user namespace grants the network namespace
        if libc.unshare(0x10000000) != 0:
            sys.exit("no user namespace for the reference harness: " + os.strerror(ctypes.get_errno()))
        for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    if libc.unshare(0x40000000) != 0:
        sys.exit("no network namespace for the reference harness: " + os.strerror(ctypes.get_errno()))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
            fcntl.ioctl(control, 0x8914, struct.pack("16sh22x", b"lo", 1))  # SIOCSIFFLAGS lo IFF_UP
    except OSError:
        pass  # a loopback that stays down still reaches nothing

def check(task_id, solution, limits):
    from bigcodebench.eval import untrusted_check
    problem = PROBLEMS[task_id]
    code = problem["code_prompt"] + "\n    pass\n" + solution if limits["calibrated"] else solution
    started = time.perf_counter()
    status, details = untrusted_check(
        code, problem["test"], problem["entry_point"], limits["max_as_limit_mb"], limits["max_data_limit_mb"],
        limits["max_stack_limit_mb"], limits["min_time_limit_s"], limits["gt_time_limit_s"])
    return {"task_id": task_id, "status": status, "details": {k: str(v) for k, v in details.items()},
            "wall_s": time.perf_counter() - started}

isolate()
from bigcodebench.data import get_bigcodebench
PROBLEMS = get_bigcodebench(subset="full")
request = json.load(open(sys.argv[1], encoding="utf-8"))
unknown = [t for t, _ in request["solutions"] if t not in PROBLEMS]
if unknown:
    sys.exit(f"{unknown[0]} is not in the release at BIGCODEBENCH_OVERRIDE_PATH")
for name in request["limits"]["preload"]:
    importlib.import_module(name)
pool = ProcessPoolExecutor(max_workers=request["parallel"], mp_context=multiprocessing.get_context("fork"))
with pool, open(sys.argv[2], "a", encoding="utf-8") as out:
    futures = [pool.submit(check, t, s, request["limits"]) for t, s in request["solutions"]]
    for future in as_completed(futures):
        out.write(json.dumps(future.result()) + "\n")
        out.flush()
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
"""


def run_reference(
    solutions: list[tuple[str, str]],
    *,
    data_file: Path,
    workdir: Path,
    parallel: int = 2,
    limits: ReferenceLimits | None = None,
) -> dict[str, ReferenceVerdict]:
    """Run the reference harness on ``(task id, solution)`` pairs; the raw verdicts go to
    ``workdir/reference_results.jsonl``, its log to ``workdir/reference.log``."""
    require_reference()
    limits = limits or ReferenceLimits()
    workdir.mkdir(parents=True, exist_ok=True)
    raw, log = workdir / "reference_results.jsonl", workdir / "reference.log"
    raw.unlink(missing_ok=True)
    # no hyphens in the path: some tests split their temporary paths on "-" (BigCodeBench/1127)
    scratch = "/tmp" if os.path.isdir("/tmp") else None
    with tempfile.TemporaryDirectory(prefix="amrbcbref", dir=scratch, ignore_cleanup_errors=True) as home:
        request = Path(home) / "request.json"
        request.write_text(json.dumps({"solutions": solutions, "parallel": parallel,
                                       "limits": limits.model_dump()}), encoding="utf-8")  # fmt: skip
        rounds = math.ceil(len(solutions) / max(parallel, 1))
        deadline = 120 + rounds * (limits.timeout_s + 30)  # a hung pool, not a slow task, ends the run
        code = _run_isolated([str(request), str(raw)], home=home, data_file=data_file, log=log, timeout_s=deadline)
    verdicts = _read_verdicts(raw)
    if code != 0 or len(verdicts) < len(solutions):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        ended = "timed out" if code is None else f"exit {code}"
        raise AmrDspyError(f"bigcodebench's untrusted_check failed ({ended}, {len(verdicts)} of {len(solutions)} "
                           f"tasks checked): {tail[0]} (log: {log})")  # fmt: skip
    return verdicts


def _run_isolated(args: list[str], *, home: str, data_file: Path, log: Path, timeout_s: float) -> int | None:
    """The reference script in its own session; whatever of that session is left afterwards is killed."""
    env = {k: v for k, v in os.environ.items() if k != "BIGCODEBENCH_TIMEOUT_PER_TASK"}  # its default: 240 s
    env |= {"BIGCODEBENCH_OVERRIDE_PATH": str(data_file.resolve()), "HOME": home, "TMPDIR": home,
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    with log.open("w", encoding="utf-8") as handle:
        proc = subprocess.Popen([sys.executable, "-c", _REFERENCE_SCRIPT, *args], env=env, cwd=home,
                                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        finally:
            _kill_session(proc)


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its group id is its pid: only what it started
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read_verdicts(path: Path) -> dict[str, ReferenceVerdict]:
    verdicts: dict[str, ReferenceVerdict] = {}
    if not path.is_file():
        return verdicts
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            failed = {name: _last_line(trace) for name, trace in row["details"].items()}
            verdicts[row["task_id"]] = ReferenceVerdict(task_id=row["task_id"], status=row["status"],
                                                        failed_tests=failed, wall_s=row["wall_s"])  # fmt: skip
    return verdicts


def _last_line(trace: str, width: int = 240) -> str:
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= width else last[: width - 1] + "…"


# --------------------------------------------------------------------------------------------
# comparing


def compare_verdicts(
    results: EvalResults,
    verdicts: dict[str, ReferenceVerdict],
    *,
    samples: str,
    reference_results: str,
    limits: ReferenceLimits,
) -> BigCodeBenchCrossCheck:
    """The project's verdict on each scored task next to the reference's; skipped and excluded tasks apart."""
    scored = [t for t in results.tasks if t.scored]
    disagreements = [
        Disagreement(task_id=t.task_id, project_passed=t.plus_passed, project_failure=_project_failure(t),
                     reference=verdicts[t.task_id])  # fmt: skip
        for t in scored
        if t.plus_passed != verdicts[t.task_id].passed
    ]
    skipped = [LeftOut(task_id=t.task_id, reason=f"not installed: {', '.join(t.missing_modules)}",
                       reference=verdicts[t.task_id]) for t in results.tasks if t.missing_modules]  # fmt: skip
    excluded = [LeftOut(task_id=t.task_id, reason=t.excluded, reference=verdicts[t.task_id])
                for t in results.tasks if t.excluded is not None]  # fmt: skip
    n = len(scored)
    reference_passed = sum(verdicts[t.task_id].passed for t in scored)
    rate = reference_passed / n if n else 0.0
    return BigCodeBenchCrossCheck(
        benchmark=results.benchmark,
        samples=samples,
        n_tasks=len(results.tasks),
        n_scored=n,
        project_passed=sum(t.plus_passed for t in scored),
        reference_passed=reference_passed,
        reference_passed_all=sum(verdicts[t.task_id].passed for t in results.tasks),
        project=results.pass_at_1,
        reference=PassAt1(base=rate, plus=rate),  # one unittest module per task: base and plus are the same
        agree=not disagreements,
        disagreements=disagreements,
        skipped=skipped,
        excluded=excluded,
        limits=limits,
        reference_results=reference_results,
        versions=package_versions("amr-dspy", "bigcodebench", "numpy", "pandas", "scipy", "scikit-learn",
                                  "matplotlib"),  # fmt: skip
    )


def _project_failure(task: TaskResult) -> str | None:
    parts = [part for part in (task.failure, task.failed_test, task.failure_message) if part]
    return ": ".join(parts) or None


def crosscheck_bigcodebench(
    samples_path: Path,
    results: EvalResults,
    *,
    data_file: Path,
    workdir: Path,
    parallel: int = 2,
    limits: ReferenceLimits | None = None,
) -> BigCodeBenchCrossCheck:
    """Run the reference harness on the samples of ``results``' tasks and compare; writes ``workdir/crosscheck.json``.

    Every task is run in the reference, the skipped and excluded ones too, so the record says how it fares on them.
    """
    limits = limits or ReferenceLimits()
    solutions = read_samples(samples_path)
    missing = [t.task_id for t in results.tasks if t.task_id not in solutions]
    if missing:
        raise DataError(f"{samples_path}: no solution for {missing[0]} (and {len(missing) - 1} more)")
    started = time.perf_counter()
    pairs = [(t.task_id, solutions[t.task_id]) for t in results.tasks]
    verdicts = run_reference(pairs, data_file=data_file, workdir=workdir, parallel=parallel, limits=limits)
    record = compare_verdicts(results, verdicts, samples=str(samples_path),
                              reference_results=str(workdir / "reference_results.jsonl"), limits=limits)  # fmt: skip
    record.wall_s = time.perf_counter() - started
    (workdir / "crosscheck.json").write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return record


# --------------------------------------------------------------------------------------------
# rendering


def crosscheck_headline(record: BigCodeBenchCrossCheck) -> str:
    verdict = "[green]agrees[/]" if record.agree else f"[red]differs on {len(record.disagreements)} task(s)[/]"
    n = record.n_scored
    return (f"bigcodebench untrusted_check: {record.reference_passed}/{n} ({100 * record.reference.plus:.1f}%), "
            f"project {record.project_passed}/{n} — {verdict}")  # fmt: skip


def crosscheck_lines(record: BigCodeBenchCrossCheck, *, limit: int = 20) -> list[str]:
    """One line per disagreement (the first ``limit``), then what the reference made of the left-out tasks."""
    lines = [
        f"[red]bigcodebench disagrees on {d.task_id}:[/] project "
        f"{'pass' if d.project_passed else 'fail (' + (d.project_failure or '') + ')'}, "
        f"reference {d.reference.describe()}"
        for d in record.disagreements[:limit]
    ]
    if len(record.disagreements) > limit:
        lines.append(f"… and {len(record.disagreements) - limit} more (see {record.reference_results})")
    for name, group in (("skipped", record.skipped), ("excluded", record.excluded)):
        if group:
            passed = sum(item.reference.passed for item in group)
            lines.append(f"not compared: {len(group)} {name} here, of which the reference passes {passed}")
    return lines
