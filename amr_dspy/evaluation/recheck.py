"""A finished program run checked again without the teacher: each stored response is read with today's code
extraction, and the tasks whose code comes out differently are executed again.

A fix to extraction (or to execution) then reaches runs that took the teacher hours, and the run keeps what it
measured of the teacher: tokens, calls and time per task. Only the final answer is re-read: choices a program made
inside its own steps (an AMR guard comparing two answers) stay as they were made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.evaluation.checking import check_solutions
from amr_dspy.evaluation.files import read_results
from amr_dspy.evaluation.results import EvalResults, SolutionCheck
from amr_dspy.extract import extract_code

if TYPE_CHECKING:
    from amr_dspy.sandbox import Sandbox
    from amr_dspy.tasks import Task

__all__ = ["recheck_run"]

_CHECK_FIELDS = tuple(SolutionCheck.model_fields)


def recheck_run(directory: Path, tasks: list[Task], sandbox: Sandbox) -> tuple[EvalResults, dict[str, Any], int]:
    """Re-read ``directory``'s run (results.json, predictions.jsonl) over ``tasks``; return its results, each task's
    record (code, response, ...) and how many tasks' code changed. Writes nothing."""
    results = _read_results(directory)
    by_id = {t.task_id: t for t in tasks}
    if [t.task_id for t in results.tasks] != [t.task_id for t in tasks]:
        raise ConfigError(f"{directory}: its run has {len(results.tasks)} tasks, not the {len(tasks)} of "
                          f"{results.benchmark}; give the benchmark and --limit it ran with")  # fmt: skip
    records = _read_predictions(directory / "predictions.jsonl")
    changed = []
    for result in results.tasks:
        record = records.get(result.task_id)
        if record is None:
            raise DataError(f"{directory / 'predictions.jsonl'}: no line for {result.task_id}")
        response = record.get("response")
        code = extract_code(response, by_id[result.task_id].entry_point) if isinstance(response, str) else None
        if code != record.get("code") and result.failure != "program_error":
            record["code"] = code
            changed.append(result.task_id)
    checks = check_solutions(sandbox, [(by_id[t], records[t]["code"]) for t in changed])
    fresh = {t: c for t, c in zip(changed, checks, strict=True)}
    tasks_out = [r.model_copy(update={f: getattr(fresh[r.task_id], f) for f in _CHECK_FIELDS})
                 if r.task_id in fresh else r for r in results.tasks]  # fmt: skip
    return results.recollect(tasks_out), records, len(changed)


def _read_results(directory: Path) -> EvalResults:
    results = read_results(directory)
    if results.samples is not None:
        raise ConfigError(f"{directory / 'results.json'}: a check of a samples file, not a program run; check the "
                          "samples again instead")  # fmt: skip
    return results


def _read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"{path.parent}: no predictions.jsonl; --recheck needs the run's responses")
    rows: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
                rows[str(row["task_id"])] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path}:{lineno}: not a prediction line") from None
    return rows
