"""Hostile code is contained: each attack ends as an outcome with a reason, the host is untouched,
and the same Sandbox keeps serving normal requests."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amr_dspy._sandbox_worker import SANDBOX_UID_BASE
from amr_dspy.sandbox import Sandbox, SandboxLimits
from amr_dspy.testcases import AssertTest, ExecutionRequest, ExecutionResult, UnitTestModule
from tests.sandbox_helpers import assert_clean_shutdown, normal_request, processes_of_uid, request_processes

SECRET = "amr-dspy-fake-secret-7f3c"
SEEN_WORKERS: set[int] = set()
# catches the in-process timer's exception and carries on (a bare `while True: pass` inside the try
# would not: CPython 3.11 raises the signal's exception at the loop's jump, outside the handler's range)
SWALLOWER = ("def spin():\n    n = 0\n    while True:\n        try:\n            while True:\n                n += 1\n"
             "        except BaseException:\n            n = 0\n")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    os.environ["AMR_DSPY_FAKE_SECRET"] = SECRET  # present in the parent before any worker starts
    box = Sandbox(SandboxLimits(memory_mb=384), workers=2)  # a smaller cap: the bomb fills it quicker
    try:
        yield box
    finally:
        os.environ.pop("AMR_DSPY_FAKE_SECRET", None)
        assert_clean_shutdown(box, SEEN_WORKERS)


@pytest.fixture(params=["tmp_path", "visible"])
def canary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A file outside the work dir: in pytest's tmp_path (the sandbox's own /tmp hides it), or in a
    world-readable folder next to this test that the child can see but, under another uid, not change."""
    folder = (tmp_path if request.param == "tmp_path"
              else Path(tempfile.mkdtemp(prefix=".canary-", dir=Path(__file__).parent)))
    try:
        folder.chmod(0o755)
        path = folder / "canary.txt"
        path.write_text("alive")
        path.chmod(0o644)
        yield path
        assert path.read_text() == "alive"
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder)


@pytest.fixture(autouse=True)
def still_serving(sandbox: Sandbox) -> Iterator[None]:
    """After every attack: same workers, nothing left running, and a normal request still passes."""
    workers = sandbox.worker_pids
    SEEN_WORKERS.update(workers)
    yield
    assert sandbox.worker_pids == workers
    assert not request_processes(sandbox)
    result = sandbox.run(normal_request())
    assert result.passed and not result.crashed


def attack(sandbox: Sandbox, code: str, test: str, time_limit_s: float = 1.0) -> ExecutionResult:
    """Run ``code`` then one assert test ``test``, followed by a harmless test that must still run."""
    request = ExecutionRequest(
        code=code,
        tests=[AssertTest(name="attack", code=test, time_limit_s=time_limit_s), AssertTest(name="after", code="x = 1")],
        fail_fast=False,
    )
    result = sandbox.run(request)
    assert not result.crashed
    return result


def first(result: ExecutionResult) -> tuple[str, str]:
    outcome = result.outcomes[0]
    assert outcome.message, "every contained attack is reported with a reason"
    return outcome.status, outcome.message


def test_infinite_loop_times_out(sandbox: Sandbox) -> None:
    result = attack(sandbox, "def spin():\n    while True:\n        pass\n", "spin()", 0.5)
    assert first(result) == ("timeout", "exceeded the time limit of 0.5s")
    assert result.outcomes[1].status == "passed"


def test_loop_that_swallows_the_timeout_is_killed(sandbox: Sandbox) -> None:
    code = SWALLOWER
    result = attack(sandbox, code, "spin()", 0.5)
    assert first(result) == ("timeout", "exceeded the time limit of 0.5s (killed)")
    assert result.outcomes[1].status == "passed"


def test_timer_disabled_by_the_code_is_still_enforced(sandbox: Sandbox) -> None:
    code = "import signal\ndef spin():\n    signal.setitimer(signal.ITIMER_REAL, 0)\n    while True: pass\n"
    assert first(attack(sandbox, code, "spin()", 0.5)) == ("timeout", "exceeded the time limit of 0.5s (killed)")


def test_memory_bomb_hits_the_cap(sandbox: Sandbox) -> None:
    code = "def bomb():\n    hoard = []\n    while True:\n        hoard.append(bytearray(50 << 20))\n"
    status, message = first(attack(sandbox, code, "bomb()", 10))
    assert (status, message) == ("memory", "MemoryError")


@pytest.mark.parametrize(
    "code",
    [
        "import posix\ndef bomb():\n    while True:\n        posix.fork()\n",  # around reliability_guard
        "import os\ndef bomb():\n    while True:\n        os.fork()\n",
        "import threading\ndef bomb():\n    while True:\n        threading.Thread(target=bomb).start()\n",
    ],
)
def test_fork_bomb_cannot_start_a_process(sandbox: Sandbox, code: str) -> None:
    status, message = first(attack(sandbox, code, "bomb()"))
    assert status == "error"
    assert message.split(":")[0] in ("BlockingIOError", "TypeError", "RuntimeError"), message


@pytest.mark.parametrize(
    "wreck",
    [
        "posix.unlink({path!r})",
        "posix.rename({path!r}, {path!r} + '.moved')",
        "posix.write(posix.open({path!r}, posix.O_WRONLY | posix.O_TRUNC), b'dead')",
        "posix.rmdir({folder!r})",
        "import os\nos.remove({path!r})",  # the guard's own line of defence
    ],
)
def test_files_outside_the_work_dir_survive(sandbox: Sandbox, canary: Path, wreck: str) -> None:
    test = wreck.format(path=str(canary), folder=str(canary.parent))
    status, message = first(attack(sandbox, "import posix\n", test))
    assert status == "error", message
    if "os.remove" in wreck:  # nulled by reliability_guard
        expected: tuple[str, ...] = ("TypeError",)
    elif canary.parent.name.startswith(".canary-"):  # in sight, but not ours
        expected = ("PermissionError",)
    else:  # hidden behind the sandbox's private /tmp (or out of reach without it)
        expected = ("FileNotFoundError", "PermissionError")
    assert message.startswith(expected), message


def test_exit_while_loading_the_solution(sandbox: Sandbox) -> None:
    result = attack(sandbox, "import os\nos._exit(0)\n", "x = 1")
    assert [o.status for o in result.outcomes] == ["error", "error"]
    assert result.outcomes[0].message == "while loading the solution: the process exited with code 0"


def test_exit_inside_a_test(sandbox: Sandbox) -> None:
    result = attack(sandbox, "import os\n", "os._exit(0)")
    assert first(result) == ("error", "the process exited with code 0")
    assert result.outcomes[1].status == "passed"  # a fresh child ran the rest


def test_sys_exit_inside_a_test(sandbox: Sandbox) -> None:
    result = attack(sandbox, "import sys\n", "sys.exit(3)")
    assert first(result) == ("error", "SystemExit: 3 (line 1: sys.exit(3))")
    assert result.outcomes[1].status == "passed"


def test_a_gigabyte_of_output_is_truncated(sandbox: Sandbox) -> None:
    code = ("import sys\ndef flood():\n    chunk = 'x' * (1 << 20)\n    for _ in range(1024):\n"
            "        sys.stdout.write(chunk)\n")
    result = attack(sandbox, code, "flood()", 30)
    assert [o.status for o in result.outcomes] == ["passed", "passed"]
    limit = sandbox.limits.max_output_bytes
    assert result.stdout == "x" * limit + f"\n[... {(1 << 30) - limit} more bytes truncated]"


def test_environment_secrets_are_not_visible(sandbox: Sandbox) -> None:
    assert os.environ["AMR_DSPY_FAKE_SECRET"] == SECRET
    code = (
        "import io, os, posix\n"
        "def leak(pids):\n"
        "    found = [k for k, v in os.environ.items() if 'fake-secret' in v]\n"
        "    for pid in pids:\n"
        "        try:\n"
        "            found.append(io.open(f'/proc/{pid}/environ', 'rb').read())\n"
        "        except OSError:\n"
        "            pass\n"
        "    return found\n"
    )
    test = (f"leaked = leak([posix.getpid(), posix.getppid(), {os.getpid()}])\n"
            f"assert {SECRET!r} not in str(leaked), leaked")
    result = attack(sandbox, code, test)
    assert result.outcomes[0].status == "passed", result.outcomes[0]
    for worker in sandbox.worker_pids:
        assert SECRET.encode() not in Path(f"/proc/{worker}/environ").read_bytes()
    env = attack(sandbox, "import os\n", "print(sorted(os.environ))")
    assert env.stdout == ("['HOME', 'LANG', 'MKL_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'PATH', "
                          "'TMPDIR']\n")


def test_network_connect_fails(sandbox: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = ("import socket\ndef call_home():\n"
                f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n")
        status, message = first(attack(sandbox, code, "call_home()", 5))
        assert status == "error" and message.startswith("OSError: [Errno 101] Network is unreachable"), message
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody ever connected


@pytest.mark.parametrize("target", ["posix.getppid()", "1", str(os.getpid()), "-1", "0"])
def test_killing_the_worker_or_the_host_fails(sandbox: Sandbox, target: str) -> None:
    """The child has its own uid and pid namespace: its parent is out of reach, the host invisible."""
    result = attack(sandbox, "import posix, signal\n", f"posix.kill({target}, signal.SIGKILL)")
    assert result.outcomes[1].status == "passed"
    assert os.getpid() > 0  # still here
    if target == "0":  # its own process group: the child kills itself, and that is reported
        assert first(result) == ("error", "the process was killed by SIGKILL")
        return
    status, message = first(result)
    assert status == "error" and message.startswith(("PermissionError", "ProcessLookupError")), message


def test_os_kill_of_the_parent_is_refused(sandbox: Sandbox) -> None:
    result = attack(sandbox, "import os\n", "os.kill(os.getppid(), 9)")
    assert first(result) == ("error", "TypeError: 'NoneType' object is not callable (line 1: os.kill(os.getppid(), 9))")


def test_oversized_file_is_refused(sandbox: Sandbox) -> None:
    code = "import io\ndef fill():\n    with io.open('big.bin', 'wb') as fh:\n        fh.write(b'0' * (32 << 20))\n"
    too_large = ("error", "OSError: [Errno 27] File too large (line 1: fill())")
    assert first(attack(sandbox, code, "fill()", 10)) == too_large


def test_the_harness_result_channel_cannot_be_forged_loosely(sandbox: Sandbox) -> None:
    result = attack(sandbox, "import posix\n", "posix.write(3, b'garbage\\n')")
    assert first(result) == ("error", "the code under test tampered with the harness's result channel (killed)")


# --------------------------------------------------------------------------------------------
# unittest modules (BigCodeBench): a lighter Python guard, a few processes allowed, the OS limits as above

UNIT_WORKERS: set[int] = set()


@pytest.fixture(scope="module")
def unit_box() -> Iterator[Sandbox]:
    box = Sandbox(SandboxLimits(memory_mb=384, max_processes=4), workers=1)
    UNIT_WORKERS.update(box.worker_pids)
    try:
        yield box
    finally:
        assert_clean_shutdown(box, UNIT_WORKERS)


def unit_attack(box: Sandbox, method: str, *, header: str = "import os, posix, unittest\n",
                time_limit_s: float = 5.0) -> ExecutionResult:  # fmt: skip
    """Run one hostile test method and a harmless one after it; afterwards the worker must still be the same,
    nothing of the task may be left running, and a normal task must still pass."""
    workers = box.worker_pids
    source = (f"{header}class TestCases(unittest.TestCase):\n" + textwrap.indent(textwrap.dedent(method), "    ")
              + "    def test_zz_after(self):\n        pass\n")  # fmt: skip
    test = UnitTestModule(name="TestCases", source=source, time_limit_s=time_limit_s)
    result = box.run(ExecutionRequest(code="def task_func():\n    return 1\n", tests=[test]))
    assert not result.crashed and box.worker_pids == workers
    assert not processes_of_uid(SANDBOX_UID_BASE + workers[0]) and not request_processes(box)
    normal = UnitTestModule(name="TestCases", source="import unittest\nclass TestCases(unittest.TestCase):\n"
                            "    def test_ok(self):\n        self.assertEqual(task_func(), 1)\n")  # fmt: skip
    assert box.run(ExecutionRequest(code="def task_func():\n    return 1\n", tests=[normal])).passed
    return result


def unit_first(result: ExecutionResult) -> tuple[str, str]:
    outcome = result.outcomes[0]
    assert outcome.message, "every contained attack is reported with a reason"
    return outcome.status, outcome.message


def test_unittest_shell_cannot_touch_files_outside(unit_box: Sandbox, canary: Path) -> None:
    method = f"""
    def test_attack(self):
        self.assertNotEqual(os.system('echo dead > {canary}'), 0)
        self.assertNotEqual(os.system('rm {canary}'), 0)
        self.assertNotEqual(os.system('rm -r {canary.parent}'), 0)
    """
    result = unit_attack(unit_box, method)
    assert [o.status for o in result.outcomes] == ["passed", "passed"], result.outcomes  # the shell was refused


@pytest.mark.parametrize(
    "wreck",
    ["os.remove({path!r})", "shutil.rmtree({folder!r})", "os.rename({path!r}, 'mine.txt')",
     "posix.unlink({path!r})", "open({path!r}, 'w').write('dead')"],
)  # fmt: skip
def test_unittest_code_cannot_change_files_outside_the_scratch_dirs(unit_box: Sandbox, canary: Path,
                                                                    wreck: str) -> None:  # fmt: skip
    attack = wreck.format(path=str(canary), folder=str(canary.parent))
    result = unit_attack(unit_box, f"def test_attack(self):\n    {attack}\n",
                         header="import os, posix, shutil, unittest\n")  # fmt: skip
    status, message = unit_first(result)
    assert status == "error", message
    if not canary.parent.name.startswith(".canary-"):  # under /tmp: hidden behind the worker's private /tmp
        assert message.startswith("FileNotFoundError"), message
    elif wreck.startswith(("os.", "shutil.")):  # in sight: refused by the guard before the OS is asked
        assert message.startswith("PermissionError: [Errno 13] sandbox: "), message
    else:  # in sight, but not the sandbox uid's
        assert message.startswith("PermissionError"), message
    assert result.outcomes[1].status == "passed"


@pytest.mark.parametrize(
    "bomb",
    ["while True:\n        os.fork()",
     "while True:\n        threading.Thread(target=time.sleep, args=(30,)).start()",
     "while True:\n        subprocess.Popen(['sleep', '30'], start_new_session=True)"],
)  # fmt: skip
def test_unittest_fork_bomb_hits_the_process_limit(unit_box: Sandbox, bomb: str) -> None:
    method = f"def test_attack(self):\n    {bomb}\n"
    result = unit_attack(unit_box, method, header="import os, subprocess, threading, time, unittest\n")
    status, message = unit_first(result)
    assert status == "error", message
    assert message.startswith(("BlockingIOError", "RuntimeError: can't start new thread",
                               "the code under test tampered")), message  # fmt: skip


def test_unittest_processes_cannot_outlive_their_task(unit_box: Sandbox) -> None:
    late = "subprocess.Popen(['sh', '-c', 'sleep 1; echo late > /tmp/late.txt'], start_new_session=True)"
    assert unit_attack(unit_box, f"def test_attack(self):\n    {late}\n",
                       header="import subprocess, unittest\n").passed  # fmt: skip
    time.sleep(1.5)
    check = "def test_attack(self):\n    self.assertFalse(os.path.exists('/tmp/late.txt'))\n"
    assert unit_attack(unit_box, check).passed


def test_unittest_cannot_signal_the_worker_or_the_host(unit_box: Sandbox) -> None:
    for target in ("os.getppid()", "1", str(os.getpid())):
        result = unit_attack(unit_box, f"def test_attack(self):\n    os.kill({target}, signal.SIGKILL)\n",
                             header="import os, signal, unittest\n")  # fmt: skip
        status, message = unit_first(result)
        assert status == "error" and message.startswith(("PermissionError", "ProcessLookupError")), message
    assert os.getpid() > 0


def test_unittest_loopback_is_its_own(unit_box: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        method = f"""
        def test_attack(self):
            socket.create_connection(('127.0.0.1', {port}), timeout=2).close()
        def test_own_server(self):
            with socket.socket() as own:
                own.bind(('localhost', 0))
                own.listen()
                socket.create_connection(own.getsockname(), timeout=2).close()
        """
        result = unit_attack(unit_box, method, header="import socket, unittest\n")
        status, message = unit_first(result)
        assert status == "error" and message.startswith("ConnectionRefusedError"), message  # nothing of ours there
        assert [o.status for o in result.outcomes[1:]] == ["passed", "passed"]
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody ever connected


def test_unittest_environment_holds_no_secret(unit_box: Sandbox) -> None:
    assert os.environ["AMR_DSPY_FAKE_SECRET"] == SECRET
    method = f"""
    def test_attack(self):
        print(sorted(os.environ))
        self.assertNotIn({SECRET!r}, str(os.environ))
    """
    result = unit_attack(unit_box, method)
    assert result.passed, result.outcomes
    names = ["HOME", "LANG", "MKL_NUM_THREADS", "MPLBACKEND", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH",
             "TMPDIR", "TZ"]  # fmt: skip
    assert result.stdout == f"{names}\n"


def test_unittest_result_channel_cannot_be_forged_loosely(unit_box: Sandbox) -> None:
    result = unit_attack(unit_box, "def test_attack(self):\n    posix.write(3, b'garbage\\n')\n")
    assert unit_first(result) == ("error", "the code under test tampered with the harness's result channel (killed)")
    assert result.outcomes[1].status == "skipped"
