"""Rows of instruction and task files (JSONL, a JSON list, parquet), each with where it came from (``file:line``).

A JSONL line that cannot be decoded is yielded as a ``DataError`` value instead of a row, so a caller can stop
at it (task loading) or skip and count it (synthesis with ``--skip-invalid``) and still read the lines after it.
A broken JSON list or parquet file cannot be read past its first error, so those raise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amr_dspy.errors import ConfigError, DataError

__all__ = ["file_rows", "jsonl_rows", "json_list_rows", "parquet_rows", "read_utf8"]


def file_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """The rows of ``path`` by its suffix: ``.jsonl``, ``.json`` (a list of objects) or ``.parquet``."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return jsonl_rows(path)
    if suffix == ".json":
        return json_list_rows(path)
    if suffix == ".parquet":
        return parquet_rows(path)
    raise ConfigError(
        f"{path}: unsupported instruction file type {suffix or '(none)'!r}; use .jsonl, .json or .parquet"
    )


def jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Each non-blank line, decoded; an undecodable line is yielded as its ``DataError``."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, DataError(f"{where}: not valid UTF-8 (byte {exc.start + 1} of the line)")
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                reason = exc.msg.removesuffix(" at")  # "Invalid control character at"
                yield where, DataError(f"{where}: invalid JSON ({reason}, column {exc.colno})")


def json_list_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Each element of a top-level JSON list, located by the line it starts on."""
    text = read_utf8(path)
    decoder = json.JSONDecoder()

    def where(pos: int) -> str:
        return f"{path}:{text.count(chr(10), 0, pos) + 1}"

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0)
    if not text.startswith("[", pos):
        raise DataError(f"{where(pos)}: expected a JSON list of objects")
    pos = skip_ws(pos + 1)
    if text.startswith("]", pos):
        return
    while True:
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where(exc.pos)}: invalid JSON ({exc.msg})") from exc
        yield where(pos), row
        pos = skip_ws(end)
        if text.startswith("]", pos):
            if skip_ws(pos + 1) != len(text):
                raise DataError(f"{where(pos + 1)}: invalid JSON (extra data after the list)")
            return
        if not text.startswith(",", pos):
            raise DataError(f"{where(pos)}: invalid JSON (expected ',' or ']')")
        pos = skip_ws(pos + 1)


def read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from exc


def parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises a zoo of types for unreadable files
        raise DataError(f"{path}: cannot read parquet ({type(exc).__name__}: {exc})") from exc
    for i, row in enumerate(table.to_pylist()):
        yield f"{path}: row {i + 1}", row
