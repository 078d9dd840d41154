"""Building a comparison from saved eval folders, and rendering it (golden text, as rich's own tests do)."""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import dspy
import pytest
from rich.console import Console

from amr_dspy.compare import (
    DIFF_LINES,
    EvalRun,
    build_report,
    load_eval_dir,
    parse_variant_entries,
    short_diff,
)
from amr_dspy.errors import ConfigError, DataError
from amr_dspy.report import ComparisonReport, export_report, load_report, markdown_summary, render_report
from amr_dspy.run import load_program
from amr_dspy.stats import bootstrap_ci
from tests.compare_helpers import LONG_FIX, TASK_IDS, eval_results, write_all, write_eval_dir

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("AMR_DSPY_UPDATE_GOLDEN") == "1"  # regenerate the golden files instead of comparing


@pytest.fixture
def runs(tmp_path: Path) -> list[EvalRun]:
    return [load_eval_dir(d) for d in write_all(tmp_path)]


@pytest.fixture
def report(runs: list[EvalRun]) -> ComparisonReport:
    return build_report(runs, baseline="direct")


def _rendered(report: ComparisonReport, width: int, *, task_rows: int = 5, change_tasks: int = 2) -> str:
    console = Console(file=StringIO(), width=width, record=True, color_system="truecolor")
    render_report(report, console, task_rows=task_rows, change_tasks=change_tasks)
    return console.export_text()


def _golden(name: str, text: str) -> str:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# building the report


def test_numbers_match_the_hand_count(report: ComparisonReport) -> None:
    by_label = {v.label: v for v in report.variants}
    assert [v.label for v in report.variants] == ["direct", "cot", "amr"]
    assert report.task_ids == TASK_IDS and report.benchmark == "mbpp+:test"
    assert [by_label[x].pass_plus.estimate for x in ("direct", "cot", "amr")] == [3 / 8, 4 / 8, 6 / 8]
    assert [by_label[x].pass_base.estimate for x in ("direct", "cot", "amr")] == [4 / 8, 4 / 8, 7 / 8]
    assert by_label["amr"].pass_plus == bootstrap_ci([1, 1, 1, 1, 1, 0, 1, 0])
    assert by_label["direct"].vs_baseline_plus is None
    cot, amr = by_label["cot"].vs_baseline_plus, by_label["amr"].vs_baseline_plus
    assert cot is not None and amr is not None
    assert (cot.wins, cot.losses, cot.p_value) == (2, 1, 1.0)  # 2 * (1 + 3) / 8, capped
    assert (amr.wins, amr.losses, amr.p_value) == (3, 0, 0.25)  # 2 * 1/8
    assert amr.diff.estimate == pytest.approx(3 / 8)
    assert report.head_to_head == [[0, 1, 0], [2, 0, 0], [3, 2, 0]]
    assert [(v.tokens_per_task, v.lm_calls_per_task, v.uncached_lm_calls_per_task, v.s_per_task)
            for v in report.variants] == [(120, 1, 1, 1.5), (230, 1, 1, 2.5), (800, 4, 3, 6.5)]  # fmt: skip


def test_failures_fold_into_the_four_categories(report: ComparisonReport) -> None:
    by_label = {v.label: v for v in report.variants}
    assert by_label["direct"].failures == {"no_code": 1, "wrong_answer": 2, "error": 1, "timeout": 1}
    assert by_label["cot"].failures == {"no_code": 0, "wrong_answer": 3, "error": 1, "timeout": 0}
    assert by_label["cot"].raw_failures == {"memory": 1, "wrong_answer": 3}
    assert by_label["amr"].failures == {"no_code": 0, "wrong_answer": 1, "error": 1, "timeout": 0}


def test_fixed_and_broken_tasks_carry_a_short_diff(report: ComparisonReport) -> None:
    changes = {c.label: c for c in report.changes}
    assert set(changes) == {"cot", "amr"}
    assert [c.task_id for c in changes["cot"].fixed] == ["Mbpp/12", "Mbpp/14"]
    assert [c.task_id for c in changes["cot"].broken] == ["Mbpp/17"]
    assert [c.task_id for c in changes["amr"].fixed] == ["Mbpp/12", "Mbpp/13", "Mbpp/14"]
    assert changes["amr"].broken == []
    long = changes["amr"].fixed[0]  # direct's two lines against LONG_FIX's fourteen
    assert (long.baseline_failure, long.variant_failure) == ("wrong_answer", None)
    assert len(long.diff) == DIFF_LINES and long.diff_lines == 1 + 1 + 1 + 13
    assert long.diff[:3] == ["@@ -1,2 +1,14 @@", " def f(x):", "-    return x"]
    from_nothing = changes["cot"].fixed[1]  # direct wrote no code for Mbpp/14
    assert from_nothing.diff == ["@@ -0,0 +1,2 @@", "+def f(x):", "+    return x + 1"]


def test_short_diff_of_identical_code_is_empty() -> None:
    assert short_diff("x = 1\n", "x = 1\n", fromfile="a", tofile="b") == ([], 0)
    diff, total = short_diff("def f(x):\n    return x\n", LONG_FIX, fromfile="a", tofile="b")
    assert len(diff) == DIFF_LINES < total


def test_baseline_defaults_to_the_first_run_and_must_exist(runs: list[EvalRun]) -> None:
    assert build_report(runs[::-1]).baseline == "amr"
    with pytest.raises(ConfigError, match=r"--baseline 'gpt' is not among the compared variants: direct, cot, amr"):
        build_report(runs, baseline="gpt")


def test_runs_on_other_tasks_or_benchmarks_are_refused(tmp_path: Path) -> None:
    direct = load_eval_dir(write_eval_dir(tmp_path / "a", "direct"))
    fewer = eval_results("cot")
    fewer.tasks = fewer.tasks[:5]
    other = load_eval_dir(write_eval_dir(tmp_path / "b", "cot", fewer))
    with pytest.raises(ConfigError, match=r"5 tasks, .*: 8 tasks, not the same set \(Mbpp/16 missing\)") as info:
        build_report([direct, other])
    assert "\n" not in str(info.value)
    elsewhere = eval_results("cot")
    elsewhere.benchmark = "mbpp+:dev"
    with pytest.raises(ConfigError, match=r"benchmark mbpp\+:dev, but .* is mbpp\+:test"):
        build_report([direct, load_eval_dir(write_eval_dir(tmp_path / "c", "cot", elsewhere))])


def test_same_variant_twice_is_told_apart_by_folder(tmp_path: Path) -> None:
    first = load_eval_dir(write_eval_dir(tmp_path / "a", "direct"))
    again = write_eval_dir(tmp_path / "b", "direct").rename(tmp_path / "b" / "direct-rerun")
    report = build_report([first, load_eval_dir(again)])
    assert [v.label for v in report.variants] == ["direct", "direct-rerun"]  # the benchmark suffix goes
    assert report.changes[0].fixed == report.changes[0].broken == []


def test_eval_folder_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path}: no results.json"):
        load_eval_dir(tmp_path)
    (tmp_path / "results.json").write_text('{"benchmark": "mbpp+"}')
    with pytest.raises(DataError, match=r"results.json: not eval results \(n_tasks: Field required\)"):
        load_eval_dir(tmp_path)
    directory = write_eval_dir(tmp_path, "direct")
    (directory / "predictions.jsonl").write_text('{"task_id": "Mbpp/11"}\nnot json\n')
    with pytest.raises(DataError, match=r"predictions.jsonl:2: invalid JSON"):
        load_eval_dir(directory)


# --------------------------------------------------------------------------------------------
# rendering


def test_report_renders_as_the_golden_text(report: ComparisonReport) -> None:
    text = _rendered(report, 100)
    assert text == _golden("compare_report_100.txt", text)


def test_narrow_console_splits_the_summary_instead_of_truncating(report: ComparisonReport) -> None:
    text = _rendered(report, 72)
    assert text == _golden("compare_report_72.txt", text)
    assert "cost and failures per variant" in text and "…" not in text.split("wins (base+plus)")[0]


def test_saved_report_renders_the_same(report: ComparisonReport, tmp_path: Path) -> None:
    files = export_report(report, tmp_path / "cmp")
    reloaded = load_report(tmp_path / "cmp")
    assert reloaded == report
    assert _rendered(reloaded, 100) == _rendered(report, 100)
    assert files.text.read_text(encoding="utf-8") == _rendered(report, 120, task_rows=40, change_tasks=10)
    data = json.loads(files.json_path.read_text())
    assert data["baseline"] == "direct" and data["variants"][2]["pass_plus"]["estimate"] == 0.75


def test_exports_are_svg_html_and_png(report: ComparisonReport, tmp_path: Path) -> None:
    files = export_report(report, tmp_path)
    svg = files.svg.read_text(encoding="utf-8").replace("&#160;", " ")  # rich writes spaces as nbsp
    assert svg.startswith("<svg") and "amr-dspy compare — mbpp+:test" in svg and "Mbpp/12" in svg
    html = files.html.read_text(encoding="utf-8")
    assert "<html" in html and "stand-in-teacher" in html
    png = files.png.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (636, 480)  # (1.1 inches per variant + 2) x 4 inches at 120 dpi


def test_markdown_summary_is_the_golden_table(report: ComparisonReport, tmp_path: Path) -> None:
    text = markdown_summary(report)
    assert text == _golden("compare_summary.md", text)
    assert export_report(report, tmp_path).markdown.read_text(encoding="utf-8") == text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(report.variants) and all(r.count(" | ") == 7 for r in rows)


def test_load_report_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'report.json'}: no such file"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text('{"benchmark": 3}')
    with pytest.raises(DataError, match=r"report.json: not a comparison report \(benchmark: "):
        load_report(tmp_path)


# --------------------------------------------------------------------------------------------
# variant lists and compiled programs


def test_variant_list_parses_names_and_artifacts(tmp_path: Path) -> None:
    program = dspy.Predict("instruction -> response")
    artifact = tmp_path / "amr-mipro.json"
    program.save(str(artifact))
    (tmp_path / "amr-mipro.manifest.json").write_text(json.dumps({"variant": "amr-paper"}))
    entries = parse_variant_entries(f"direct, cot,{artifact}")
    assert [(e.label, e.variant, e.artifact) for e in entries] == [
        ("direct", "direct", None),
        ("cot", "cot", None),
        ("amr-mipro", "amr-paper", artifact),
    ]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("direct", "at least two variants"),
        ("direct,,cot", "empty entry"),
        ("direct,gpt4", "unknown variant 'gpt4'; known: direct, cot"),
        ("direct,cot,direct", "'direct' appears twice"),
        ("direct,missing/prog.json", "program artifact missing/prog.json does not exist"),
    ],
)
def test_bad_variant_lists_are_refused(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_variant_entries(spec)


def test_artifact_needs_a_manifest_naming_a_known_variant(tmp_path: Path) -> None:
    artifact = tmp_path / "prog.json"
    artifact.write_text("{}")
    with pytest.raises(ConfigError, match=r"has no manifest prog.manifest.json"):
        parse_variant_entries(f"direct,{artifact}")
    (tmp_path / "prog.manifest.json").write_text('{"variant": "gpt4"}')
    with pytest.raises(ConfigError, match=r"unknown variant 'gpt4' \(from .*prog.manifest.json\)"):
        parse_variant_entries(f"direct,{artifact}")
    (tmp_path / "prog.manifest.json").write_text("[1]")
    with pytest.raises(DataError, match=r"prog.manifest.json: expected an object with a string 'variant'"):
        parse_variant_entries(f"direct,{artifact}")


def test_program_entry_loads_the_compiled_artifact(tmp_path: Path) -> None:
    from amr_dspy.programs import DirectProgram, build_program
    from tests.test_artifact import make_artifact

    compiled = build_program("direct")
    compiled.respond.demos = [dspy.Example(instruction="add 1 and 2", response="3", augmented=True)]
    artifact = make_artifact(tmp_path / "direct-fewshot.json", "direct", compiled)
    (entry,) = [e for e in parse_variant_entries(f"cot,{artifact}") if e.artifact]
    module = load_program(entry.variant, entry.artifact).module
    assert isinstance(module, DirectProgram)
    assert [d["response"] for d in module.respond.demos] == ["3"]


def test_tasks_a_run_did_not_score_are_left_out_of_every_runs_pass_at_1(tmp_path: Path) -> None:
    direct, cot = eval_results("direct"), eval_results("cot")
    excluded, skipped = TASK_IDS[0], TASK_IDS[1]
    for results in (direct, cot):
        results.tasks[0] = results.tasks[0].model_copy(update={"excluded": "needs the network", "plus_passed": False})
    cot.tasks[1] = cot.tasks[1].model_copy(update={"missing_modules": ["faker"], "plus_passed": False})
    runs = [load_eval_dir(write_eval_dir(tmp_path / "a", "direct", direct)),
            load_eval_dir(write_eval_dir(tmp_path / "b", "cot", cot))]  # fmt: skip
    report = build_report(runs, baseline="direct")
    assert report.task_ids == [t for t in TASK_IDS if t not in (excluded, skipped)]
    scored = [t for t in direct.tasks if t.task_id in report.task_ids]
    assert report.variants[0].pass_plus.estimate == pytest.approx(sum(t.plus_passed for t in scored) / len(scored))
