"""Sample and result files: evalplus samples JSONL (read and written) and ``results.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.evaluation.results import EvalResults

__all__ = ["read_samples", "write_samples", "write_results"]


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


def read_results(directory: Path) -> EvalResults:
    """An eval folder's results.json; a clear error when it is missing or is not eval results."""
    path = directory / "results.json"
    if not path.is_file():
        raise ConfigError(f"{directory}: no results.json; give a folder written by `amr-dspy eval` or `compare`")
    try:
        return EvalResults.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataError(f"{path}: not eval results ({'.'.join(map(str, first['loc']))}: {first['msg']})") from None
