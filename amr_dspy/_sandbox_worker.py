"""The sandbox's long-lived worker process (private; started by ``amr_dspy.sandbox``).

It runs as a script (``python -I _sandbox_worker.py``) with a minimal environment, so it imports only the
standard library, numpy and evalplus. It enters fresh network, mount and pid namespaces (serving as the pid
namespace's init), imports what the harness needs once, then serves requests from its parent: for each request
it forks one child per attempt, and that child sets its resource limits, drops to an unprivileged uid, applies
evalplus's ``reliability_guard`` and only then runs the untrusted code and the tests. A child that dies in a
test is followed by a fresh one for the remaining tests (unless the request is fail-fast).

A unittest request (BigCodeBench) runs the solution and the test module in one module namespace and reports
each test method; its child gets a lighter guard (see ``_unittest_guard``), may start ``max_processes`` more
processes where the uid drop makes that limit bind, and whatever it leaves running is killed afterwards. After
every request the private scratch dirs (/tmp, /var/tmp, /dev/shm) are emptied, so no request sees another's files.

Protocol. Parent <-> worker: length-prefixed pickles on the worker's stdin/stdout (both sides trusted).
Child -> worker: JSON lines on fd 3 — never pickle, since the child runs untrusted code. The worker trusts
nothing the child says beyond its shape and keeps its own clock for every time limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import json
import os
import pickle
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import unittest
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

_HEADER = struct.Struct(">Q")
_EVENT_FD = 3
_GRACE_S = 1.0  # extra wall time before the worker kills a child whose in-process timer did not fire
_MAX_EVENT_BYTES = 1 << 20
_MESSAGE_CHARS = 1000
_REPR_CHARS = 300
_STATUSES = frozenset({"passed", "failed", "error", "timeout", "memory", "skipped"})
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_SIOCSIFFLAGS, _IFF_UP = 0x8914, 0x1
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PIPE_BYTES = 1 << 16
_PR_SET_PDEATHSIG = 1
_MAX_METHODS = 10_000  # test methods of one unittest module
_MAX_FIXTURE_ERRORS = 100  # setUpClass, tearDownModule, ... errors reported as outcomes of their own
_NAME_CHARS = 200
# destructive file calls a unittest child may only aim at its scratch dirs, and how many paths each takes
_FILE_CALLS = (
    (os, {"remove": 1, "unlink": 1, "rmdir": 1, "removedirs": 1, "truncate": 1, "chmod": 1, "chown": 1,
          "rename": 2, "renames": 2, "replace": 2}),
    (shutil, {"rmtree": 1, "move": 2}),
)
_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# imported once in the worker, so every child starts with them (faster, and they work even where the
# interpreter's own files stay out of the sandbox uid's reach)
_PRELOAD = (
    "array", "bisect", "cmath", "collections", "collections.abc", "copy", "dataclasses", "datetime", "decimal",
    "encodings.idna", "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math",
    "operator", "random", "re", "statistics", "string", "textwrap", "types", "typing", "unicodedata", "unittest",
    "unittest.mock",
)
SANDBOX_UID_BASE = 1_000_000_000  # child uid = base + worker pid: unique per live worker, in no passwd file


# --------------------------------------------------------------------------------------------
# framing


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(fd: int) -> Any:
    """One pickled frame, or None at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def encode_frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def send_frame(fd: int, obj: Any) -> None:
    write_all(fd, encode_frame(obj))


# --------------------------------------------------------------------------------------------
# isolation of the worker itself


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> None:
    if _libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    args = [None if a is None else a.encode() for a in (source, target, fstype)]
    if _libc().mount(*args, ctypes.c_ulong(flags), None if data is None else data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _first_unsearchable(path: str) -> str | None:
    """The topmost directory on ``path`` that other users may not traverse."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & 0o001:
            return current
    return None


def _expose_interpreter(extra: str) -> str:
    """Make the interpreter's own directories reachable for the sandbox uid (inside our mount namespace).

    An interpreter installed under a private home (``/root/.pyenv``) cannot import its standard library
    once a child drops to another uid. Here the blocking directory is covered with a tmpfs that holds
    only bind mounts of the directories Python needs — at their usual paths, so nothing else changes.
    """
    paths = _interpreter_paths(extra)
    blocked: dict[str, list[str]] = {}
    for path in paths:
        blocker = _first_unsearchable(path)
        if (blocker is not None and blocker != path
                and not any(path.startswith(top + "/") for top in blocked.get(blocker, []))):
            blocked.setdefault(blocker, []).append(path)
    if not blocked:
        return "not needed"
    try:
        for blocker, tops in blocked.items():
            staged = [(path, tempfile.mkdtemp(prefix="amr-sandbox-stage-")) for path in tops]
            for path, stage in staged:
                _mount(path, stage, None, _MS_BIND | _MS_REC)
            _mount("tmpfs", blocker, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755,size=1m")
            for path, stage in staged:
                os.makedirs(path, exist_ok=True)
                _mount(stage, path, None, _MS_BIND | _MS_REC)
                _libc().umount2(stage.encode(), _MNT_DETACH)
                os.rmdir(stage)
    except OSError as exc:
        return f"no ({exc}); only preloaded modules can be imported"
    return "yes, " + ", ".join(sorted(blocked)) + " covered by a tmpfs holding only the interpreter"


def _interpreter_paths(extra: str) -> list[str]:
    wanted = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path, extra]
    return sorted({os.path.abspath(p) for p in wanted if p and os.path.isdir(p)}, key=len)


def _cover(target: str, data: str, keep: list[str]) -> None:
    """Mount a tmpfs over ``target``, keeping the ``keep`` paths below it visible at the same places.

    A virtualenv or checkout under /tmp (as in CI) would otherwise vanish under the scratch tmpfs. Each kept
    directory is held open by an O_PATH descriptor and bind-mounted back through /proc/self/fd.
    """
    inside = [p for p in keep if p.startswith(target.rstrip("/") + "/")]
    outermost = [p for p in inside if not any(p != q and p.startswith(q + "/") for q in inside)]
    held = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in outermost]
    try:
        _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, data)
        for path, fd in held:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
    finally:
        for _, fd in held:
            os.close(fd)


def private_mounts(root: str, scratch_mb: int, expose: bool) -> tuple[dict[str, bool | str], list[str]]:
    """A private mount namespace where every world-writable scratch dir and the work dirs are small tmpfs.

    Code that floods /tmp or /dev/shm fills a capped tmpfs that vanishes with the worker, never the host's
    disk or shared memory. Must run before the worker imports anything that could start a thread. Returns
    the facts and the scratch dirs now private to this worker.
    """
    try:
        _unshare(_CLONE_NEWNS)
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing mounted here reaches the host
    except OSError as exc:
        return {"mount_namespace": False, "mount_namespace_error": f"{type(exc).__name__}: {exc}"}, []
    facts: dict[str, bool | str] = {"mount_namespace": True}
    if expose:
        facts["interpreter_exposed"] = _expose_interpreter(root)
    covered = []
    options = f"size={scratch_mb}m"
    for path in _SCRATCH_DIRS:
        try:
            if os.path.isdir(path) and os.stat(path).st_mode & 0o002:
                _cover(path, "mode=1777," + options, keep=_interpreter_paths(root))
                covered.append(path)
        except OSError:
            pass
    try:
        os.makedirs(root, mode=0o711, exist_ok=True)  # gone if it was under a covered dir
        _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=711," + options)
        covered.append("the work dirs")
    except OSError:
        pass
    facts["private_scratch"] = f"{', '.join(covered) or 'none'} (tmpfs, {scratch_mb}MB each)"
    return facts, [path for path in covered if path in _SCRATCH_DIRS]


def _enter_user_namespace() -> None:
    """Unprivileged: a user namespace mapping only our own ids grants the other namespaces."""
    uid, gid = os.geteuid(), os.getegid()
    _unshare(_CLONE_NEWUSER)
    for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)


def enter_namespaces(isolate_network: bool) -> dict[str, bool | str]:
    """Fresh network (only a downed loopback) and pid namespaces, as far as the OS allows.

    Must run while the process is single-threaded. The pid namespace takes effect for the next fork:
    the caller forks once more and lets that child serve as the namespace's init.
    """
    facts: dict[str, bool | str] = {}
    if os.geteuid() != 0:
        try:
            _enter_user_namespace()
            facts["user_namespace"] = True
        except OSError as exc:
            facts["user_namespace"] = f"no ({exc})"
    wanted = [("network", _CLONE_NEWNET)] if isolate_network else []
    for name, flag in [*wanted, ("pid", _CLONE_NEWPID)]:
        try:
            _unshare(flag)
            facts[f"{name}_namespace"] = True
        except OSError as exc:
            facts[f"{name}_namespace"] = False
            facts[f"{name}_namespace_error"] = f"{type(exc).__name__}: {exc}"
    return facts


def become_namespace_init() -> None:
    """Fork into the new pid namespace; this process stays behind only to mirror the worker's exit.

    As the namespace's init the worker cannot be signalled by its children (the kernel drops signals
    from inside the namespace that init has no handler for), they cannot see or signal anything on the
    host, and when the worker dies the kernel kills every process left in the namespace.
    """
    pid = os.fork()
    if pid:
        os.closerange(0, os.sysconf("SC_OPEN_MAX"))  # the protocol pipes now belong to the worker alone
        status = os.waitpid(pid, 0)[1]
        if os.WIFSIGNALED(status):  # die the same way, so the parent can say how the worker ended
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
            os.kill(os.getpid(), os.WTERMSIG(status))
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # delivered: it comes from the parent namespace
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------
# the child: limits, privilege drop, guard, then the untrusted code


@dataclass(frozen=True)
class ChildSpec:
    """What a forked child needs; built by the worker before the fork."""

    request: dict[str, Any]
    start: int  # the first test this child runs (later ones follow a child that died)
    carry: list[bool]  # evalplus's raised atol, per base/plus group, from the previous child
    workdir: str
    limits: dict[str, Any]
    uid: int | None  # None: keep the worker's uid (not root)
    scratch: tuple[str, ...] = ()  # the worker's private scratch dirs (its own tmpfs, emptied after each request)


def _process_limit(request: dict[str, Any], limits: dict[str, Any], uid: int | None) -> int:
    """RLIMIT_NPROC for the child: itself plus the extra processes a unittest request may start.

    Only under the sandbox uid does the limit count this request's processes alone; a child that keeps the
    worker's uid shares the count with everything that user runs, so it gets none.
    """
    extra = int(limits.get("max_processes") or 0)
    return extra + 1 if extra and request.get("module") and uid is not None else 0


def _confine(spec: ChildSpec, worker_pid: int) -> None:
    import resource

    os.setsid()
    os.chdir(spec.workdir)
    os.environ.clear()
    os.environ.update(
        {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": spec.workdir, "TMPDIR": spec.workdir,
         "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    )
    tempfile.tempdir = spec.workdir
    if spec.request.get("module"):
        _bigcodebench_environment(spec)
    cpu = int(spec.limits["cpu_s"])
    fsize = int(spec.limits["file_size_mb"]) << 20
    nproc = _process_limit(spec.request, spec.limits, spec.uid)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))  # 0: no fork, no threads (binds only without root)
    memory = int(spec.limits["memory_mb"]) << 20
    for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA, resource.RLIMIT_STACK):  # as reliability_guard does
        resource.setrlimit(limit, (memory, memory))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes raise OSError instead of killing us
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    if spec.uid is not None:
        os.setgroups([])
        os.setresgid(spec.uid, spec.uid, spec.uid)
        os.setresuid(spec.uid, spec.uid, spec.uid)
    # after the uid change, which clears it: die with the worker, and catch a worker that died already
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != worker_pid:
        os._exit(1)


def _bigcodebench_environment(spec: ChildSpec) -> None:
    """As BigCodeBench runs a task: headless plots, UTC, a ``python`` for scripts, temporary files in /tmp (paths
    without this sandbox's hyphens, which tests split on; /tmp is emptied after every request), and a loopback
    to serve on in a network namespace of the child's own (still nothing outside it is reachable)."""
    tmp = "/tmp" if "/tmp" in spec.scratch else spec.workdir
    python = os.path.dirname(sys.executable)
    os.environ.update({"MPLBACKEND": "Agg", "TZ": "UTC", "PATH": f"{python}:/usr/bin:/bin", "TMPDIR": tmp})
    tempfile.tempdir = tmp
    if not spec.limits["network"]:
        _own_loopback()


def _own_loopback() -> None:
    import fcntl
    import socket

    try:
        _unshare(_CLONE_NEWNET)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
            fcntl.ioctl(control, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", _IFF_UP))  # struct ifreq
    except OSError:
        pass  # the worker's namespace stays, with its loopback down


def _emit(event: dict[str, Any]) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the code under test may have replaced or closed the stream
            pass
    line = (json.dumps(event) + "\n").encode()
    # a unittest module's timer runs while events are sent: a half-written line would read as tampering
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        write_all(_EVENT_FD, line)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _clip(text: str, limit: int = _MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "... [truncated]"


def _safe_repr(value: Any) -> str:
    try:
        return _clip(repr(value), _REPR_CHARS)
    except BaseException as exc:  # a hostile __repr__
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _describe(exc: BaseException, filename: str | None = None, source: str | None = None) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except BaseException:
        text = type(exc).__name__
    if filename is not None:
        line = _failing_line(exc, filename)
        if line is not None:
            code_line = _source_line(source, line)
            text += f" (line {line}: {code_line})" if code_line else f" (line {line})"
    return _clip(text)


def _failing_line(exc: BaseException, filename: str) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _source_line(source: str | None, line: int | None) -> str | None:
    if source is None or not line:
        return None
    lines = source.splitlines()
    return _clip(lines[line - 1].strip(), 200) if 0 < line <= len(lines) else None


class _Mismatch(Exception):
    pass


def _check(dataset: str | None, entry_point: str, inp: list[Any], out: Any, exp: Any, atol_box: list[float]) -> None:
    """evalplus 0.3.1 ``unsafe_execute``'s comparison, step for step; raises on a mismatch.

    ``atol_box`` holds the task's atol: evalplus raises a zero atol to 1e-6 once it meets a float
    expectation and keeps it for the later inputs of the same run, so the box carries it on.
    """
    import numpy as np
    from evalplus.eval import (
        MBPP_OUTPUT_NOT_NONE_TASKS,
        MBPP_OUTPUT_SET_EQ_TASKS,
        _digit_distance_nums,
        _poly,
        _surface_Area,
        is_floats,
    )

    atol = atol_box[0]
    exact_match = out == exp
    if dataset == "mbpp":
        if entry_point == "are_equivalent":  # Mbpp/164
            exact_match = exact_match or True
        elif entry_point == "sum_div":  # Mbpp/295
            exact_match = exact_match or out == 0
        elif entry_point == "surface_Area":  # Mbpp/581
            exact_match = exact_match or abs(out - _surface_Area(*inp)) <= atol
        elif entry_point == "digit_distance_nums":  # Mbpp/558
            exact_match = exact_match or out == _digit_distance_nums(*inp)
        elif entry_point in MBPP_OUTPUT_SET_EQ_TASKS:
            exact_match = set(out) == set(exp)
        elif entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
            exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
    if dataset == "humaneval" and entry_point == "find_zero":  # HumanEval/32
        residual = abs(_poly(*inp, out))
        if not residual <= atol:
            raise _Mismatch(f"|poly(xs, {_safe_repr(out)})| = {residual!r} exceeds atol {atol!r}")
        return
    if atol == 0 and is_floats(exp):
        atol = atol_box[0] = 1e-6
    if not exact_match and atol != 0:
        if type(out) != type(exp):  # noqa: E721 - evalplus compares exact types
            raise _Mismatch(f"type {type(out).__name__} differs from expected {type(exp).__name__}")
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            raise _Mismatch(f"length {len(out)} differs from expected {len(exp)}")
        if not np.allclose(out, exp, rtol=1e-07, atol=atol):
            raise _Mismatch(f"not within atol {atol!r}")
    elif not exact_match:
        raise _Mismatch("")


def _run_call(test: dict[str, Any], fn: Any, request: dict[str, Any], carry: list[bool]) -> tuple[str, str | None]:
    import copy

    from evalplus.eval.utils import TimeoutException, time_limit

    inp = copy.deepcopy(test["inputs"])
    try:
        with time_limit(test["time_limit_s"]):
            out = fn(*inp)
    except TimeoutException:
        return "timeout", f"exceeded the time limit of {test['time_limit_s']:g}s"
    except MemoryError as exc:
        return "memory", _describe(exc, "<solution>", request["code"])
    except BaseException as exc:
        return "error", _describe(exc, "<solution>", request["code"])
    group = int(test["plus"])
    atol_box = [test["atol"] if test["atol"] != 0 or not carry[group] else 1e-6]
    try:
        _check(request["dataset"], request["entry_point"], inp, out, test["expected"], atol_box)
    except BaseException as exc:
        detail = str(exc) if isinstance(exc, _Mismatch) else f"comparison raised {_describe(exc)}"
        message = f"expected {_safe_repr(test['expected'])}, got {_safe_repr(out)}"
        return "failed", _clip(f"{message} ({detail})" if detail else message)
    finally:
        carry[group] = carry[group] or atol_box[0] != test["atol"]
    return "passed", None


def _run_assert(test: dict[str, Any], namespace: dict[str, Any]) -> tuple[str, str | None]:
    from evalplus.eval.utils import TimeoutException, time_limit

    filename = "<test>"
    try:
        code = compile(test["code"], filename, "exec")
    except BaseException as exc:
        return "error", "test does not compile: " + _describe(exc, filename, test["code"])
    try:
        with time_limit(test["time_limit_s"]):
            exec(code, namespace)
    except TimeoutException:
        return "timeout", f"exceeded the time limit of {test['time_limit_s']:g}s"
    except AssertionError as exc:
        line = _source_line(test["code"], _failing_line(exc, filename))
        text = str(exc)
        if line:
            text = f"{text} ({line})" if text else line
        return "failed", _clip(text or "AssertionError")
    except MemoryError as exc:
        return "memory", _describe(exc)
    except BaseException as exc:
        return "error", _describe(exc, filename, test["code"])
    return "passed", None


Outcome = tuple[str, str | None, str | None]  # status, message, the missing library of a "skipped"


def _exec_solution(request: dict[str, Any], exec_limit: float) -> tuple[dict[str, Any] | None, Outcome | None]:
    from evalplus.eval.utils import TimeoutException, time_limit

    # as evalplus: a bare globals dict, so __name__ is not "__main__"; a unittest request gets BigCodeBench's module
    namespace: dict[str, Any] = _module_namespace(request["module"]) if request.get("module") else {}
    try:
        code = compile(request["code"], "<solution>", "exec")
        with time_limit(exec_limit):
            if request.get("prelude"):  # BigCodeBench's calibration: the code prompt runs first, then the answer
                exec(compile(request["prelude"], "<prelude>", "exec"), namespace)
            exec(code, namespace)
    except TimeoutException:
        return None, ("timeout", f"the solution did not finish loading within {exec_limit:g}s", None)
    except MemoryError as exc:
        return None, ("memory", "the solution failed to load: " + _describe(exc), None)
    except BaseException as exc:
        missing = _missing_library(exc, request)
        if missing is not None:
            return None, ("skipped", f"the solution needs {missing}, which is not installed here", missing)
        return None, ("error", "the solution failed to load: " + _describe(exc, "<solution>", request["code"]), None)
    entry = request["entry_point"]
    if entry is not None and any(t["kind"] == "call" for t in request["tests"]) and entry not in namespace:
        return None, ("error", f"the solution does not define the entry point {entry!r}", None)
    return namespace, None


def _module_namespace(name: str) -> dict[str, Any]:
    """A registered module's globals, as BigCodeBench runs solution and tests (``sys``, ``os`` predefined)."""
    import builtins
    import types

    module = types.ModuleType(name)
    module.__dict__.update({"__builtins__": builtins, "__file__": f"{name}.py", "__package__": None,
                            "sys": sys, "os": os, "environ": os.environ})  # fmt: skip
    sys.modules[name] = module
    return module.__dict__


def _missing_library(exc: BaseException, request: dict[str, Any]) -> str | None:
    """The library a ModuleNotFoundError names, when the task may lack it (the worker checks it is absent)."""
    if not isinstance(exc, ModuleNotFoundError) or not isinstance(exc.name, str):
        return None
    top = exc.name.split(".")[0]
    return top if top in request.get("libraries", ()) else None


# --------------------------------------------------------------------------------------------
# unittest modules (BigCodeBench)


class _SuiteTimeout(BaseException):
    """The module's time limit; a BaseException, so the code's own ``except Exception`` does not swallow it."""


@contextlib.contextmanager
def _suite_timer(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise _SuiteTimeout()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe_in(exc: BaseException, sources: dict[str, str]) -> str:
    """``_describe`` with the deepest line of the solution or the test module the traceback passes through."""
    text = _describe(exc)
    where = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in sources:
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    if where is None:
        return text
    label = where[0].strip("<>")
    code_line = _source_line(sources[where[0]], where[1])
    return _clip(f"{text} ({label} line {where[1]}: {code_line})" if code_line else f"{text} ({label} line {where[1]})")


def _unit_error(exc: BaseException, request: dict[str, Any], sources: dict[str, str], limit_s: float) -> Outcome:
    if isinstance(exc, _SuiteTimeout):
        return "timeout", f"exceeded the time limit of {limit_s:g}s", None
    if isinstance(exc, MemoryError):
        return "memory", _describe_in(exc, sources), None
    missing = _missing_library(exc, request)
    if missing is not None:
        return "skipped", f"needs {missing}, which is not installed here", missing
    return "error", _describe_in(exc, sources), None


class _MethodResult(unittest.TestResult):
    """Sends each test method's outcome as it ends; an error outside any method (setUpClass, ...) is an outcome
    of its own. A method's first failure wins (its subtests'); a skip by the test itself counts as a pass, as in
    BigCodeBench, whose verdict is "no failures and no errors"."""

    def __init__(self, index: int, request: dict[str, Any], sources: dict[str, str], limit_s: float) -> None:
        super().__init__()
        self.index, self.request, self.sources, self.limit_s = index, request, sources, limit_s
        self.current: Outcome | None = None
        self.timed_out = False

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self.current = ("passed", None, None)
        _emit({"e": "mstart", "i": self.index, "name": test._testMethodName})

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        status, message, missing = self.current or ("error", "the method reported no result", None)
        self.current = None
        _emit({"e": "mdone", "i": self.index, "name": test._testMethodName, "status": status, "message": message,
               "missing": missing})  # fmt: skip

    def _record(self, test: Any, outcome: Outcome) -> None:
        if self.current is None:
            _emit({"e": "fixture", "i": self.index, "name": _clip(str(test), _NAME_CHARS), "status": outcome[0],
                   "message": outcome[1], "missing": outcome[2]})  # fmt: skip
        elif self.current[0] == "passed":
            self.current = outcome

    def addFailure(self, test: Any, err: Any) -> None:
        self._record(test, ("failed", _describe_in(err[1], self.sources), None))

    def addError(self, test: Any, err: Any) -> None:
        self._record(test, _unit_error(err[1], self.request, self.sources, self.limit_s))
        if isinstance(err[1], _SuiteTimeout):
            self.timed_out = True
            self.stop()  # the suite stops at the next method: the time is up for all of them

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            (self.addFailure if issubclass(err[0], test.failureException) else self.addError)(test, err)

    def addSkip(self, test: Any, reason: str) -> None:
        if self.current is not None and self.current[0] == "passed":
            self.current = ("passed", _clip(f"skipped by the test: {reason}"), None)

    def addSuccess(self, test: Any) -> None:
        pass

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        pass

    def addUnexpectedSuccess(self, test: Any) -> None:
        pass


def _load_suite(
    test: dict[str, Any], namespace: dict[str, Any], request: dict[str, Any], sources: dict[str, str]
) -> tuple[Any, Outcome | None]:
    """The test methods of the module's test class, or the outcome that stopped the module from loading."""
    try:
        code = compile(test["source"], "<test>", "exec")
    except BaseException as exc:
        return None, ("error", "the test module does not compile: " + _describe(exc, "<test>", test["source"]), None)
    try:
        exec(code, namespace)
    except _SuiteTimeout:
        raise
    except BaseException as exc:
        status, message, missing = _unit_error(exc, request, sources, test["time_limit_s"])
        prefix = "the test module failed to load: " if status == "error" else ""
        return None, (status, prefix + (message or ""), missing)
    cls = namespace.get(test["test_class"])
    if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
        return None, ("error", f"the test module defines no unittest.TestCase class {test['test_class']!r}", None)
    return unittest.TestLoader().loadTestsFromTestCase(cls), None


def _run_unittest(test: dict[str, Any], namespace: dict[str, Any], index: int, request: dict[str, Any]) -> Outcome:
    """Load the test module into the solution's namespace and run its methods, reporting each as it ends.

    Returns the module's own outcome: passed when the suite ran to its end (however its methods fared).
    """
    sources = {"<solution>": request["code"], "<test>": test["source"]}
    limit_s = test["time_limit_s"]
    result = _MethodResult(index, request, sources, limit_s)
    try:
        with _suite_timer(limit_s):
            suite, failed = _load_suite(test, namespace, request, sources)
            if failed is not None:
                return failed
            _emit({"e": "methods", "i": index, "names": [case._testMethodName for case in suite]})
            suite.run(result)
    except _SuiteTimeout:
        return "timeout", f"exceeded the time limit of {limit_s:g}s", None
    except BaseException as exc:  # the suite machinery itself, e.g. a hostile __del__ or a tampered unittest
        return "error", "the test suite raised: " + _describe_in(exc, sources), None
    if result.timed_out:
        return "timeout", f"exceeded the time limit of {limit_s:g}s", None
    return "passed", None, None


def _unittest_guard(spec: ChildSpec) -> None:
    """BigCodeBench's guard instead of evalplus's, which nulls os.getcwd, shutil.rmtree and subprocess.Popen and
    blocks joblib (sklearn cannot even import): exit/quit gone, no faulthandler, UTC. Destructive file calls are
    refused outside the work dir and the private scratch dirs, a speed bump: the uid drop is what holds."""
    import builtins
    import faulthandler

    time.tzset()
    faulthandler.disable()
    builtins.exit = builtins.quit = None  # type: ignore[assignment]
    roots = tuple(os.path.realpath(path) for path in (spec.workdir, *spec.scratch))
    for module, calls in _FILE_CALLS:
        for name, paths in calls.items():
            if hasattr(module, name):
                setattr(module, name, _confined(getattr(module, name), name, paths, roots))


def _confined(call: Callable[..., Any], name: str, paths: int, roots: tuple[str, ...]) -> Callable[..., Any]:
    import posix
    import posixpath

    getcwd, join, normpath = posix.getcwd, posixpath.join, posixpath.normpath  # tests patch os.getcwd and os.path

    def inside(path: Any) -> bool:
        where = normpath(join(getcwd(), os.fsdecode(os.fspath(path))))  # lexical: cheap, and no patched lstat
        return any(where == root or where.startswith(root + "/") for root in roots)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if "dir_fd" not in kwargs:  # relative to a directory already opened (shutil.rmtree's own steps)
            for path in args[:paths]:
                if not isinstance(path, int) and not inside(path):
                    raise PermissionError(errno.EACCES, f"sandbox: {name} outside the scratch directories", path)
        return call(*args, **kwargs)

    return guarded


def _child_main(spec: ChildSpec, worker_pid: int) -> None:
    from evalplus.eval.utils import reliability_guard

    request = spec.request
    _confine(spec, worker_pid)
    if request.get("module"):
        _unittest_guard(spec)
    else:
        reliability_guard(maximum_memory_bytes=None)  # memory limits are already set, while still privileged
    namespace, fatal = _exec_solution(request, request["exec_limit_s"])
    if fatal is not None:
        _emit({"e": "fatal", "status": fatal[0], "message": fatal[1], "missing": fatal[2]})
        return
    assert namespace is not None  # _exec_solution returns a namespace or a fatal outcome
    _emit({"e": "ready"})
    fn = namespace.get(request["entry_point"]) if request["entry_point"] else None
    carry = list(spec.carry)
    for i in range(spec.start, len(request["tests"])):
        test = request["tests"][i]
        _emit({"e": "start", "i": i})
        missing = None
        if test["kind"] == "call":
            status, message = _run_call(test, fn, request, carry)
        elif test["kind"] == "unittest":
            status, message, missing = _run_unittest(test, namespace, i, request)
        else:
            status, message = _run_assert(test, namespace)
        _emit({"e": "done", "i": i, "status": status, "message": message, "missing": missing, "carry": carry})
        if status != "passed" and request["fail_fast"]:
            break
    _emit({"e": "end"})


# --------------------------------------------------------------------------------------------
# the worker side of one child


class _Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[: max(room, 0)]
        self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        return text + f"\n[... {self.dropped} more bytes truncated]" if self.dropped else text


Entry = tuple[str, str | None, str | None, list[Any] | None]  # an outcome and, for a unittest module, its methods


@dataclass
class _UnitState:
    """The worker's record of one unittest module's methods, as the child reported them."""

    names: list[str] | None = None  # None until the module loaded
    results: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    fixtures: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    running: str | None = None

    def apply(self, kind: str, event: dict[str, Any], request: dict[str, Any]) -> bool:
        if kind == "methods":
            names = event["names"]
            ok = (self.names is None and isinstance(names, list) and len(names) <= _MAX_METHODS
                  and all(isinstance(n, str) and 0 < len(n) <= _NAME_CHARS for n in names)
                  and len(set(names)) == len(names))  # fmt: skip
            self.names = list(names) if ok else None
            return ok
        if kind == "mstart":
            ok = self.names is not None and self.running is None and event["name"] in self.names
            ok = ok and event["name"] not in self.results
            self.running = event["name"] if ok else None
            return ok
        outcome = _valid_outcome(event, request)
        if outcome is None or self.names is None:
            return False
        if kind == "mdone" and self.running is not None and event["name"] == self.running:
            self.results[self.running], self.running = outcome, None
            return True
        name = event["name"]
        if kind == "fixture" and self.running is None and outcome[0] != "passed" and isinstance(name, str):
            self.fixtures.append((_clip(name, _NAME_CHARS), *outcome))
            return len(self.fixtures) <= _MAX_FIXTURE_ERRORS
        return False

    def entries(self, module: tuple[str, str | None, str | None]) -> list[Any] | None:
        """Per method (name, status, message, missing), given how the module ended; None: no method was known.

        The method the process ended in takes the module's ending; one that never ran is skipped.
        """
        if self.names is None:
            return None
        after = "not run" if module[0] == "passed" else f"not run: {module[1] or module[0]}"
        rows: list[Any] = []
        for name in self.names:
            if name in self.results:
                rows.append((name, *self.results[name]))
            else:
                rows.append((name, *module) if name == self.running else (name, "skipped", _clip(after), None))
        rows += self.fixtures
        if module[0] != "passed" and not any(row[1] not in ("passed", "skipped") for row in rows):
            rows.append((None, *module))  # ended between methods: the module's own outcome says why
        return rows


class _ChildRun:
    """The worker's view of one forked child: the events it sent and how it ended."""

    def __init__(self, request: dict[str, Any], start: int) -> None:
        self.request, self.expected = request, start
        self.outcomes: dict[int, Entry] = {}
        self.carry: list[bool] | None = None
        self.fatal: tuple[str, str | None, str | None] | None = None
        self.ready = self.ended = False
        self.current: int | None = None  # a test that started and has not reported
        self.unit: _UnitState | None = None  # the current test's methods, for a unittest module
        self.killed: str | None = None  # "timeout", "wall" or "protocol"
        self.wait_status: int | None = None
        self.buffer = bytearray()
        self.broken = False  # the child wrote something that is not a valid event: believe nothing after
        self.phase_started = time.monotonic()  # method events of a unittest module do not restart the clock

    def deadline(self) -> float:
        """When the child's next phase event is due (a unittest module's limit covers all its methods)."""
        if not self.ready:
            exec_limit_s: float = self.request["exec_limit_s"]
            return self.phase_started + exec_limit_s + _GRACE_S
        if self.current is not None:
            time_limit_s: float = self.request["tests"][self.current]["time_limit_s"]
            return self.phase_started + time_limit_s + _GRACE_S
        return self.phase_started + _GRACE_S

    def feed(self, chunk: bytes) -> bool:
        """Parse complete event lines; False on anything malformed, then and ever after."""
        if self.broken:
            return False
        self.buffer += chunk
        while b"\n" in self.buffer and not self.broken:
            line, _, rest = self.buffer.partition(b"\n")
            self.buffer = bytearray(rest)
            try:
                self.broken = not self._apply(json.loads(line))
            except (ValueError, TypeError, KeyError):
                self.broken = True
        self.broken = self.broken or len(self.buffer) > _MAX_EVENT_BYTES
        return not self.broken

    def killed_entry(self, cause: tuple[str, str]) -> Entry:
        """The current test's entry when the child died in it."""
        outcome = (*cause, None)
        return (*outcome, self.unit.entries(outcome) if self.unit is not None else None)

    def _apply(self, event: dict[str, Any]) -> bool:
        kind = event["e"]
        if self.ended or self.fatal is not None:
            return False
        if kind in ("methods", "mstart", "mdone", "fixture"):
            return self.unit is not None and event["i"] == self.current and self.unit.apply(kind, event, self.request)
        self.phase_started = time.monotonic()
        if kind == "harness":
            self.fatal = ("error", "sandbox harness failure: " + _clip(str(event.get("message"))), None)
            return True
        if kind == "fatal" and not self.ready:
            self.fatal = _valid_outcome(event, self.request)
            return self.fatal is not None
        if kind == "ready" and not self.ready:
            self.ready = True
            return True
        if not self.ready:
            return False
        if kind == "start" and self.current is None and event["i"] == self.expected:
            self.current = self.expected
            if self.expected >= len(self.request["tests"]):
                return False
            self.unit = _UnitState() if self.request["tests"][self.current]["kind"] == "unittest" else None
            return True
        if kind == "done" and self.current is not None and event["i"] == self.current:
            return self._done(event)
        if kind == "end" and self.current is None:
            self.ended = True
            return True
        return False

    def _done(self, event: dict[str, Any]) -> bool:
        outcome = _valid_outcome(event, self.request)
        carry = event.get("carry")
        if outcome is None or not (isinstance(carry, list) and len(carry) == 2):
            return False
        if self.unit is not None and self.unit.running is not None:
            return False  # a method started and never reported
        methods = self.unit.entries(outcome) if self.unit is not None else None
        self.outcomes[self.current], self.carry = (*outcome, methods), [bool(c) for c in carry]  # type: ignore[index]
        self.current, self.expected, self.unit = None, self.current + 1, None  # type: ignore[operator]
        return True


def _valid_outcome(event: dict[str, Any], request: dict[str, Any]) -> tuple[str, str | None, str | None] | None:
    """An outcome the child reported; "skipped" only for a library the task may lack and that is truly absent."""
    status, message, missing = event.get("status"), event.get("message"), event.get("missing")
    if status not in _STATUSES or not (message is None or isinstance(message, str)):
        return None
    message = None if message is None else _clip(message)
    if status != "skipped":
        return status, message, None
    if not (isinstance(missing, str) and missing in request.get("libraries", ())):
        return None
    if _installed(missing):  # the child said a library is missing that the worker can import: not believed
        return "error", _clip(f"{message} (but {missing} is installed: the code under test raised it)"), None
    return status, message, missing


_FOUND: dict[str, bool] = {}


def _installed(name: str) -> bool:
    if name not in _FOUND:
        import importlib.util

        try:
            _FOUND[name] = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            _FOUND[name] = False
    return _FOUND[name]


def _kill_group(pid: int) -> None:
    """SIGKILL the child's session; only called while the child is unreaped, so its pid cannot be reused."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _exited(pid: int) -> bool:
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


class _Pipes:
    """The read ends of the child's event, stdout and stderr pipes."""

    def __init__(self, event: int, out: tuple[int, _Capture], err: tuple[int, _Capture]) -> None:
        self.event = event
        self.sinks: dict[int, _Capture | None] = {event: None, out[0]: out[1], err[0]: err[1]}
        for fd in self.sinks:
            os.set_blocking(fd, False)

    def pump(self, fd: int, run: _ChildRun) -> bool:
        """Read what is there; False when the child broke the event protocol."""
        try:
            chunk = os.read(fd, _PIPE_BYTES)
        except BlockingIOError:
            return True
        if not chunk:
            self.close(fd)
            return True
        sink = self.sinks[fd]
        if sink is None:
            return run.feed(chunk)
        sink.add(chunk)
        return True

    def close(self, fd: int) -> None:
        os.close(fd)
        del self.sinks[fd]

    def close_all(self) -> None:
        for fd in list(self.sinks):
            self.close(fd)


def _supervise(run: _ChildRun, pid: int, pipes: _Pipes, wall_deadline: float, parent_fd: int) -> None:
    """Pump the child's pipes until it exits, killing it when a deadline passes."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while not _exited(pid):
            now, deadline = time.monotonic(), run.deadline()
            if run.killed is None and now >= min(deadline, wall_deadline):
                run.killed = "wall" if now >= wall_deadline else "timeout"
                _kill_group(pid)
            timeout = 0.05 if run.killed is not None or pidfd is None else min(deadline, wall_deadline) - now
            waiting = [*pipes.sinks, parent_fd] + ([pidfd] if pidfd is not None else [])
            for fd in select.select(waiting, [], [], max(timeout, 0.0))[0]:
                if fd == parent_fd:  # the parent hung up: give up everything
                    _kill_group(pid)
                    os._exit(0)
                if fd in pipes.sinks and not pipes.pump(fd, run) and run.killed is None:
                    run.killed = "protocol"
                    _kill_group(pid)
        _kill_group(pid)  # the session, should anything have escaped the process limit
        run.wait_status = os.waitpid(pid, 0)[1]
        for fd in list(pipes.sinks):  # what was left in the pipes when the child exited
            for _ in range(256):
                if fd not in pipes.sinks or not pipes.pump(fd, run):
                    break
        if run.broken and run.killed is None:
            run.killed = "protocol"
    finally:
        pipes.close_all()
        if pidfd is not None:
            os.close(pidfd)


def _fork_child(spec: ChildSpec, out: _Capture, err: _Capture, wall_deadline: float, parent_fd: int) -> _ChildRun:
    run = _ChildRun(spec.request, spec.start)
    event_r, event_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    worker_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.dup2(event_w, _EVENT_FD)
            os.closerange(_EVENT_FD + 1, os.sysconf("SC_OPEN_MAX"))
            cast(io.TextIOWrapper, sys.stdout).reconfigure(line_buffering=True)
            _child_main(spec, worker_pid)
        except BaseException as exc:  # the harness itself failed: say why on the event pipe
            try:
                os.write(_EVENT_FD, (json.dumps({"e": "harness", "message": _describe(exc)}) + "\n").encode())
            except BaseException:
                pass
        finally:
            os._exit(0)
    for fd in (event_w, out_w, err_w):
        os.close(fd)
    _supervise(run, pid, _Pipes(event_r, (out_r, out), (err_r, err)), wall_deadline, parent_fd)
    return run


# --------------------------------------------------------------------------------------------
# one request


def _cause(run: _ChildRun, request: dict[str, Any], limits: dict[str, Any]) -> tuple[str, str]:
    if run.killed == "timeout":
        limit = request["exec_limit_s"] if run.current is None else request["tests"][run.current]["time_limit_s"]
        return "timeout", f"exceeded the time limit of {limit:g}s (killed)"
    if run.killed == "wall":
        return "timeout", f"the request exceeded its wall-clock limit of {limits['max_wall_s']:g}s (killed)"
    if run.killed == "protocol":
        return "error", "the code under test tampered with the harness's result channel (killed)"
    status = run.wait_status or 0
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return "timeout", f"exceeded the CPU time limit of {limits['cpu_s']}s (killed)"
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "error", f"the process was killed by {name}"
    return "error", f"the process exited with code {os.WEXITSTATUS(status)}"


@dataclass(frozen=True)
class _Place:
    """Where a worker runs its requests: the work dirs' root, the sandbox uid, the private scratch dirs."""

    root: str
    uid: int | None
    scratch: dict[str, frozenset[str]]  # each private scratch dir and what it held before any request


def run_request(request: dict[str, Any], limits: dict[str, Any], place: _Place, parent_fd: int) -> dict[str, Any]:
    started = time.monotonic()
    wall_deadline = started + float(limits["max_wall_s"])
    tests = request["tests"]
    outcomes: list[Entry | None] = [None] * len(tests)
    out, err = _Capture(int(limits["max_output_bytes"])), _Capture(int(limits["max_output_bytes"]))
    workdir = tempfile.mkdtemp(prefix="req-", dir=place.root)
    if place.uid is not None:
        os.chown(workdir, place.uid, place.uid)
    start, carry = 0, [False, False]
    try:
        while True:
            spec = ChildSpec(request, start, carry, workdir, limits, place.uid, tuple(place.scratch))
            run = _fork_child(spec, out, err, wall_deadline, parent_fd)
            outcomes[start : start + len(run.outcomes)] = [run.outcomes[i] for i in sorted(run.outcomes)]
            carry = run.carry or carry
            if run.ended:
                break
            if run.fatal is not None or not run.ready:
                fatal = run.fatal or (*_loading_cause(run, request, limits), None)
                outcomes[run.expected :] = [(*fatal, None)] * (len(tests) - run.expected)
                break
            failed = run.current if run.current is not None else run.expected
            if failed >= len(tests):
                break
            outcomes[failed] = run.killed_entry(_cause(run, request, limits))
            start = failed + 1
            if run.killed == "wall" or request["fail_fast"] or start >= len(tests):
                break
    finally:
        if place.uid is not None and _process_limit(request, limits, place.uid):
            _kill_strays(place.uid)
        shutil.rmtree(workdir, ignore_errors=True)
        _clean_scratch(place.scratch)
    reason = "skipped after an earlier test did not pass"
    if time.monotonic() >= wall_deadline:
        reason = "skipped: the request's wall-clock limit was reached"
    return {
        "outcomes": [o if o is not None else ("skipped", reason, None, None) for o in outcomes],
        "stdout": out.text(),
        "stderr": err.text(),
        "wall_s": time.monotonic() - started,
    }


def _kill_strays(uid: int) -> None:
    """SIGKILL whatever still runs as the sandbox uid (a grandchild can leave the child's session), and reap it.

    ``kill(-1)`` from a process of that uid reaches exactly the processes of that uid, which is this worker's alone.
    """
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # in the pid namespace the orphans were re-parented to us
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.01)
        except ChildProcessError:
            return


def _clean_scratch(scratch: dict[str, frozenset[str]]) -> None:
    """Remove what the last request left in the private scratch dirs (never the mounts kept there)."""
    for path, kept in scratch.items():
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for name in set(names) - kept:
            target = os.path.join(path, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(target)


def _loading_cause(run: _ChildRun, request: dict[str, Any], limits: dict[str, Any]) -> tuple[str, str]:
    status, message = _cause(run, request, limits)
    return status, f"while loading the solution: {message}"


# --------------------------------------------------------------------------------------------
# start-up


_PROBE = """
import errno, json, os, posix, socket
facts = {"uid": os.getuid()}
try:
    pid = posix.fork()
    if pid == 0:
        posix._exit(0)
    posix.waitpid(pid, 0)
    facts["fork_blocked"] = False
except OSError:
    facts["fork_blocked"] = True
try:
    socket.create_connection(("127.0.0.1", 9), timeout=0.5).close()
    facts["loopback"] = "connected"
except OSError as exc:
    facts["loopback"] = errno.errorcode.get(exc.errno, type(exc).__name__)
print(json.dumps(facts))
"""


def _probe(limits: dict[str, Any], place: _Place, parent_fd: int) -> dict[str, bool | str]:
    """Run a harmless request to learn which restrictions actually bind in a child."""
    request = {
        "code": "", "entry_point": None, "dataset": None, "fail_fast": True, "exec_limit_s": 5.0, "module": None,
        "libraries": [],
        "tests": [{"kind": "assert", "name": "probe", "code": _PROBE, "time_limit_s": 5.0, "plus": False}],
    }
    result = run_request(request, dict(limits, max_wall_s=10.0), place, parent_fd)
    try:
        facts = json.loads(result["stdout"])
    except ValueError:
        return {"probe": f"failed: {result['outcomes'][0]}"}
    return {
        "uid_drop": place.uid is not None and facts["uid"] == place.uid,
        "sandbox_uid": str(facts["uid"]),
        "process_limit": facts["fork_blocked"] is True,
        "loopback_blocked": facts["loopback"] == "ENETUNREACH",  # not merely refused: no network at all
    }


def main() -> None:
    request_fd, reply_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # a stray print must never corrupt the protocol
    config = recv_frame(request_fd)
    if config is None:
        return
    sys.path[:] = config["sys_path"]
    limits = config["limits"]
    uid = SANDBOX_UID_BASE + os.getpid() if os.geteuid() == 0 else None  # the pid the parent knows us by
    isolation = enter_namespaces(not limits["network"])  # before numpy can start any thread
    scratch_mb = int(limits["file_size_mb"]) + 16
    facts, scratch = private_mounts(config["root"], scratch_mb, expose=uid is not None)
    isolation.update(facts)
    if isolation["pid_namespace"] is True:
        become_namespace_init()
    try:
        import importlib

        import numpy  # noqa: F401 - imported once here so every child starts with it loaded
        from evalplus.eval import unsafe_execute  # noqa: F401
        from evalplus.eval.utils import reliability_guard  # noqa: F401

        for name in _PRELOAD:
            importlib.import_module(name)
    except Exception as exc:
        send_frame(reply_fd, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    isolation["preloaded"] = _preload(limits.get("preload") or ())
    place = _Place(config["root"], uid, {path: frozenset(os.listdir(path)) for path in scratch})
    isolation.update(_probe(limits, place, request_fd))
    send_frame(reply_fd, {"ready": True, "isolation": isolation, "pid": os.getpid()})
    while True:
        message = recv_frame(request_fd)
        if message is None or message.get("op") == "shutdown":
            return
        send_frame(reply_fd, run_request(message["request"], limits, place, request_fd))


def _preload(names: tuple[str, ...]) -> str:
    """Import the configured heavy libraries once, so children fork with them loaded; absent ones are skipped."""
    import importlib

    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # an optional library that is not installed: its tasks report it as missing
            continue
        loaded.append(name)
    return ", ".join(loaded) or "none"


if __name__ == "__main__":
    main()
