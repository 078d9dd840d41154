"""The commit log of a synthesis run, ``records.jsonl``: ``RecordLog`` and ``read_records``.

Durability: ``records.jsonl`` is the commit log. A finished record is appended with one ``write`` of a full
line followed by ``fsync``; when a record added modules, the library is saved (atomically) *before* its line
is written, so the library on disk always holds the modules of every committed record. A ``kill -9`` loses
only the records in flight; ``--resume`` drops a torn last line and skips the ids already committed.
The run's other files (``run.json``, ``decontamination.jsonl``, ``sft.jsonl``, ``summary.json``) are replaced
whole (``_write_atomic``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pydantic import ValidationError

from amr_dspy.errors import DataError
from amr_dspy.synthesis.records import SynthesisRecord

__all__ = ["RecordLog", "read_records"]


class RecordLog:
    """``records.jsonl``: read on open (dropping a torn last line), appended one fsynced line per record."""

    def __init__(self, path: Path, records: list[SynthesisRecord], *, repaired_bytes: int = 0) -> None:
        self.path = path
        self.repaired_bytes = repaired_bytes
        self._records = records
        self._ids = {r.id for r in records}
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def open(cls, path: Path) -> RecordLog:
        repaired = _repair_tail(path) if path.exists() else 0
        return cls(path, read_records(path) if path.exists() else [], repaired_bytes=repaired)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[SynthesisRecord]:
        with self._lock:
            return list(self._records)

    def append(self, record: SynthesisRecord) -> None:
        data = (record.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            if record.id in self._ids:
                raise DataError(f"{self.path}: record {record.id!r} is already committed")
            view = memoryview(data)
            while view:  # one write for a regular file; the loop only guards against a short write
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
            self._records.append(record)
            self._ids.add(record.id)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _repair_tail(path: Path) -> int:
    """Cut a last line without its newline (a write torn by a kill); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        keep = 0
        chunk = 1 << 16
        pos = size
        while pos > 0:  # find the last newline from the end without reading a large file whole
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            index = block.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                break
            pos = start
        if keep == size:
            return 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def read_records(path: Path) -> list[SynthesisRecord]:
    """Every record of a ``records.jsonl``; DataError naming the line for a corrupt record or a duplicate id."""
    records: list[SynthesisRecord] = []
    seen: set[str] = set()
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = SynthesisRecord.model_validate_json(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "(line)"
                raise DataError(f"{path}:{lineno}: corrupt record ({where}: {first['msg']})") from None
            if record.id in seen:
                raise DataError(f"{path}:{lineno}: second record for id {record.id!r}")
            seen.add(record.id)
            records.append(record)
    return records


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
