"""Checkpoints of long evaluations: each finished task is appended to ``progress.jsonl`` as it finishes, so a run
killed after hours (or ended with its session) resumes where it stopped instead of starting over.

A line is written and fsynced as one ``write``; a line cut short by a kill is the last one and is dropped on
reading. Every line carries the run's key (what was evaluated, how and by whom, but not which tasks): a
checkpoint made by a different run is refused rather than mixed in.

A finished run keeps its lines as ``finished.jsonl``, so that the same run over more tasks (a larger
``--limit``) runs only the new ones: a comparison too long for one session grows in prefixes, each a paired
comparison of its own. A run over fewer tasks takes its tasks from there too.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from amr_dspy.errors import ConfigError, DataError

__all__ = ["EvalCheckpoint", "Finished", "lm_fingerprint", "run_key"]

PROGRESS_FILE = "progress.jsonl"
FINISHED_FILE = "finished.jsonl"


class Finished(BaseModel):
    """One finished task as the checkpoint holds it: its result and its program record (code, response, notes)."""

    key: str
    session: str
    elapsed_s: float  # since its session started: the largest per session is that session's wall time
    result: dict[str, Any]
    record: dict[str, Any]


def run_key(**parts: Any) -> str:
    """A short fingerprint of everything that makes two runs comparable (variant, tasks, teacher, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# What DSPy's own cache key leaves out (how the server is reached), plus the request timeout.
_CONNECTION_KWARGS = frozenset({"api_base", "base_url", "api_key", "timeout"})


def lm_fingerprint(lm: Any) -> list[Any]:
    """The LM's model and generation settings, not how it is reached: the local server gets a new port per session.

    A batching server is part of it (batched greedy decoding can change answers); llama_cpp.server is left out,
    so checkpoints written before there was a choice of server still resume under it.
    """
    kwargs = getattr(lm, "kwargs", None) or {}
    fingerprint = [getattr(lm, "model", None), {k: v for k, v in kwargs.items() if k not in _CONNECTION_KWARGS}]
    server = getattr(lm, "server", None)
    if server is not None and server.kind != "llama-cpp-python":
        fingerprint.append(server.model_dump())
    return fingerprint


class EvalCheckpoint:
    """``progress.jsonl`` in an eval folder: what earlier sessions of this run finished, plus an appender."""

    def __init__(self, directory: Path, key: str, *, tasks: Iterable[str] | None = None,
                 legacy_key: str | None = None, fresh: bool = False) -> None:  # fmt: skip
        """``tasks``: the run's task ids (None: all the file holds); the file's other tasks stay in it, unused.

        ``legacy_key``: the key this run had when keys named the tasks; its lines are rewritten to ``key``.
        """
        self.path = directory / PROGRESS_FILE
        self.finished_path = directory / FINISHED_FILE
        self.key = key
        self.session = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._closed = False
        if fresh:
            self.path.unlink(missing_ok=True)
            self.finished_path.unlink(missing_ok=True)
        self.done: dict[str, Finished] = {}
        self.prior_wall_s = 0.0
        self.recorded: set[str] = set()  # the tasks the file holds: earlier sessions' and this one's
        keys = {key} | ({legacy_key} if legacy_key else set())
        if not self.path.is_file() and self.finished_path.is_file() and self._rows_of(self.finished_path, keys):
            os.replace(self.finished_path, self.path)  # the same run, finished before: extend it
        self._read(keys, None if tasks is None else set(tasks))

    def _rows_of(self, path: Path, keys: set[str]) -> list[Finished] | None:
        """The file's rows, or None when a line was written by another run (a corrupt line raises)."""
        lines = path.read_bytes().split(b"\n")
        rows = []
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = Finished.model_validate_json(raw)
            except ValidationError as exc:
                if lineno == len(lines):
                    continue  # no newline after it: the line a kill cut short, so that task simply runs again
                raise DataError(f"{path}:{lineno}: not a checkpoint line ({exc.errors()[0]['msg']})") from None
            if row.key not in keys:
                if path == self.path:
                    raise ConfigError(
                        f"{path}:{lineno}: checkpoint of a different run (variant, teacher or settings differ); "
                        "pass --fresh to discard it or choose another --out"
                    )
                return None
            rows.append(row)
        return rows

    def _read(self, keys: set[str], tasks: set[str] | None) -> None:
        if not self.path.is_file():
            return
        rows = self._rows_of(self.path, keys) or []
        if any(row.key != self.key for row in rows):
            self._rewrite([row.model_copy(update={"key": self.key}) for row in rows])
        walls: dict[str, float] = {}
        for row in rows:
            task_id = str(row.result.get("task_id"))
            self.recorded.add(task_id)
            if tasks is not None and task_id not in tasks:
                continue
            self.done[task_id] = row
            walls[row.session] = max(walls.get(row.session, 0.0), row.elapsed_s)
        # a session's longest elapsed time among this run's tasks: about its time for them, since tasks run in order
        self.prior_wall_s = sum(walls.values())

    def _rewrite(self, rows: list[Finished]) -> None:
        staged = self.path.with_suffix(".tmp")
        staged.write_bytes(b"".join(row.model_dump_json().encode() + b"\n" for row in rows))
        os.replace(staged, self.path)

    def add(self, result: BaseModel, record: dict[str, Any], elapsed_s: float) -> None:
        """Append one finished task durably (thread-safe)."""
        line = Finished(key=self.key, session=self.session, elapsed_s=elapsed_s,
                        result=result.model_dump(mode="json"), record=record).model_dump_json()  # fmt: skip
        with self._lock:
            if self._closed:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as handle:
                handle.write(line.encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            self.recorded.add(str(getattr(result, "task_id", "")))

    def close(self) -> None:
        """Take no more tasks; what is in the file stays for the next session to resume from.

        An interrupted run's threads keep going after the interrupt, into a sandbox and teacher that are shutting
        down; what they finish then is not a result and must not be resumed as one.
        """
        with self._lock:
            self._closed = True

    def finish(self) -> None:
        """The run is complete and its results are written: its lines become ``finished.jsonl``.

        DSPy's parallel executor resubmits a straggling task and keeps the first answer; the abandoned thread may
        finish after this, and must not leave a checkpoint behind in a finished eval folder.
        """
        with self._lock:
            self._closed = True
            if self.path.is_file():
                os.replace(self.path, self.finished_path)
