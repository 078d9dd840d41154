"""Run untrusted generated code against hidden tests, contained.

A :class:`Sandbox` keeps a few long-lived worker processes (``_sandbox_worker.py``), each started with a
minimal environment in fresh network, pid and mount namespaces (where the OS allows; :attr:`Sandbox.isolation`
says what is in force). A worker forks one child per request; the child takes its resource limits (address
space, CPU, file size, no new processes), drops to an unprivileged uid of its own, runs in a fresh work dir on a
small private tmpfs and applies evalplus's ``reliability_guard`` before it executes the code and the tests.
Call tests are compared as evalplus 0.3.1 does.

A request of :class:`~amr_dspy.testcases.UnitTestModule` tests (BigCodeBench) runs the solution and the test
module in one module namespace, with one outcome per test method. Its code uses pandas, matplotlib and sklearn,
deletes and moves files and starts subprocesses, which evalplus's guard forbids (it even blocks importing
sklearn), so such a child gets a lighter guard instead: destructive file calls are refused outside its scratch
directories, ``exit``/``quit`` are gone, ``MPLBACKEND=Agg`` and ``TZ=UTC`` (as BigCodeBench sets them). The OS
level stays as it is, with up to ``SandboxLimits.max_processes`` extra processes or threads where the uid drop
makes that limit bind; strays are killed and the shared scratch dirs emptied after every request.

The code under test can only ever produce outcomes: a child that hangs, explodes or kills itself is
reported per test, and a worker that dies is replaced and its request reported as ``crashed``.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from amr_dspy import _sandbox_worker as wire
from amr_dspy.errors import SandboxError
from amr_dspy.testcases import CallTest, ExecutionRequest, ExecutionResult, TestCase, TestOutcome, UnitTestModule

__all__ = ["SandboxLimits", "Sandbox", "run_once"]

log = logging.getLogger(__name__)

_WORKER_SCRIPT = Path(wire.__file__).resolve()
_START_TIMEOUT_S = 60.0  # importing numpy and evalplus on a loaded machine
_REPLY_GRACE_S = 30.0  # beyond max_wall_s, for the worker's own bookkeeping (cleaning the work dir)
_MIN_TIME_LIMIT_S = 0.01  # setitimer(0) would disable the timer altogether
_WORKER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",  # a preloaded matplotlib picks its backend in the worker, once
}


def _matplotlib_cache(preload: tuple[str, ...]) -> str:
    """matplotlib's config and font cache for the workers, under the user cache. In the worker's throwaway HOME
    every worker that preloads matplotlib rebuilt the font cache (seconds; past the start timeout on a loaded
    machine), and the worker cannot write one for the next: it is built here once, by this user."""
    from amr_dspy.model_files import amr_home

    path = amr_home() / "matplotlib"
    path.mkdir(parents=True, exist_ok=True)
    if any(name.split(".")[0] == "matplotlib" for name in preload) and not any(path.glob("fontlist-*.json")):
        subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], check=False, capture_output=True,
                       env=_WORKER_ENV | {"HOME": str(path), "MPLCONFIGDIR": str(path)}, timeout=300)  # fmt: skip
    return str(path)


class SandboxLimits(BaseModel):
    """Resource limits for one request (per child process unless noted), and what each worker preloads."""

    model_config = ConfigDict(frozen=True)

    memory_mb: int = Field(1024, gt=0)  # RLIMIT_AS (also RLIMIT_DATA and RLIMIT_STACK, as evalplus does)
    cpu_s: int = Field(20, gt=0)  # RLIMIT_CPU
    file_size_mb: int = Field(16, ge=0)  # RLIMIT_FSIZE
    max_output_bytes: int = Field(16_384, ge=0)  # per stream; the rest is dropped and the cut marked
    max_wall_s: float = Field(60.0, gt=0)  # whole request, on top of the per-test limits
    network: bool = False  # False: workers run in a fresh network namespace where the OS allows
    load_timeout_s: float = Field(10.0, gt=0)  # the solution's top level (at least the slowest test's limit)
    # Extra processes or threads a unittest request's child may start (RLIMIT_NPROC; binds only with the uid
    # drop, so without root it stays 0). Each may use memory_mb, so a request can hold (1 + this) * memory_mb.
    max_processes: int = Field(0, ge=0, le=64)
    # Modules each worker imports once at start, so every child starts with them (forked, not re-imported);
    # one that fails to import is left out. Not for plain requests' limits: they count against memory_mb.
    preload: tuple[str, ...] = ()


class _WorkerDied(Exception):
    """The worker process ended or stopped answering; the message says how."""

    def __init__(self, message: str, *, delivered: bool = True) -> None:
        super().__init__(message)
        self.delivered = delivered  # False: the request never reached the worker


class _Worker:
    """One worker process and the pipes to it; used by one thread at a time."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.root = tempfile.mkdtemp(prefix="amr-sandbox-")
        os.chmod(self.root, 0o711)  # the child may enter its own work dir inside, but not list others
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_WORKER_ENV | {"HOME": self.root, "MPLCONFIGDIR": _matplotlib_cache(limits.preload)},
            cwd=self.root,
            start_new_session=True,  # a terminal's Ctrl-C goes to us; we stop the workers
        )
        self.pid = self.proc.pid
        self.isolation: dict[str, bool | str] = {}
        config = {"limits": limits.model_dump(), "root": self.root, "sys_path": list(sys.path)}
        try:
            self._send(wire.encode_frame(config))
            hello = self._receive(time.monotonic() + _START_TIMEOUT_S)
        except _WorkerDied as exc:
            self.kill()
            raise SandboxError(f"sandbox worker {_WORKER_SCRIPT.name} failed to start: {exc}") from None
        if not hello.get("ready"):
            self.kill()
            raise SandboxError(f"sandbox worker {_WORKER_SCRIPT.name} failed to start: {hello.get('error')}")
        self.isolation = hello["isolation"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def execute(self, frame: bytes, timeout_s: float) -> dict[str, Any]:
        self._send(frame)
        return self._receive(time.monotonic() + timeout_s)

    def _send(self, frame: bytes) -> None:
        try:
            wire.write_all(self.proc.stdin.fileno(), frame)  # type: ignore[union-attr]
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerDied(f"could not reach the worker ({type(exc).__name__})", delivered=False) from None

    def _receive(self, deadline: float) -> dict[str, Any]:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _WorkerDied("the worker stopped answering")
            if select.select([fd], [], [], left)[0]:
                break
        try:
            reply: dict[str, Any] | None = wire.recv_frame(fd)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise _WorkerDied(f"garbled reply from the worker ({type(exc).__name__})") from None
        if reply is None:
            raise _WorkerDied(f"the worker died ({_exit_text(self.proc.wait())})")
        return reply

    def stop(self) -> None:
        """Ask the worker to leave, then make sure it has."""
        if self.alive():
            try:
                self._send(wire.encode_frame({"op": "shutdown"}))
                self.proc.wait(timeout=5)
            except (_WorkerDied, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its children die with it (parent-death signal)
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _stop_all(workers: list[_Worker | None]) -> None:
    for worker in workers:
        if worker is not None:
            worker.stop()


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


class Sandbox:
    """A pool of sandbox workers. Thread-safe; use as a context manager or call :meth:`close`."""

    def __init__(self, limits: SandboxLimits | None = None, workers: int = 2) -> None:
        if workers < 1:
            raise SandboxError(f"Sandbox(workers={workers}): need at least one worker")
        self.limits = limits or SandboxLimits()
        self._idle: queue.Queue[int] = queue.Queue()
        self._slots: list[_Worker | None] = [None] * workers
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_all, self._slots)
        with ThreadPoolExecutor(workers) as pool:
            errors = [e for e in pool.map(self._start_slot, range(workers)) if e is not None]
        if errors:
            self.close()
            raise errors[0]
        for slot in range(workers):
            self._idle.put(slot)
        self.isolation: dict[str, bool | str] = self._describe_isolation()

    # -- public -------------------------------------------------------------------------------

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run one request. Whatever the code under test does becomes outcomes (or ``crashed``);
        only a malformed request (a call test without entry point, unpicklable data) raises SandboxError."""
        frame = _frame(request, self.limits)
        if self._closed:
            raise SandboxError("sandbox: run() called after close()")
        slot = self._idle.get()
        try:
            return self._run_on(slot, request, frame)
        finally:
            self._idle.put(slot)

    def run_many(self, requests: Sequence[ExecutionRequest]) -> list[ExecutionResult]:
        """Run requests on all workers at once; results come back in the order of ``requests``."""
        if not requests:
            return []
        with ThreadPoolExecutor(min(len(self._slots), len(requests))) as pool:
            return list(pool.map(self.run, requests))

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._slots if w is not None and w.alive()]

    def close(self) -> None:
        self._closed = True
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _start_slot(self, slot: int) -> SandboxError | None:
        try:
            self._slots[slot] = _Worker(self.limits)
        except (SandboxError, OSError) as exc:
            self._slots[slot] = None
            return exc if isinstance(exc, SandboxError) else SandboxError(f"sandbox: cannot start a worker: {exc}")
        return None

    def _run_on(self, slot: int, request: ExecutionRequest, frame: bytes) -> ExecutionResult:
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                worker = self._ready_worker(slot)
            except SandboxError as exc:
                return _crashed(request, str(exc), time.monotonic() - started)
            try:
                return _result(request, worker.execute(frame, self.limits.max_wall_s + _REPLY_GRACE_S))
            except _WorkerDied as exc:
                worker.kill()
                self._slots[slot] = None  # replaced on the next use
                if not exc.delivered and attempt == 1:
                    continue  # it had died while idle: not this request's doing
                reason = f"sandbox worker pid {worker.pid}: {exc}"
                log.warning("%s; replacing it", reason)
                return _crashed(request, reason, time.monotonic() - started)
        raise AssertionError("unreachable")

    def _ready_worker(self, slot: int) -> _Worker:
        worker = self._slots[slot]
        if worker is not None and worker.alive():
            return worker
        if worker is not None:
            worker.kill()
        error = self._start_slot(slot)
        if error is not None:
            raise error
        return self._slots[slot]  # type: ignore[return-value]

    def _describe_isolation(self) -> dict[str, bool | str]:
        worker = next(w for w in self._slots if w is not None)
        found = dict(worker.isolation)
        facts: dict[str, bool | str] = {
            "network_namespace": bool(found.pop("network_namespace", False)),
            "pid_namespace": bool(found.pop("pid_namespace", False)),
            "mount_namespace": bool(found.pop("mount_namespace", False)),
            "uid_drop": bool(found.pop("uid_drop", False)),
            "process_limit": bool(found.pop("process_limit", False)),
            "loopback_blocked": bool(found.pop("loopback_blocked", False)),
            "rlimits": f"AS={self.limits.memory_mb}MB CPU={self.limits.cpu_s}s FSIZE={self.limits.file_size_mb}MB"
            + (f" NPROC=+{self.limits.max_processes} (unittest requests)" if self.limits.max_processes else ""),
            "reliability_guard": True,
            "env_scrubbed": True,
            "fresh_workdir": True,
            "parent_death_signal": True,
            "running_as_root": os.geteuid() == 0,
            **found,
        }
        if self.limits.network:
            facts["network_namespace"] = "disabled (SandboxLimits.network=True)"
        elif facts["network_namespace"] is False:
            _warn_once(
                "sandbox: the OS refused a network namespace "
                f"({found.get('network_namespace_error', 'unknown reason')}); untrusted code can reach the network"
            )
        if not facts["uid_drop"]:
            _warn_once("sandbox: not running as root, so children keep this user's uid (no uid drop)")
        return facts


def _frame(request: ExecutionRequest, limits: SandboxLimits) -> bytes:
    """The pickled run message for a worker (plain data: the worker does not import amr_dspy)."""
    units = [t for t in request.tests if isinstance(t, UnitTestModule)]
    if units and len(units) != len(request.tests):
        raise SandboxError(f"sandbox: task {request.task_id!r} mixes unittest modules with other tests")
    tests = [_test_payload(test, request) for test in request.tests]
    payload = {
        "code": request.code,
        "entry_point": request.entry_point,
        "dataset": request.dataset,
        "fail_fast": request.fail_fast,
        "tests": tests,
        "exec_limit_s": max([limits.load_timeout_s, *(t["time_limit_s"] for t in tests)]),
        "module": "__test__" if units else None,  # BigCodeBench's module name for the solution + tests
        "prelude": "".join(dict.fromkeys(unit.prelude for unit in units)),
        "libraries": sorted({name for unit in units for name in unit.libraries}),
    }
    try:
        return wire.encode_frame({"op": "run", "request": payload})
    except Exception as exc:  # pickle raises several types for unpicklable objects
        raise SandboxError(f"sandbox: task {request.task_id!r} has test data that cannot be pickled: {exc}") from None


def _test_payload(test: TestCase, request: ExecutionRequest) -> dict[str, Any]:
    common = {"name": test.name, "time_limit_s": max(test.time_limit_s, _MIN_TIME_LIMIT_S), "plus": test.plus}
    if isinstance(test, CallTest):
        if request.entry_point is None:
            raise SandboxError(f"sandbox: call test {test.name!r} of task {request.task_id!r} needs an entry_point")
        return common | {"kind": "call", "inputs": test.inputs, "expected": test.expected, "atol": test.atol}
    if isinstance(test, UnitTestModule):
        return common | {"kind": "unittest", "source": test.source, "test_class": test.test_class}
    return common | {"kind": "assert", "code": test.code}


def _outcomes(request: ExecutionRequest, entries: list[tuple[Any, ...]]) -> list[TestOutcome]:
    """One outcome per call or assert test; one per test method of a unittest module (its name if none ran)."""
    return [outcome for test, entry in zip(request.tests, entries, strict=True) for outcome in _expand(test, entry)]


def _expand(test: TestCase, entry: tuple[Any, ...]) -> list[TestOutcome]:
    status, message, missing, methods = entry
    rows = methods or [(None, status, message, missing)]
    return [TestOutcome(name=name or test.name, status=state, message=text, plus=test.plus,
                        missing_module=lib) for name, state, text, lib in rows]  # fmt: skip


def _result(request: ExecutionRequest, reply: dict[str, Any]) -> ExecutionResult:
    return ExecutionResult(
        outcomes=_outcomes(request, reply["outcomes"]),
        stdout=reply["stdout"],
        stderr=reply["stderr"],
        wall_s=reply["wall_s"],
    )


def _crashed(request: ExecutionRequest, reason: str, wall_s: float) -> ExecutionResult:
    message = f"not run: {reason}"
    return ExecutionResult(
        outcomes=_outcomes(request, [("error", message, None, None)] * len(request.tests)),
        crashed=True,
        crash_reason=reason,
        wall_s=wall_s,
    )


def run_once(request: ExecutionRequest, limits: SandboxLimits | None = None) -> ExecutionResult:
    """Run a single request in a one-worker sandbox that is closed afterwards."""
    with Sandbox(limits, workers=1) as sandbox:
        return sandbox.run(request)
