"""Rows of instruction and task files (JSONL, a JSON list, parquet) and ``hf:`` datasets, each with where it came
from (``file:line``, ``hf:NAME:SPLIT row N``), and ``instruction_row``, the one reader of an instruction row.

A JSONL line that cannot be decoded is yielded as a ``DataError`` value instead of a row, so a caller can stop
at it (task loading) or skip and count it (synthesis with ``--skip-invalid``) and still read the lines after it.
A broken JSON list or parquet file cannot be read past its first error, so those raise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amr_dspy.errors import ConfigError, DataError

__all__ = ["names_another_language",
           "file_rows", "jsonl_rows", "json_list_rows", "parquet_rows", "read_utf8", "hf_rows", "instruction_row",
           "check_unique_id"]


_OTHER_LANGUAGE = re.compile(
    r"\b(java|javascript|js|c\+\+|c#|c|sql|mysql|html|css|ruby|php|swift|kotlin|go|golang|rust|perl|bash|shell|"
    r"typescript|jquery|react|node\.?js|angular|r|matlab|scala|haskell|objective-c|mongodb|xml)\b",
    re.IGNORECASE,
)
_PYTHON = re.compile(r"\bpython\b", re.IGNORECASE)


def names_another_language(instruction: str) -> bool:
    """Whether an instruction names another programming language (or SQL, HTML, ...) and not Python: Code Alpaca
    and similar sets mix them, and synthesis verifies only Python."""
    return bool(_OTHER_LANGUAGE.search(instruction)) and not _PYTHON.search(instruction)


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


def check_unique_id(seen: set[str], where: str, row_id: str) -> None:
    """DataError naming the row when ``row_id`` was already seen; otherwise remember it. Ids name records, results
    and checkpoints, so two rows with one id would overwrite each other."""
    if row_id in seen:
        raise DataError(f"{where}: duplicate id {row_id!r}")
    seen.add(row_id)


def hf_rows(name: str, split: str) -> Iterator[tuple[str, Any]]:
    """The rows of the HF dataset ``name``'s ``split``; DataError when it cannot be loaded."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many unrelated types (network, config, missing split)
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"hf:{name}:{split}: cannot load dataset ({type(exc).__name__}: {message})") from exc
    return ((f"hf:{name}:{split} row {i + 1}", row) for i, row in enumerate(ds))


def instruction_row(
    where: str,
    index: int,
    row: Any,
    *,
    stem: str,
    instruction_field: str = "instruction",
    input_field: str | None = "input",
    id_field: str | None = None,
    max_chars: int | None = None,
) -> tuple[str, str]:
    """The id and the instruction of the ``index``-th row (from ``file_rows`` or ``hf_rows``) of an instruction set.

    The instruction is ``instruction_field``, with ``input_field`` appended on a line of its own when present and
    non-empty (Alpaca style); the id is ``id_field``, else ``<stem>/<index>``. A row that is not an instruction (an
    undecodable line, not an object, a missing, empty or non-string instruction, one over ``max_chars``, a missing
    or empty id) raises DataError naming ``where``.
    """
    if isinstance(row, DataError):
        raise row
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    instruction = row.get(instruction_field)
    if instruction is not None and not isinstance(instruction, str):
        raise DataError(f"{where}: field {instruction_field!r} is a {type(instruction).__name__}, not a string")
    if not instruction or not instruction.strip():
        raise DataError(f"{where}: missing or empty field {instruction_field!r}")
    extra = row.get(input_field) if input_field else None
    if isinstance(extra, str) and extra.strip():
        instruction = f"{instruction}\n{extra}"
    if max_chars is not None and len(instruction) > max_chars:
        raise DataError(
            f"{where}: instruction is {len(instruction):,} characters, over the limit of {max_chars:,} "
            "(--max-instruction-chars)"
        )
    item_id = f"{stem}/{index}"
    if id_field:
        value = row.get(id_field)
        if value is None or str(value).strip() == "":
            raise DataError(f"{where}: missing or empty id field {id_field!r}")
        item_id = str(value)
    return item_id, instruction
