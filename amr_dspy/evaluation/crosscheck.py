"""The evalplus cross-check: ``evalplus.evaluate`` itself on the same samples, in a fresh interpreter that sees the
same dataset files, its verdicts compared with the project's task by task."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from amr_dspy.errors import AmrDspyError, DataError
from amr_dspy.evaluation.files import read_samples, write_samples
from amr_dspy.evaluation.results import CrossCheck, EvalResults, PassAt1

__all__ = ["EvalplusDataset", "crosscheck_evalplus"]

EvalplusDataset = Literal["mbpp", "humaneval"]  # the datasets evalplus itself can check


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
