"""Checkpoints of long evaluations: each finished task is appended to ``progress.jsonl`` as it finishes, so a run
killed after hours (or ended with its session) resumes where it stopped instead of starting over.

A line is written and fsynced as one ``write``; a line cut short by a kill is the last one and is dropped on
reading. Every line carries the run's key (what was evaluated, how and by whom): a checkpoint made by a
different run is refused rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from amr_dspy.errors import ConfigError, DataError

__all__ = ["EvalCheckpoint", "Finished", "lm_fingerprint", "run_key"]

PROGRESS_FILE = "progress.jsonl"


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

    def __init__(self, directory: Path, key: str, *, fresh: bool = False) -> None:
        self.path = directory / PROGRESS_FILE
        self.key = key
        self.session = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._closed = False
        if fresh:
            self.path.unlink(missing_ok=True)
        self.done: dict[str, Finished] = {}
        self.prior_wall_s = 0.0
        self._read()
        self.recorded: set[str] = set(self.done)  # the tasks the file holds: earlier sessions' and this one's

    def _read(self) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_bytes().split(b"\n")
        walls: dict[str, float] = {}
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = Finished.model_validate_json(raw)
            except ValidationError as exc:
                if lineno == len(lines):
                    continue  # no newline after it: the line a kill cut short, so that task simply runs again
                raise DataError(f"{self.path}:{lineno}: not a checkpoint line ({exc.errors()[0]['msg']})") from None
            if row.key != self.key:
                raise ConfigError(
                    f"{self.path}:{lineno}: checkpoint of a different run (variant, tasks, teacher or settings "
                    "differ); pass --fresh to discard it or choose another --out"
                )
            self.done[str(row.result.get("task_id"))] = row
            walls[row.session] = max(walls.get(row.session, 0.0), row.elapsed_s)
        self.prior_wall_s = sum(walls.values())

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
        """The run is complete and its results are written: the checkpoint has done its job.

        DSPy's parallel executor resubmits a straggling task and keeps the first answer; the abandoned thread may
        finish after this, and must not leave a checkpoint behind in a finished eval folder.
        """
        with self._lock:
            self._closed = True
            self.path.unlink(missing_ok=True)
