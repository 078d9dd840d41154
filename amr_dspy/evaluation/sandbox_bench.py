"""The sandbox benchmark: test executions per second of the project's sandbox against evalplus's checker."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from rich.table import Table

from amr_dspy.errors import DataError
from amr_dspy.evaluation.crosscheck import EvalplusDataset, _groundtruth_dir, _run_python
from amr_dspy.evaluation.results import package_versions
from amr_dspy.tasks import Task
from amr_dspy.testcases import ExecutionRequest

if TYPE_CHECKING:
    from amr_dspy.sandbox import Sandbox

__all__ = ["BenchSide", "SandboxBench", "bench_sandbox", "bench_table"]


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
