"""The decontamination bench: its text builders (renaming, paraphrase, Code Alpaca filter), its measurement on a
tiny in-memory benchmark, the choice of defaults, the committed report, and the command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from amr_dspy.decontam import DecontamConfig
from amr_dspy.decontam_bench import (
    NGRAMS,
    OVERLAPS,
    PROMPT_CHARS,
    DecontamBenchReport,
    TextCase,
    bench_report,
    clean_sets,
    markdown_report,
    paraphrase,
    planted_sets,
    python_alpaca,
    rename_identifiers,
)
from amr_dspy.library import HashingEmbedder
from tests.test_decontam import SPLIT_ITEMS

REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "reports" / "bench-decontam" / "report.json"


def test_rename_identifiers_renames_every_local_name_and_keeps_behaviour() -> None:
    code = ("import math\n\n\ndef scaled_norm(values, factor=2):\n    total = 0\n    for value in values:\n"
            "        total += value * value\n    return round(math.sqrt(total) * factor, ndigits=3)\n\n\n"
            "def main():\n    return scaled_norm([3, 4], factor=3)\n")  # fmt: skip
    renamed = rename_identifiers(code)
    assert renamed is not None
    for name in ("scaled_norm", "values", "factor", "total", "value", "main"):
        assert not re.search(rf"\b{name}\b", renamed), name
    assert "math.sqrt" in renamed and "round(" in renamed and "ndigits=3" in renamed  # kept
    original: dict[str, Any] = {}
    copy: dict[str, Any] = {}
    exec(code, original)  # our own literal code
    exec(renamed, copy)
    [main] = [f for name, f in copy.items() if name.startswith("helper_") and f.__code__.co_argcount == 0]
    assert original["main"]() == main() == 15.0
    assert rename_identifiers("def broken(:\n") is None


def test_paraphrase_is_deterministic_rewords_and_drops_code() -> None:
    prompt = ('"""\nWrite a function to find the largest number in the given list. Return None when it is empty.\n'
              'assert largest([1, 5, 2]) == 5\n"""\n')  # fmt: skip
    first = paraphrase(prompt)
    assert first == paraphrase(prompt)
    assert first == ("I need some Python code for the following. Give back None when it is empty. Implement a "
                     "routine to determine the biggest value in the provided sequence.")  # fmt: skip
    assert paraphrase(prompt, skip=frozenset({"return none when it is empty"})) == (
        "I need some Python code for the following. Implement a routine to determine the biggest value in the "
        "provided sequence.")  # fmt: skip
    assert paraphrase('"""\nassert f(1) == 2\n"""\n') is None


def test_python_alpaca_keeps_python_code_for_python_or_unnamed_languages() -> None:
    rows = [
        {"instruction": "Write a Java method that adds two numbers.", "input": "", "output": "x = 1 + 2"},
        {"instruction": "Explain recursion.", "input": "", "output": "Recursion is when a function calls itself."},
        {"instruction": "Name a color.", "input": "", "output": "blue"},  # parses, but holds no statement
        {"instruction": "Sum a list in Python.", "input": "nums = [1, 2]", "output": "total = sum(nums)"},
        {"instruction": "Reverse a string.", "input": "", "output": "def rev(s):\n    return s[::-1]"},
        {"instruction": "Print hello in Python, not in C.", "input": "", "output": "print('hello')"},
    ]
    assert python_alpaca(rows) == [("Sum a list in Python. nums = [1, 2]", "total = sum(nums)"),
                                   ("Reverse a string.", "def rev(s):\n    return s[::-1]"),
                                   ("Print hello in Python, not in C.", "print('hello')")]  # fmt: skip
    assert len(python_alpaca(rows, limit=1)) == 1


def tiny_report(cache: Path) -> DecontamBenchReport:
    dp = "def climb(n):\n    dp = [0] * (n + 1)\n    for i in range(1, n + 1):\n        dp[i] = dp[i - 1] + i\n"
    alpaca = [("Write a function that climbs stairs.", dp + "    return dp[n]\n"),
              ("Repeat a call n times.", "def repeat(n, f):\n    return [f() for _ in range(n)]\n")]  # fmt: skip
    samples = [TextCase(id="s/1", text="Write a function that merges overlapping intervals.")]
    sets = clean_sets(samples, alpaca) + planted_sets(SPLIT_ITEMS)
    return bench_report(SPLIT_ITEMS, sets, embedder=HashingEmbedder(256), cache_dir=cache)


def test_the_bench_measures_every_setting_on_a_tiny_benchmark(tmp_path: Path) -> None:
    report = tiny_report(tmp_path)
    sizes = {s.name: s.size for s in report.sets}
    assert sizes["verbatim-solution"] == 2 and sizes["train-solution"] == 1 and sizes["alpaca-responses"] == 2
    code_rows = [r for r in report.rows if r.check == "code-ngram"]
    assert len(code_rows) == len(NGRAMS) * len(OVERLAPS) * 2
    assert len([r for r in report.rows if r.check == "prompt-substring"]) == len(PROMPT_CHARS)
    row = next(r for r in code_rows if r.params == {"ngram": 15, "min_code_overlap": 0.8, "code_keep_names": True})
    assert row.false_positive_rate == 0.0 and row.train_flag_rate == 0.0
    for name in ("verbatim-solution", "renamed-solution", "embedded-solution"):
        assert row.cells[name].rate == 1.0 and row.cells[name].same_item == 2, name
    assert row.cells["verbatim-solution"].by_benchmark == {"mbpp+": 1.0}
    former = next(r for r in report.rows if r.check == "word-ngram")
    assert former.cells["train-solution"].rate == 1.0  # the former check flagged the seed library's source
    assert former.cells["alpaca-responses"].flagged == 1  # the generic DP loop, a 10-word window of STAIRS
    assert former.cells["alpaca-responses"].examples[0].benchmark_id == "Mbpp/77"
    default = next(r for r in report.rows if r.check == "default")
    assert default.false_positive_rate == 0.0 and default.train_flag_rate == 0.0
    assert {r.check for r in report.rows} == {"code-ngram", "prompt-substring", "word-ngram", "embedding", "default"}


def test_the_choice_is_the_most_sensitive_setting_without_false_positives(tmp_path: Path) -> None:
    report = tiny_report(tmp_path)
    assert set(report.chosen) == {"ngram", "min_code_overlap", "code_keep_names", "min_prompt_chars"}
    code = [r for r in report.rows if r.check == "code-ngram" and r.false_positive_rate == 0 and not r.train_flag_rate]
    best = max(r.recall or 0.0 for r in code)
    chosen = next(r for r in code if all(report.chosen[k] == v for k, v in r.params.items()))
    assert chosen.recall == best
    assert report.chosen["ngram"] == max(r.params["ngram"] for r in code if r.recall == best)  # type: ignore[type-var]
    text = markdown_report(report)
    assert "| check | setting | FP | recall | train flagged |" in text and "## Chosen defaults" in text
    assert "former: word 10-grams" in text and "alpaca-responses, flagged 1 of 2" in text


def test_the_committed_report_chose_the_configured_defaults() -> None:
    report = DecontamBenchReport.model_validate_json(REPORT.read_text(encoding="utf-8"))
    defaults = DecontamConfig()
    assert report.defaults_match and report.chosen
    for key, value in report.chosen.items():
        assert getattr(defaults, key) == value, key
    assert report.defaults.model_dump() == defaults.policy().model_dump()
    default = next(r for r in report.rows if r.check == "default")
    assert default.false_positive_rate == 0.0 and default.cells["train-solution"].flagged == 0  # the seed library's
    assert {"verbatim-solution", "renamed-solution", "paraphrased-prompt", "alpaca-responses"} <= set(default.cells)
    former = next(r for r in report.rows if r.check == "word-ngram")
    assert former.cells["train-solution"].rate > 0.5 and former.false_positive_rate > 0.0  # what this replaced


def test_the_command_is_registered_and_names_missing_data(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "amr_dspy", "bench", "decontam", *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    helped = run("--help")
    assert helped.returncode == 0 and "--out" in helped.stdout and "--no-embedding" in helped.stdout
    missing = run("--alpaca", str(tmp_path / "nope.json"), "--out", str(tmp_path / "out"))
    assert missing.returncode == 1 and "nope.json" in missing.stderr and not (tmp_path / "out").exists()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    bad = run("--alpaca", str(broken), "--out", str(tmp_path / "out"), "--no-embedding")
    assert bad.returncode == 1 and "cannot read Code Alpaca" in bad.stderr
