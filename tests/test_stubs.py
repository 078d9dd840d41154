"""``mbpp+stub``: MBPP+ prompts rewritten as completion-style stubs, with MBPP+'s tasks, ids, splits and tests."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.framing import completion_target, frame_instruction
from amr_dspy.stubs import mbpp_stub, stub_statement
from amr_dspy.tasks import BENCHMARK_SPECS, _local_copy, hidden_test_set, load_tasks

ANNOTATED = '''
import math
from functools import lru_cache


@lru_cache(maxsize=None)
def area(r: float, *, scale: float = 1.0, unit: str = "m") -> float:
    return math.pi * r * r * scale
'''
AREA_PROMPT = '"""\nWrite a function to find the area of a circle.\nassert area(2, scale=0.5)==6.283185307179586\n"""\n'


def prompt(sentence: str, assertion: str) -> str:
    return f'"""\n{sentence}\n{assertion}\n"""\n'


def test_stub_keeps_imports_and_the_signature_as_written_and_makes_the_example_a_doctest() -> None:
    stub = mbpp_stub(AREA_PROMPT, ANNOTATED, "area")
    assert stub == (
        "import math\n"
        "from functools import lru_cache\n"
        "\n\n"
        "def area(r: float, *, scale: float=1.0, unit: str='m') -> float:\n"
        '    """Write a function to find the area of a circle.\n'
        "\n"
        "    >>> area(2, scale=0.5)\n"
        "    6.283185307179586\n"
        '    """\n'
    )
    assert completion_target(stub, "area") == "area"
    assert "lru_cache(" not in stub  # decorators are dropped


def test_stub_keeps_an_example_that_is_not_call_equals_expected_as_an_assert_line() -> None:
    solution = ("import re\n\ndef helper(s):\n    return s\n\n"
                "def check_str(string):\n    return bool(re.match('[aeiou]', helper(string)))\n")
    stub = mbpp_stub(prompt("Write a function to check a vowel start.", 'assert check_str("annie")'), solution,
                     "check_str")
    assert stub.endswith('def check_str(string):\n    """Write a function to check a vowel start.\n\n'
                         '    Example: assert check_str("annie")\n    """\n')
    assert "def helper" not in stub  # only the entry point: helpers are the teacher's to write
    closeness = prompt("Find the volume.", "assert math.isclose(vol(10), 4188.79, rel_tol=0.001)")
    assert "    Example: assert math.isclose(vol(10), 4188.79, rel_tol=0.001)\n" in mbpp_stub(
        closeness, "import math\ndef vol(r):\n    return 4 / 3 * math.pi * r**3\n", "vol")
    chained = mbpp_stub(prompt("Sort it.", "assert 1 < f(2) == 3"), "def f(x):\n    return x + 1\n", "f")
    assert "Example: assert 1 < f(2) == 3" in chained


def test_stub_of_a_wrapped_call_and_a_string_literal() -> None:
    stub = mbpp_stub(prompt("Find shared elements.", "assert set(sim((3, 4),(4, 5))) == set((4,))"),
                     "def sim(a, b):\n  return tuple(set(a) & set(b))\n", "sim")
    assert "    >>> set(sim((3, 4), (4, 5)))\n    set((4,))\n" in stub
    regex = mbpp_stub(prompt("Remove the digits.", r'assert strip("a1\tb") == "a\tb"'),
                      "def strip(s):\n    return s\n", "strip")
    assert '    r"""Remove the digits.' in regex  # the escapes stay as written, and the doctest with them
    assert ast.get_docstring(ast.parse(regex).body[0]).endswith(">>> strip('a1\\tb')\n'a\\tb'")


def test_stub_refuses_a_solution_without_the_entry_point() -> None:
    with pytest.raises(DataError, match="no top-level function 'missing'"):
        mbpp_stub(AREA_PROMPT, ANNOTATED, "missing")


def test_stub_statement_is_the_task_sentence_of_a_stub_only() -> None:
    stub = mbpp_stub(AREA_PROMPT, ANNOTATED, "area")
    assert stub_statement(stub, "area") == "Write a function to find the area of a circle."
    assert stub_statement(stub, "other") is None
    assert stub_statement(AREA_PROMPT, "area") is None  # a prose prompt is a bare string, no function


def test_stub_framed_for_chat_names_the_function_and_keeps_its_docstring() -> None:
    stub = mbpp_stub(AREA_PROMPT, ANNOTATED, "area")
    framed = frame_instruction(stub, "area")
    assert framed.startswith("Complete the following Python function `area`.") and stub.strip() in framed


# --------------------------------------------------------------------------------------------- real data


def _release_rows() -> list[dict]:
    path = _local_copy("MbppPlus-v0.2.0.jsonl.gz")
    if path is None:
        pytest.skip("MBPP+ v0.2.0 not found (../shared/data or $AMR_DSPY_DATA)")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_every_mbpp_plus_task_becomes_a_stub_of_its_entry_point() -> None:
    rows = _release_rows()
    assert len(rows) == 378
    doctests = 0
    for row in rows:
        stub = mbpp_stub(row["prompt"], row["canonical_solution"], row["entry_point"])
        ast.parse(stub)
        assert completion_target(stub, row["entry_point"]) == row["entry_point"], row["task_id"]
        assert stub_statement(stub, row["entry_point"]), row["task_id"]
        doctests += ">>> " in stub
        assert (">>> " in stub) != ("Example: assert" in stub), row["task_id"]
    assert doctests > 350  # all but the isclose / truthiness examples


@pytest.fixture
def mbpp_subset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    if _local_copy("MbppPlus-v0.2.0.jsonl.gz") is None:
        pytest.skip("MBPP+ v0.2.0 not found (../shared/data or $AMR_DSPY_DATA)")
    from tests.evalplus_helpers import use_mbpp_subset

    return use_mbpp_subset(monkeypatch, tmp_path, [2, 3, 11, 124, 554, 600, 602])


def test_stub_spec_has_the_splits_ids_and_hidden_tests_of_mbpp_plus(mbpp_subset: Path) -> None:
    for split in ("train", "dev", "test"):
        prose, stubs = load_tasks(f"mbpp+:{split}"), load_tasks(f"mbpp+stub:{split}")
        assert [t.task_id for t in stubs] == [t.task_id for t in prose] and stubs
        for p, s in zip(prose, stubs, strict=True):
            assert s.tests == p.tests and s.canonical_solution == p.canonical_solution
            assert (s.entry_point, s.dataset, s.split) == (p.entry_point, "mbpp", split)
            assert s.source == "mbpp+stub" and p.source == "mbpp+"
            assert s.instruction != p.instruction and completion_target(s.instruction, s.entry_point)
    assert [t.task_id for t in load_tasks("mbpp+stub:dev")] == ["Mbpp/554", "Mbpp/600"]
    assert len(load_tasks("mbpp+stub")) == 7 and len(load_tasks("mbpp+stub", limit=2)) == 2
    three = next(t for t in load_tasks("mbpp+stub:train") if t.task_id == "Mbpp/3")
    assert three.instruction.startswith("import math\n\n\ndef is_not_prime(n):\n")


def test_synthesize_reads_the_stub_spec_as_a_benchmark(mbpp_subset: Path) -> None:
    from amr_dspy.synthesis import read_inputs

    batch = read_inputs("mbpp+stub:dev")
    assert [(i.task_id, i.entry_point) for i in batch.items] == [("Mbpp/554", "Split"), ("Mbpp/600", "is_Even")]
    assert all(i.instruction.startswith("def ") for i in batch.items)


# --------------------------------------------------------------------------------------------- guards


def test_spec_is_listed_and_unknown_specs_name_it() -> None:
    assert {"mbpp+stub", "mbpp+stub:train", "mbpp+stub:dev", "mbpp+stub:test"} <= set(BENCHMARK_SPECS)
    with pytest.raises(ConfigError, match=r"mbpp\+stub\[:train\|dev\|test\]"):
        load_tasks("mbpp+stubs:dev")
    with pytest.raises(ConfigError, match="unknown split"):
        load_tasks("mbpp+stub:valid")
    assert hidden_test_set("mbpp+stub:dev") == "mbpp+:dev" and hidden_test_set("mbpp+stub") == "mbpp+"
    assert hidden_test_set("humaneval+") == "humaneval+"


@pytest.mark.parametrize(
    ("train", "dev", "message"),
    [
        ("mbpp+stub:test", "mbpp+stub:dev", "--train mbpp+stub:test: includes the held-out MBPP+ test split"),
        ("mbpp+stub", "mbpp+:dev", "--train mbpp+stub: includes the held-out MBPP+ test split"),
        ("mbpp+:train", "mbpp+stub:test", "--dev mbpp+stub:test: includes the held-out MBPP+ test split"),
        ("mbpp+stub:dev", "mbpp+:dev", "--train mbpp+stub:dev: demos must come from the train split"),
    ],
)
def test_compile_refuses_stub_test_and_dev_splits(train: str, dev: str, message: str) -> None:
    from optimize.compile import check_split_specs

    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        check_split_specs(train, dev)


def test_compile_accepts_stub_train_and_dev_and_refuses_loaded_stub_test_tasks() -> None:
    from amr_dspy.tasks import Task
    from amr_dspy.testcases import CallTest
    from optimize.compile import check_split_specs, check_splits

    check_split_specs("mbpp+stub:train", "mbpp+stub:dev")
    check_split_specs("mbpp+stub:train", "mbpp+:dev")

    def stub_task(n: int, split: str) -> Task:
        return Task(task_id=f"Mbpp/{n}", instruction="def f(x):\n    '''Do it.'''\n", entry_point="f",
                    tests=[CallTest(name="base_0", inputs=[1], expected=1)], dataset="mbpp", source="mbpp+stub",
                    split=split)

    with pytest.raises(ConfigError, match="held-out test split"):
        check_splits([stub_task(2, "train")], [stub_task(11, "test")])
    with pytest.raises(ConfigError, match="share 1 task"):
        check_splits([stub_task(2, "train")], [stub_task(2, "train")])  # mbpp+:train against mbpp+stub:train


def test_library_seeding_and_growth_refuse_stub_dev_and_test_tasks() -> None:
    from amr_dspy.leakage import check_provenance, check_tasks
    from amr_dspy.library import Provenance

    for split in ("dev", "test"):
        with pytest.raises(ConfigError, match="only training tasks"):
            check_tasks([SimpleNamespace(task_id="Mbpp/11", split=split, dataset="mbpp", source="mbpp+stub")], "seed")
        for source in (f"mbpp+stub:{split}", f"synthesize:mbpp+stub:{split}"):
            with pytest.raises(ConfigError, match="library growth refused"):
                check_provenance(Provenance(source=source, task_id="Mbpp/11"))
    with pytest.raises(ConfigError, match="library growth refused"):
        check_provenance(Provenance(source="synthesize:mbpp+stub"))
    check_tasks([SimpleNamespace(task_id="Mbpp/2", split="train", dataset="mbpp", source="mbpp+stub")], "seed")
    check_provenance(Provenance(source="synthesize:mbpp+stub:train", task_id="Mbpp/2"))


def test_seeding_from_stubs_describes_the_entry_point_by_its_task_sentence(tmp_path: Path) -> None:
    from amr_dspy.library import HashingEmbedder, Library, seed_from_tasks

    solution = "def is_even(n):\n    return n % 2 == 0\n"
    stub = mbpp_stub(prompt("Write a function to check evenness.", "assert is_even(2) == True"), solution, "is_even")
    task = SimpleNamespace(task_id="Mbpp/602", canonical_solution=solution, split="train", source="mbpp+stub",
                           entry_point="is_even", instruction=stub, tests=[object()], dataset="mbpp")
    library = Library.create(tmp_path / "lib", HashingEmbedder(64))
    report = seed_from_tasks([task], lambda t, s: True, None, library)
    record = library.get(report.added_ids[0])
    assert record.description == "Write a function to check evenness."
    assert record.provenance.source == "mbpp+stub:train"


def test_compare_pairs_stub_runs_with_mbpp_plus_runs_on_the_same_split(tmp_path: Path) -> None:
    from amr_dspy.compare import EvalRun, build_report
    from amr_dspy.evaluation import EvalResults, TaskResult

    def run(benchmark: str, name: str, passes: list[bool]) -> EvalRun:
        tasks = [TaskResult(task_id=f"Mbpp/{554 + i}", base_passed=p, plus_passed=p) for i, p in enumerate(passes)]
        results = EvalResults.collect(benchmark, tasks, 1.0, variant="direct")
        return EvalRun(directory=tmp_path / name, label="direct", results=results, codes={})

    prose, stubs = run("mbpp+:dev", "direct-mbpp+dev", [True, False]), run("mbpp+stub:dev", "direct-stub", [True, True])
    report = build_report([prose, stubs], resamples=100)
    assert report.benchmark == "mbpp+:dev / mbpp+stub:dev" and report.task_ids == ["Mbpp/554", "Mbpp/555"]
    with pytest.raises(ConfigError, match="compare runs on the same benchmark"):
        build_report([prose, run("mbpp+stub:test", "direct-test", [True, True])], resamples=100)
