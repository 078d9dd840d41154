"""Process bookkeeping for the sandbox tests: no stray workers or children may outlive a Sandbox."""

from __future__ import annotations

import time
from pathlib import Path

from amr_dspy._sandbox_worker import SANDBOX_UID_BASE
from amr_dspy.sandbox import Sandbox
from amr_dspy.testcases import CallTest, ExecutionRequest


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def descendants_of(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = children_of(frontier.pop())
        found += children
        frontier += children
    return found


def request_processes(sandbox: Sandbox) -> list[int]:
    """Processes running requests: below each worker, and below its namespace init where there is one."""
    depth = 2 if sandbox.isolation["pid_namespace"] is True else 1
    found = []
    for worker in sandbox.worker_pids:
        level = [worker]
        for _ in range(depth):
            level = [child for pid in level for child in children_of(pid)]
        found += level
    return found


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        if str(uid) in uids:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def sandbox_processes(worker_pids: list[int]) -> list[int]:
    """Every process a sandbox with these workers could have left: the workers and their children's uids."""
    found = [pid for pid in worker_pids if alive(pid)]
    for pid in worker_pids:
        found += processes_of_uid(SANDBOX_UID_BASE + pid)
    return found


def assert_clean_shutdown(sandbox: Sandbox, seen_workers: set[int]) -> None:
    seen_workers.update(sandbox.worker_pids)
    sandbox.close()
    assert wait_until(lambda: not sandbox_processes(sorted(seen_workers)), 5.0), sandbox_processes(sorted(seen_workers))


def normal_request() -> ExecutionRequest:
    return ExecutionRequest(
        code="def add(a, b):\n    return a + b\n",
        entry_point="add",
        tests=[CallTest(name="t0", inputs=[1, 2], expected=3), CallTest(name="t1", inputs=[[1], [2]], expected=[1, 2])],
    )
