from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.tasks import FieldMap, Task, load_tasks, mbpp_split
from amr_dspy.testcases import CallTest
from tests.evalplus_helpers import mbpp_rows, use_humaneval_fixture, use_mbpp_subset


def test_mbpp_splits_partition_the_release_by_original_id() -> None:
    splits = Counter(mbpp_split(row["task_id"]) for row in mbpp_rows())
    assert splits == {"train": 115, "dev": 39, "test": 224}
    assert [mbpp_split(f"Mbpp/{n}") for n in (1, 10, 11, 510, 511, 600, 601, 809)] == [
        "train",
        "train",
        "test",
        "test",
        "dev",
        "dev",
        "train",
        "train",
    ]


def test_offline_copy_is_found_through_amr_dspy_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gzip

    from tests.evalplus_helpers import isolate_groundtruth_cache

    rows = [r for r in mbpp_rows() if r["task_id"] in ("Mbpp/3", "Mbpp/12")]
    data = tmp_path / "data"
    data.mkdir()
    with gzip.open(data / "MbppPlus-v0.2.0.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    monkeypatch.delenv("MBPP_OVERRIDE_PATH", raising=False)
    monkeypatch.setenv("AMR_DSPY_DATA", str(data))
    isolate_groundtruth_cache(monkeypatch, tmp_path)
    assert [t.task_id for t in load_tasks("mbpp+")] == ["Mbpp/3", "Mbpp/12"]


@pytest.fixture
def mbpp_subset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return use_mbpp_subset(monkeypatch, tmp_path, [2, 11, 124, 600, 602, 737])


def test_mbpp_spec_selects_split_in_dataset_order(mbpp_subset: Path) -> None:
    assert [t.task_id for t in load_tasks("mbpp+:test")] == ["Mbpp/11", "Mbpp/124"]
    assert [t.task_id for t in load_tasks("mbpp+:dev")] == ["Mbpp/600"]
    assert [t.task_id for t in load_tasks("mbpp+:train")] == ["Mbpp/2", "Mbpp/602", "Mbpp/737"]
    assert len(load_tasks("mbpp+")) == 6
    assert [t.task_id for t in load_tasks("mbpp+", limit=2)] == ["Mbpp/2", "Mbpp/11"]


def test_mbpp_task_carries_evalplus_prompt_and_hidden_tests(mbpp_subset: Path) -> None:
    raw = {row["task_id"]: row for row in map(json.loads, mbpp_subset.read_text().splitlines())}
    task = next(t for t in load_tasks("mbpp+:test") if t.task_id == "Mbpp/11")
    assert task.instruction == raw["Mbpp/11"]["prompt"].strip() + "\n"
    assert 'assert remove_Occ("hello","l") == "heo"' in task.instruction
    assert task.entry_point == "remove_Occ" and task.dataset == "mbpp" and task.split == "test"
    assert task.source == "mbpp+"
    assert "def remove_Occ" in (task.canonical_solution or "")
    assert "def remove_Occ" not in task.instruction

    base, plus = task.base_tests, task.plus_tests
    assert len(base) == len(raw["Mbpp/11"]["base_input"]) and len(plus) == len(raw["Mbpp/11"]["plus_input"])
    assert task.tests[: len(base)] == base  # base inputs first, as evalplus runs them
    first = base[0]
    assert isinstance(first, CallTest)
    assert first.inputs == ["hello", "l"] and first.expected == "heo" and first.name == "base_0"
    assert all(t.time_limit_s >= 1.0 for t in task.tests)  # evalplus's min_time_limit
    assert all(t.plus for t in plus) and not any(t.plus for t in base)


def test_mbpp_special_tasks_keep_evalplus_inputs_and_oracles(mbpp_subset: Path) -> None:
    tasks = {t.task_id: t for t in load_tasks("mbpp+")}
    angle = tasks["Mbpp/124"]  # inputs deserialised to (float, complex), compared with atol
    assert angle.tests[0].atol == pytest.approx(1e-4)
    a, b = angle.tests[0].inputs
    assert isinstance(a, float) and isinstance(b, complex)
    assert math.isclose(angle.tests[0].expected, __import__("cmath").phase(a + b))
    check_str = tasks["Mbpp/737"]  # evalplus records only whether the output is not None
    assert {type(t.expected) for t in check_str.tests} == {bool}


def test_humaneval_fixture_loads_prompt_as_instruction(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fixture = use_humaneval_fixture(monkeypatch, tmp_path)
    raw = [json.loads(line) for line in fixture.read_text().splitlines()]
    tasks = load_tasks("humaneval+")
    assert [t.task_id for t in tasks] == [r["task_id"] for r in raw]
    gap = tasks[1]
    assert gap.instruction == raw[1]["prompt"].strip() + "\n" and gap.dataset == "humaneval"
    assert gap.canonical_solution == raw[1]["prompt"] + raw[1]["canonical_solution"]
    assert gap.tests[0].expected == pytest.approx(1.5) and gap.tests[0].atol == pytest.approx(1e-6)
    assert [t.expected for t in tasks[0].tests] == [6, 0, 9, 1, 10, 54]
    assert load_tasks("humaneval+:test") == tasks


@pytest.mark.parametrize("spec", ["mbpp+:valid", "humaneval+:train", "no-such-benchmark", "mbpp"])
def test_unknown_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"benchmark|split"):
        load_tasks(spec)


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_file_gives_instruction_only_tasks(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "alpaca.jsonl",
        [
            {"instruction": "Reverse a list.", "input": "", "output": "x[::-1]"},
            {"instruction": "Sum these numbers.", "input": "[1, 2]"},
        ],
    )
    tasks = load_tasks(str(path))
    assert [t.task_id for t in tasks] == ["alpaca/0", "alpaca/1"]
    assert tasks[0].instruction == "Reverse a list."
    assert tasks[1].instruction == "Sum these numbers.\n[1, 2]"
    assert all(t.tests == [] and t.dataset is None and t.source == str(path) for t in tasks)


def test_field_mapping_and_ids(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.jsonl", [{"q": "Task A", "key": 7, "sol": "def a(): return 1"}, {"q": "Task B", "key": "b"}]
    )
    tasks = load_tasks(str(path), field_map={"instruction_field": "q", "id_field": "key", "solution_field": "sol"})
    assert [(t.task_id, t.instruction, t.canonical_solution) for t in tasks] == [
        ("7", "Task A", "def a(): return 1"),
        ("b", "Task B", None),
    ]
    assert load_tasks(str(path), instruction_field="q")[1].instruction == "Task B"
    assert load_tasks(str(path), field_map=FieldMap(instruction_field="q"), limit=1)[0].task_id == "q/0"
    with pytest.raises(ConfigError, match="instruction_feild"):
        load_tasks(str(path), instruction_feild="q")


def test_json_list_and_parquet_files(tmp_path: Path) -> None:
    rows = [{"instruction": f"Task {i}", "id": f"t{i}"} for i in range(3)]
    json_path = tmp_path / "list.json"
    json_path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    assert [t.instruction for t in load_tasks(str(json_path))] == ["Task 0", "Task 1", "Task 2"]

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet_path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    assert [t.task_id for t in load_tasks(str(parquet_path), id_field="id")] == ["t0", "t1", "t2"]


@pytest.mark.parametrize(
    ("content", "location", "reason"),
    [
        (b'{"instruction": "ok"}\n{"instruction": "broken"\n', ":2:", "invalid JSON"),
        (b'{"instruction": "ok"}\n\n{"input": "no instruction"}\n', ":3:", "missing or empty field 'instruction'"),
        (b'{"instruction": "   "}\n', ":1:", "missing or empty field"),
        (b'{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n', ":2:", "not valid UTF-8"),
        (b'["a list, not an object"]\n', ":1:", "expected a JSON object"),
    ],
)
def test_malformed_jsonl_rows_name_file_and_line(tmp_path: Path, content: bytes, location: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_tasks(str(path))
    message = str(info.value)
    assert f"{path}{location}" in message and reason in message and "\n" not in message


def test_malformed_json_list_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"instruction": "fine"},\n  {"instruction": ""}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json:3: missing or empty field"):
        load_tasks(str(path))
    path.write_text('[\n  {"instruction": "fine"},\n  {"instruction": "x",}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json:3: invalid JSON"):
        load_tasks(str(path))
    path.write_bytes(b'[\n{"instruction": "\xff"}]')
    with pytest.raises(DataError, match=r"bad\.json:2: not valid UTF-8"):
        load_tasks(str(path))
    path.write_text('{"instruction": "not a list"}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list"):
        load_tasks(str(path))


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "dup.jsonl", [{"instruction": "a", "id": 1}, {"instruction": "b", "id": 1}])
    with pytest.raises(DataError, match=r"dup\.jsonl:2: duplicate id '1'"):
        load_tasks(str(path), id_field="id")


def test_hf_spec_loads_a_local_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    data = tmp_path / "mini_ds"
    data.mkdir()
    _write(
        data / "train.jsonl",
        [{"instruction": "Write fizzbuzz.", "input": ""}, {"instruction": "Sort a dict.", "input": ""}],
    )
    tasks = load_tasks(f"hf:{data}:train")
    assert [(t.task_id, t.instruction, t.source, t.split) for t in tasks] == [
        ("mini_ds/0", "Write fizzbuzz.", f"hf:{data}", "train"),
        ("mini_ds/1", "Sort a dict.", f"hf:{data}", "train"),
    ]
    with pytest.raises(DataError, match=r"^hf:.*mini_ds:nosuchsplit: cannot load dataset"):
        load_tasks(f"hf:{data}:nosuchsplit")


def test_task_repr_hides_tests_and_solution() -> None:
    task = Task(
        task_id="x/0",
        instruction="Do it.",
        source="x",
        canonical_solution="SECRET",
        tests=[CallTest(name="t", inputs=[1], expected=2)],
    )
    assert "SECRET" not in repr(task) and "expected" not in repr(task)
