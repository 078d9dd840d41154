"""The teacher bench: its agreement check and report on hand-made runs, and one short real measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amr_dspy.server import ServerSettings
from amr_dspy.teacher_bench import (
    CommandRun,
    RateRow,
    TeacherBenchReport,
    agreement,
    markdown_report,
    measure_rates,
)

OLD = ServerSettings(kind="llama-cpp-python")
NEW = ServerSettings(kind="llama-server", slots=8, threads=2)


def _eval_run(tmp_path: Path, name: str, settings: ServerSettings, answers: dict[str, tuple[str, bool]],
              wall_s: float) -> CommandRun:  # fmt: skip
    out = tmp_path / name
    out.mkdir()
    with (out / "predictions.jsonl").open("w") as handle:
        for task_id, (response, _) in answers.items():
            handle.write(json.dumps({"task_id": task_id, "response": response}) + "\n")
    tasks = [{"task_id": t, "plus_passed": passed} for t, (_, passed) in answers.items()]
    (out / "results.json").write_text(json.dumps({"tasks": tasks}))
    passed = sum(p for _, p in answers.values()) / len(answers)
    return CommandRun(name="eval direct", server=settings.describe(), settings=settings,
                      argv=["amr-dspy", "eval", "--variant", "direct"], wall_s=wall_s, returncode=0, out=str(out),
                      pass_at_1=passed)  # fmt: skip


def test_agreement_counts_differing_answers_and_changed_outcomes(tmp_path: Path) -> None:
    a = _eval_run(tmp_path, "a", OLD, {"t1": ("x", True), "t2": ("y", False), "t3": ("z", True)}, 100.0)
    b = _eval_run(tmp_path, "b", NEW, {"t1": ("x", True), "t2": ("y2", True), "t3": ("z2", True)}, 40.0)
    result = agreement("eval direct mbpp+:dev", a, b)
    assert result is not None
    assert (result.tasks, result.differing_answers, result.outcome_changes) == (3, 2, 1)
    assert (round(result.pass_a, 3), result.pass_b) == (0.667, 1.0)


def test_the_report_shows_rates_speedups_and_agreement(tmp_path: Path) -> None:
    a = _eval_run(tmp_path, "a", OLD, {"t1": ("x", True), "t2": ("y", False)}, 100.0)
    b = _eval_run(tmp_path, "b", NEW, {"t1": ("x", True), "t2": ("y", False)}, 40.0)
    report = TeacherBenchReport(model="m", cores=2, max_tokens=128, commands=[a, b],
                                rates=[RateRow(server=NEW.describe(), settings=NEW, concurrency=4, requests=8,
                                               wall_s=10.0, prompt_tokens=400, completion_tokens=1000)])  # fmt: skip
    report.agreements.append(agreement("eval direct mbpp+:dev", a, b))  # type: ignore[arg-type]
    report.notes.append("the cores were shared")
    text = markdown_report(report)
    assert text.endswith("- the cores were shared\n")
    served = "llama-server (8 slots, 2 threads, batch 2048/512, ngram-simple drafts)"
    assert f"| {served} | 4 | 8 | 10.0 | 100.0 | 40.0 |" in text
    assert f"| `eval --variant direct` | {served} | 40 | 2.50× | 50.0% |" in text
    assert "| `eval --variant direct` | llama_cpp.server (one request at a time) | 100 | 1.00× | 50.0% |" in text
    assert "0 of 2 greedy answers differ" in text


@pytest.mark.teacher
def test_rates_are_measured_on_both_servers() -> None:
    from amr_dspy.server_build import find_server_binary

    for settings in (OLD, ServerSettings(kind="llama-server", slots=2)):
        rows = measure_rates("0.5b", settings, [1, 2], max_tokens=16, binary=find_server_binary(), say=lambda _: None)
        assert [r.concurrency for r in rows] == [1, 2] and [r.requests for r in rows] == [2, 4]
        assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 and r.wall_s > 0 for r in rows)


def test_a_sweep_names_llama_server_settings_and_refuses_unknown_keys() -> None:
    from amr_dspy.cli.bench import _sweep_settings
    from amr_dspy.errors import ConfigError

    settings = _sweep_settings("slots=4, ubatch=256, spec=none")
    assert (settings.slots, settings.ubatch_size, settings.speculative) == (4, 256, "none")  # type: ignore[attr-defined]
    for bad in ("slots=four", "spec=eagle", "draft=1"):
        with pytest.raises(ConfigError, match="--sweep"):
            _sweep_settings(bad)


def test_a_synthesis_run_reads_its_verified_fraction_from_the_summary(tmp_path: Path) -> None:
    from amr_dspy.teacher_bench import _read_outcome

    (tmp_path / "summary.json").write_text(json.dumps({"records": 15, "verification": {"passed": 3, "failed": 12},
                                                       "wall_s": 100.0}))  # fmt: skip
    run = CommandRun(name="synthesize sample", server=NEW.describe(), settings=NEW, argv=["amr-dspy", "synthesize"],
                     wall_s=100.0, returncode=0, out=str(tmp_path))  # fmt: skip
    _read_outcome(run, tmp_path)
    assert run.pass_at_1 == 0.2
