"""rows.instruction_row, the one reader of an instruction row: task loading and synthesis inputs agree on every row."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from amr_dspy.errors import DataError
from amr_dspy.rows import instruction_row
from amr_dspy.synthesis import read_inputs
from amr_dspy.tasks import load_tasks

# Each bad second row, and the message both entry points give for it.
BAD_ROWS = [
    (b'{"instruction": "ok"', "invalid JSON (Expecting ',' delimiter, column 1)"),
    (b'{"instruction": "caf\xe9"}', "not valid UTF-8 (byte 21 of the line)"),
    (b'["a", "list"]', "expected a JSON object, got list"),
    (b'{"prompt": "wrong field"}', "missing or empty field 'instruction'"),
    (b'{"instruction": "   "}', "missing or empty field 'instruction'"),
    # Task loading said "missing or empty field" for these two and took a blank id before the shared reader.
    (b'{"instruction": 42}', "field 'instruction' is a int, not a string"),
    (b'{"instruction": "ok", "id": "  "}', "missing or empty id field 'id'"),
]


def _error(call: Callable[[], object]) -> str:
    with pytest.raises(DataError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_a_bad_row_gives_one_message_through_tasks_and_synthesis(tmp_path: Path, row: bytes, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"instruction": "fine", "id": "a"}\n' + row + b"\n")
    from_tasks = _error(lambda: load_tasks(str(path), id_field="id"))
    from_synthesis = _error(lambda: read_inputs(str(path), id_field="id"))
    assert from_tasks == from_synthesis == f"{path}:2: {message}"


def test_a_bad_hf_row_names_the_dataset_split_and_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    data = tmp_path / "mini_ds"
    data.mkdir()
    rows = [{"instruction": "Write fizzbuzz.", "input": ""}, {"instruction": " ", "input": ""}]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = f"hf:{data}:train"
    assert _error(lambda: load_tasks(spec)) == _error(lambda: read_inputs(spec))
    assert _error(lambda: load_tasks(spec)) == f"{spec} row 2: missing or empty field 'instruction'"
    missing = f"hf:{data}:nosuchsplit"
    assert _error(lambda: load_tasks(missing)) == _error(lambda: read_inputs(missing)) != ""
    assert _error(lambda: read_inputs(missing)).startswith(f"{missing}: cannot load dataset")


def test_the_instruction_takes_the_input_and_the_id_its_position_or_field() -> None:
    row = {"instruction": "Sum a list.", "input": "[1, 2]", "key": 7}
    assert instruction_row("f:1", 3, row, stem="set") == ("set/3", "Sum a list.\n[1, 2]")
    assert instruction_row("f:1", 3, row, stem="set", input_field=None, id_field="key") == ("7", "Sum a list.")
    assert instruction_row("f:1", 3, {"instruction": "x" * 5}, stem="s", max_chars=5)[1] == "xxxxx"
    with pytest.raises(DataError, match=r"^f:1: instruction is 6 characters, over the limit of 5"):
        instruction_row("f:1", 3, {"instruction": "x" * 6}, stem="s", max_chars=5)
    with pytest.raises(DataError, match=r"^f:9: invalid JSON$"):
        instruction_row("f:1", 3, DataError("f:9: invalid JSON"), stem="s")
