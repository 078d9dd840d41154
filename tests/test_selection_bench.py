"""Replaying a -select run's choices for fewer samples (amr_dspy.selection_bench): hand-computed pools, and the
curve of a recorded run checked on real MBPP+ hidden tests in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amr_dspy.agreement import CandidateRun, Selection
from amr_dspy.errors import ConfigError
from amr_dspy.selection_bench import curve_markdown, replay, selection_curve
from amr_dspy.tasks import load_tasks
from tests.evalplus_helpers import use_mbpp_subset

RIGHT = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n"
WRONG = "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n"
GOT = "got aaaaaaaaaaaa (1, 2, 3)"


def run(name: str, tests: list[str], code: str = WRONG) -> CandidateRun:
    kind = "direct" if name == "direct" else "evolved" if name == "evolved" else "sample"
    return CandidateRun(name=name, kind=kind, code=code, tests=tests, tests_passed=tests.count("pass"))


def selection(*runs: CandidateRun) -> Selection:
    return Selection(chosen=runs[0].name, kind=runs[0].kind, reason="", candidates=list(runs))


# direct fails the teacher's second test; samples 2 and 3 agree and pass both; sample 1 agrees with direct
HARD = selection(run("direct", ["pass", GOT]), run("sample_1", ["pass", GOT]), run("evolved", ["pass", GOT]),
                 run("sample_2", ["pass", "pass"], RIGHT), run("sample_3", ["pass", "pass"], RIGHT))  # fmt: skip
EASY = selection(run("direct", ["pass", "pass"], RIGHT), run("sample_1", ["pass", "pass"], RIGHT),
                 run("sample_2", ["pass", "pass"], RIGHT))  # fmt: skip


@pytest.mark.parametrize(
    ("samples", "chosen", "pool"),
    [
        (0, "direct", ["direct", "evolved"]),  # group {direct, evolved}: 2 members x 1 test = 2
        (1, "direct", ["direct", "sample_1", "evolved"]),  # {direct, sample_1, evolved}: 3 x 1 = 3
        # N = 2: 3 x 1 = 3 against {sample_2}: 1 x 2 = 2; N = 3: 3 against {sample_2, sample_3}: 2 x 2 = 4
        (2, "direct", ["direct", "sample_1", "sample_2", "evolved"]),  # the first samples open the pool
        (3, "sample_2", ["direct", "sample_1", "sample_2", "evolved", "sample_3"]),
    ],
)
def test_fewer_samples_replay_the_choice_by_hand(samples: int, chosen: str, pool: list[str]) -> None:
    winner, exited, candidates = replay(HARD, samples, early_exit_after=2)
    assert (winner.name, exited, [c.name for c in candidates]) == (chosen, False, pool)


@pytest.mark.parametrize(("samples", "early_exit_after", "pool"),
                         [(0, 2, ["direct"]), (1, 2, ["direct", "sample_1"]),
                          (2, 2, ["direct", "sample_1", "sample_2"]), (2, 0, ["direct"])])  # fmt: skip
def test_the_early_exit_stops_after_the_agreeing_samples_it_needs(samples: int, early_exit_after: int,
                                                                  pool: list[str]) -> None:  # fmt: skip
    winner, exited, candidates = replay(EASY, samples, early_exit_after)
    assert (winner.name, exited, [c.name for c in candidates]) == ("direct", True, pool)


def test_a_direct_answer_no_sample_could_overturn_is_replayed_as_an_early_exit() -> None:
    settled = selection(CandidateRun(name="direct", kind="direct", code=RIGHT, examples=["pass"], examples_passed=1),
                        CandidateRun(name="sample_1", kind="sample", code=WRONG, examples=["pass"], examples_passed=1))
    assert [(w.name, exited, [c.name for c in pool]) for w, exited, pool in [replay(settled, 1, 2)]] == [
        ("direct", True, ["direct"])]  # fmt: skip


def write_run(directory: Path, selections: dict[str, Selection]) -> Path:
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps({"variant": "direct-select"}))
    lines = [json.dumps({"task_id": tid, "selection": s.model_dump(mode="json")}) for tid, s in selections.items()]
    (directory / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def test_the_curve_of_a_recorded_run_on_hidden_tests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_mbpp_subset(monkeypatch, tmp_path, [2])
    tasks = load_tasks("mbpp+")
    curve = selection_curve(write_run(tmp_path / "run", {"Mbpp/2": HARD}), tasks, benchmark="mbpp+",
                            early_exit_after=[2])  # fmt: skip
    assert curve.max_samples == 3 and curve.direct_passed == 0
    by_n = {p.samples: p for p in curve.points}
    assert [by_n[n].passed for n in range(4)] == [0, 0, 0, 1]
    assert [by_n[n].oracle for n in range(4)] == [0, 0, 1, 1]  # sample_2 passes the hidden tests from N = 2
    assert by_n[3].fixed == 1 and by_n[3].broken == 0 and by_n[3].answers_per_task == 4.0
    assert "| 3 | 2 | 1 (100.0%) | +100.0" in curve_markdown([curve])


def test_a_run_without_selection_records_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "direct"
    directory.mkdir()
    (directory / "results.json").write_text("{}")
    (directory / "predictions.jsonl").write_text(json.dumps({"task_id": "Mbpp/2", "selection": None}) + "\n")
    with pytest.raises(ConfigError, match=r"predictions.jsonl:1: task Mbpp/2 has no selection record"):
        selection_curve(directory, [], benchmark="mbpp+")


def test_bench_selection_writes_the_curve_and_names_the_best_n(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:  # fmt: skip
    from typer.testing import CliRunner

    from amr_dspy.cli._app import app

    use_mbpp_subset(monkeypatch, tmp_path, [2])
    folder = write_run(tmp_path / "run", {"Mbpp/2": HARD})
    out = tmp_path / "report" / "curve.md"
    result = CliRunner().invoke(app, ["bench", "selection", str(folder), "-b", "mbpp+", "--out", str(out),
                                      "--early-exit", "0,2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "direct 0/1, best 1 at N=3 (early exit after 0)" in result.output
    curves = json.loads(out.with_suffix(".json").read_text())
    assert [p["early_exit_after"] for p in curves[0]["points"]] == [0] * 4 + [2] * 4
    assert "| 3 | 2 | 1 (100.0%)" in out.read_text()


def test_bench_selection_refuses_a_negative_early_exit(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from amr_dspy.cli._app import app

    folder = write_run(tmp_path / "run", {"Mbpp/2": HARD})
    result = CliRunner().invoke(app, ["bench", "selection", str(folder), "-b", "mbpp+", "--early-exit", "-1"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--early-exit '-1': expected integers >= 0"
