"""Synthesis inputs: an instruction file (.jsonl, .json list, .parquet), ``hf:NAME[:SPLIT]`` or a benchmark spec,
read into ``InputItem``s, with the rows that are not valid instructions named by file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.rows import check_unique_id, file_rows, hf_rows, instruction_row, names_another_language

__all__ = ["DEFAULT_MAX_INSTRUCTION_CHARS", "InputItem", "InvalidRow", "InputBatch", "read_inputs"]

DEFAULT_MAX_INSTRUCTION_CHARS = 16_000  # about 4k tokens: the local teacher's context must also hold the answer


class InputItem(BaseModel):
    """One instruction to synthesize a record for."""

    id: str
    instruction: str
    where: str  # file:line (or dataset row) it came from
    task_id: str | None = None  # a benchmark task id when the input is a benchmark
    entry_point: str | None = None


class InvalidRow(BaseModel):
    where: str
    message: str  # the one-line error, naming file and line


class InputBatch(BaseModel):
    name: str  # what the provenance calls the input, e.g. "sample_instructions.jsonl" or "hf:NAME:SPLIT"
    spec: str
    rows: int  # rows read, valid or not
    items: list[InputItem]
    invalid: list[InvalidRow] = Field(default_factory=list)
    other_language: list[str] = Field(default_factory=list)  # where the rows --python-only skipped are


class _Fields(BaseModel):
    instruction: str = "instruction"
    input: str | None = "input"  # appended to the instruction when present (Alpaca style)
    id: str | None = None  # default: "<file stem>/<row index>"
    max_chars: int = Field(DEFAULT_MAX_INSTRUCTION_CHARS, ge=1)


def read_inputs(
    spec: str,
    *,
    instruction_field: str = "instruction",
    input_field: str | None = "input",
    id_field: str | None = None,
    max_chars: int = DEFAULT_MAX_INSTRUCTION_CHARS,
    skip_invalid: bool = False,
    limit: int | None = None,
    python_only: bool = False,
) -> InputBatch:
    """Read ``FILE`` (.jsonl, .json list, .parquet), ``hf:NAME[:SPLIT]`` or a benchmark spec into input items.

    A bad row (invalid JSON, non-UTF-8 bytes, a missing, empty or over-long instruction, a duplicate id) raises
    DataError naming the file and line, or with ``skip_invalid`` is counted in ``invalid`` and skipped. With
    ``python_only``, instructions that name another language and not Python are skipped and counted in
    ``other_language``; ``limit`` counts the items kept.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    fields = _Fields(instruction=instruction_field, input=input_field, id=id_field, max_chars=max_chars)
    from amr_dspy.tasks import benchmark_name

    spec = spec.strip()
    if benchmark_name(spec) is not None:  # mbpp+[stub][:split], humaneval+, bigcodebench[-complete][:split][@subset]
        return _benchmark_inputs(spec, limit)
    if spec.startswith("hf:"):
        name, _, split = spec[3:].partition(":")
        if not name:
            raise ConfigError("hf: input needs a dataset name, as in hf:NAME[:SPLIT]")
        split = split or "train"
        rows, label, stem = hf_rows(name, split), f"hf:{name}:{split}", name.rstrip("/").rsplit("/", 1)[-1]
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"--input {spec}: no such file (expected a .jsonl, .json or .parquet file or hf:NAME)")
        rows, label, stem = file_rows(path), path.name, path.stem
    batch = InputBatch(name=label, spec=spec, rows=0, items=[])
    seen: set[str] = set()
    for index, (where, row) in enumerate(rows):
        batch.rows += 1
        try:
            item = _item(where, index, row, fields, stem)
            check_unique_id(seen, where, item.id)
        except DataError as exc:
            if not skip_invalid:
                raise
            batch.invalid.append(InvalidRow(where=where, message=str(exc)))
            continue
        if python_only and names_another_language(item.instruction):
            batch.other_language.append(where)
            continue
        batch.items.append(item)
        if limit is not None and len(batch.items) >= limit:
            break
    return batch


def _item(where: str, index: int, row: Any, fields: _Fields, stem: str) -> InputItem:
    item_id, instruction = instruction_row(where, index, row, stem=stem, instruction_field=fields.instruction,
                                           input_field=fields.input, id_field=fields.id,
                                           max_chars=fields.max_chars)  # fmt: skip
    return InputItem(id=item_id, instruction=instruction, where=where)


def _benchmark_inputs(spec: str, limit: int | None) -> InputBatch:
    from amr_dspy.tasks import load_tasks

    tasks = load_tasks(spec, limit=limit)
    items = [InputItem(id=t.task_id, instruction=t.instruction, where=f"{spec} {t.task_id}", task_id=t.task_id,
                       entry_point=t.entry_point) for t in tasks]  # fmt: skip
    return InputBatch(name=spec, spec=spec, rows=len(items), items=items)
