"""Pass@1 by instruction complexity: the measures, the tertile cut, hand-counted strata, the report's table."""

from __future__ import annotations

import os
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from amr_dspy.compare import build_report, load_eval_dir
from amr_dspy.complexity import ComplexitySplit, complexity_splits, imported_libraries, word_count
from amr_dspy.report import ComparisonReport, complexity_table, load_report, markdown_summary, save_report
from tests.compare_helpers import TASK_IDS, write_all

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("AMR_DSPY_UPDATE_GOLDEN") == "1"

BCB_STYLE = (
    "Plot a histogram of a column.\nThe function should output with:\n    Axes: the plot.\n"
    "You should write self-contained code starting with:\n```\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
    "from random import randint\nimport os, sys as system\ndef task_func(df):\n```"
)


def test_imported_libraries_are_the_top_level_modules_of_import_statements() -> None:
    assert imported_libraries(BCB_STYLE) == {"pandas", "matplotlib", "random", "os", "sys"}
    assert imported_libraries("    from collections.abc import Mapping\n>>> import numpy.linalg") == {
        "collections",
        "numpy",
    }


@pytest.mark.parametrize(
    "prose",
    [
        "Write a function to import the rows from a file.",
        "import the data, then sort it",
        "Read the values from the list import order.",
        "def f(x):\n    return x  # no import at all",
    ],
)
def test_prose_mentioning_import_names_no_library(prose: str) -> None:
    assert imported_libraries(prose) == set()


def test_word_count_splits_on_whitespace() -> None:
    assert word_count("Write a  function\nto add.") == 5


def _split(instructions: dict[str, str], outcomes: dict[str, dict[str, bool]]) -> list[ComplexitySplit]:
    return complexity_splits(instructions, list(outcomes.items()), baseline="direct", resamples=200)


def test_tertiles_of_word_counts_with_hand_counted_strata() -> None:
    # nine tasks of 1..9 words: cuts at the 3rd and 6th value, three strata of three tasks
    instructions = {f"t{n}": " ".join(["w"] * n) for n in range(1, 10)}
    direct = {f"t{n}": n in (1, 2, 3, 4) for n in range(1, 10)}
    amr = {f"t{n}": n in (1, 2, 5, 6, 8, 9) for n in range(1, 10)}
    (words,) = _split(instructions, {"direct": direct, "amr": amr})  # no imports: the libraries measure is left out
    assert words.measure == "words"
    assert [(s.name, s.n) for s in words.strata] == [("1–3 words", 3), ("4–6 words", 3), ("7–9 words", 3)]
    assert [[c.passed for c in s.cells] for s in words.strata] == [[3, 2], [1, 2], [0, 2]]
    gains = [s.cells[1].vs_baseline for s in words.strata]
    assert [(g.wins, g.losses) for g in gains] == [(0, 1), (2, 1), (2, 0)]
    assert [round(g.diff.estimate, 4) for g in gains] == [-0.3333, 0.3333, 0.6667]
    assert all(s.cells[0].vs_baseline is None for s in words.strata)


def test_tied_values_stay_together_and_one_valued_measures_are_left_out() -> None:
    # library counts 2, 2, 2, 2, 3, 4: the first two cuts both fall on 2, so only two strata remain
    counts = [2, 2, 2, 2, 3, 4]
    names = ["pandas", "numpy", "os", "re"]
    instructions = {f"t{i}": "\n".join(f"import {m}" for m in names[:c]) for i, c in enumerate(counts)}
    passed = {t: True for t in instructions}
    splits = {s.measure: s for s in _split(instructions, {"direct": passed, "amr": passed})}
    assert [(s.name, s.n) for s in splits["libraries"].strata] == [("2 libraries", 4), ("3–4 libraries", 2)]
    assert "words" in splits  # 2, 2, 2, 2, 3, 4 words as well


def test_an_unknown_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match="baseline 'cot'"):
        complexity_splits({"t": "x"}, [("direct", {"t": True})], baseline="cot")


@pytest.fixture
def report(tmp_path: Path) -> ComparisonReport:
    runs = [load_eval_dir(d) for d in write_all(tmp_path)]
    instructions = {t: " ".join(["word"] * (3 + i)) for i, t in enumerate(TASK_IDS)}  # 3..10 words
    return build_report(runs, baseline="direct", resamples=200, instructions=instructions)


def test_the_report_carries_the_split_and_survives_saving(report: ComparisonReport, tmp_path: Path) -> None:
    (words,) = report.complexity
    assert [s.n for s in words.strata] == [3, 3, 2]
    # direct passes tasks 1, 5, 7 (of 8), amr 1-5 and 7: see compare_helpers
    assert [[c.passed for c in s.cells] for s in words.strata] == [[1, 2, 3], [1, 2, 2], [1, 0, 1]]
    save_report(report, tmp_path / "r" / "report.json")
    assert load_report(tmp_path / "r").complexity == report.complexity


def test_without_instructions_for_every_task_there_is_no_split(tmp_path: Path) -> None:
    runs = [load_eval_dir(d) for d in write_all(tmp_path)]
    assert build_report(runs, resamples=200).complexity == []
    partial = {TASK_IDS[0]: "one task only"}
    assert build_report(runs, resamples=200, instructions=partial).complexity == []
    assert complexity_table(build_report(runs, resamples=200)) is None


def test_complexity_table_golden(report: ComparisonReport) -> None:
    console = Console(file=StringIO(), width=80, record=True, color_system="truecolor")
    table = complexity_table(report)
    assert table is not None
    console.print(table)
    text = console.export_text()
    path = GOLDEN / "complexity_table.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_markdown_lists_the_strata(report: ComparisonReport) -> None:
    markdown = markdown_summary(report)
    assert "| stratum | tasks | direct | cot | amr |" in markdown
    row = "| 3–5 words | 3 | 33.3% | 66.7% +33.3 (p 1.00; 1 fixed, 0 broken) | 100.0% +66.7 (p 0.50; 2 fixed, 0 broken)"
    assert row in markdown
