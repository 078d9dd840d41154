"""``amr-dspy compare`` and ``amr-dspy report``: argument errors, reports from finished runs, a run with a stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

from amr_dspy.errors import AmrDspyError, ConfigError, DataError
from amr_dspy.evaluation import read_samples
from amr_dspy.tasks import Task, load_tasks
from tests.compare_helpers import eval_results, write_all, write_eval_dir
from tests.evalplus_helpers import use_humaneval_fixture
from tests.teacher_helpers import without_teacher


@pytest.fixture
def cli() -> CliRunner:
    import amr_dspy.cli.compare  # noqa: F401  (registers the commands)

    return CliRunner()


def _invoke(cli: CliRunner, *args: str) -> object:
    from amr_dspy.cli import app

    return cli.invoke(app, list(args))


# --------------------------------------------------------------------------------------------
# argument errors


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ([], ConfigError, "give exactly one of --variants"),
        (["--variants", "direct,cot", "--from-evals", "a,b"], ConfigError, "give exactly one of --variants"),
        (["--variants", "direct"], ConfigError, "at least two variants"),
        (["--variants", "direct,gpt4"], ConfigError, "unknown variant 'gpt4'"),
        (["--variants", "direct,cot", "--baseline", "amr"], ConfigError, "--baseline 'amr' is not among --variants"),
        (["--variants", "direct,no/such.json"], ConfigError, "no/such.json does not exist"),
        (["--from-evals", "only-one"], ConfigError, "at least two eval folders"),
        (["--from-evals", "a,b", "--reuse"], ConfigError,
         "--reuse, --library, --no-library, --select-samples and --test-sets"),
        (["--from-evals", "a,b", "--no-library"], ConfigError, "apply to running variants"),
        (["--variants", "direct,amr", "--library", "lib", "--no-library"], ConfigError,
         "--library lib and --no-library: give one of them"),
        (["--from-evals", "a,b", "--select-samples", "2"], ConfigError, "apply to running variants"),
        (["--from-evals", "a,b", "--test-sets", "2"], ConfigError, "apply to running variants"),
        (["--from-evals", "nowhere-a,nowhere-b"], ConfigError, "nowhere-a: no results.json"),
    ],
)
def test_compare_argument_errors(cli: CliRunner, args: list[str], error: type[Exception], match: str) -> None:
    result = _invoke(cli, "compare", *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, error), result.output
    assert match in str(result.exception) and "\n" not in str(result.exception)


@pytest.mark.parametrize(
    "args", [["--resamples", "10"], ["--confidence", "1.5"], ["--limit", "0"], ["--select-samples", "-1"]]
)
def test_compare_option_ranges_are_checked(cli: CliRunner, args: list[str]) -> None:
    result = _invoke(cli, "compare", "--variants", "direct,cot", *args)
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_report_needs_a_saved_comparison(cli: CliRunner, tmp_path: Path) -> None:
    result = _invoke(cli, "report", str(tmp_path))
    assert isinstance(result.exception, DataError)
    assert f"{tmp_path / 'report.json'}: no such file" in str(result.exception)


def test_from_evals_refuses_different_task_sets(cli: CliRunner, tmp_path: Path) -> None:
    fewer = eval_results("cot")
    fewer.tasks = fewer.tasks[:6]
    dirs = [write_eval_dir(tmp_path / "a", "direct"), write_eval_dir(tmp_path / "b", "cot", fewer)]
    result = _invoke(cli, "compare", "--from-evals", ",".join(map(str, dirs)), "--out", str(tmp_path / "cmp"))
    assert isinstance(result.exception, ConfigError)
    assert "not the same set" in str(result.exception)
    assert not (tmp_path / "cmp").exists()


def test_from_evals_with_a_limit_compares_the_first_tasks_of_runs_of_different_lengths(
    cli: CliRunner, tmp_path: Path
) -> None:
    full, fewer = eval_results("direct"), eval_results("cot")
    fewer.tasks = fewer.tasks[:6]
    fewer.wall_s = 60.0  # 10 s per task over the 6 it ran
    dirs = [write_eval_dir(tmp_path / "a", "direct", full), write_eval_dir(tmp_path / "b", "cot", fewer)]
    out = tmp_path / "cmp"
    result = _invoke(cli, "compare", "--from-evals", ",".join(map(str, dirs)), "--limit", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["task_ids"] == [t.task_id for t in full.tasks[:5]]
    direct, cot = report["variants"]
    assert direct["pass_plus"]["estimate"] == pytest.approx(sum(t.plus_passed for t in full.tasks[:5]) / 5)
    assert cot["s_per_task"] == pytest.approx(10.0)  # the run's mean, not its whole wall time over 5 tasks


def test_runs_of_one_variant_are_named_after_their_folders(cli: CliRunner, tmp_path: Path) -> None:
    direct, amr = write_eval_dir(tmp_path, "direct"), write_eval_dir(tmp_path / "a", "amr")
    noguard = write_eval_dir(tmp_path / "b", "amr").rename(tmp_path / "amr-noguard-mbpp+test")
    out = tmp_path / "cmp"
    result = _invoke(cli, "compare", "--from-evals", f"{direct},{amr},{noguard}", "--out", str(out))
    assert result.exit_code == 0, result.output
    labels = [v["label"] for v in json.loads((out / "report.json").read_text())["variants"]]
    assert labels == ["direct", "amr", "amr-noguard"]  # the benchmark suffix goes; "direct" is unique and stays

    twin = write_eval_dir(tmp_path / "c", "amr")  # same variant, same folder name as `amr`
    result = _invoke(cli, "compare", "--from-evals", f"{direct},{amr},{twin}", "--out", str(tmp_path / "x"))
    assert isinstance(result.exception, ConfigError)
    assert "both called 'amr-mbpp+test'" in str(result.exception)


# --------------------------------------------------------------------------------------------
# reports from finished runs


def test_from_evals_writes_the_report_and_report_rerenders_it(cli: CliRunner, tmp_path: Path) -> None:
    dirs = write_all(tmp_path / "evals")
    out = tmp_path / "cmp"
    result = _invoke(
        cli, "compare", "--from-evals", ",".join(map(str, dirs)), "--baseline", "direct", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "pass@1 — mbpp+:test · 8 tasks" in result.output and "amr vs direct: 3 fixed, 0 broken" in result.output
    names = {"report.json", "report.txt", "report.svg", "report.html", "report.md", "pass_at_1.png"}
    assert names <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert [v["label"] for v in report["variants"]] == ["direct", "cot", "amr"]
    assert [v["source"] for v in report["variants"]] == [str(d) for d in dirs]

    text = (out / "report.txt").read_text()
    markdown = (out / "report.md").read_text()
    for name in ("report.svg", "report.txt", "report.md", "pass_at_1.png"):
        (out / name).unlink()
    again = _invoke(cli, "report", str(out / "report.json"))  # the folder or its report.json
    assert again.exit_code == 0, again.output
    assert (out / "report.txt").read_text() == text and (out / "report.md").read_text() == markdown
    assert (out / "report.svg").is_file() and (out / "pass_at_1.png").is_file()
    assert "amr vs direct: 3 fixed, 0 broken" in again.output


# --------------------------------------------------------------------------------------------
# running variants


class _Fixed(dspy.Module):
    """Answers each task from a table (no teacher needed): what a variant would have written."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__()
        self.answers = answers

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        code = self.answers.get(entry_point or "")
        return dspy.Prediction(response=f"```python\n{code}```" if code else "no idea", code=code)


_RIGHT = {
    "digit_sum": "def digit_sum(n):\n    return sum(map(int, str(n)))\n",
    "mean_gap": "def mean_gap(xs):\n    return sum(abs(a - b) for a, b in zip(xs, xs[1:])) / (len(xs) - 1)\n",
}
_ANSWERS = {
    "direct": {"digit_sum": _RIGHT["digit_sum"], "mean_gap": "def mean_gap(xs):\n    return 0.0\n"},
    "cot": {**_RIGHT, "interleave": "def interleave(a, b):\n    return a + b\n"},
}


@pytest.fixture
def fixture_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Task]:
    use_humaneval_fixture(monkeypatch, tmp_path)
    return load_tasks("humaneval+")


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No teacher; each variant answers from its table. Returns the variants built, in order."""
    import amr_dspy.programs

    built: list[str] = []

    def build(variant: str, **kwargs: object) -> dspy.Module:
        built.append(variant)
        return _Fixed(_ANSWERS[variant])

    without_teacher(monkeypatch)
    monkeypatch.setattr(amr_dspy.programs, "build_program", build)
    return built


def test_compare_runs_each_variant_on_the_same_tasks(
    cli: CliRunner, fixture_tasks: list[Task], stand_in: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--variants", "direct,cot", "--benchmark", "humaneval+", "--workers", "1", "--out", str(out)]
    result = _invoke(cli, *args)
    assert result.exit_code == 0, result.output
    assert stand_in == ["direct", "cot"]
    for variant in ("direct", "cot"):  # each run is an ordinary eval folder
        results = json.loads((out / variant / "results.json").read_text())
        assert results["variant"] == variant and results["benchmark"] == "humaneval+"
        assert set(read_samples(out / variant / "samples.jsonl")) == {t.task_id for t in fixture_tasks}
        assert (out / variant / "predictions.jsonl").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["baseline"] == "direct"
    plus = {v["label"]: [o["plus"] for o in v["outcomes"]] for v in report["variants"]}
    assert plus == {"direct": [True, False, False], "cot": [True, True, False]}
    (cot,) = report["changes"]
    assert [c["task_id"] for c in cot["fixed"]] == ["FixtureEval/1"] and cot["broken"] == []
    assert cot["fixed"][0]["diff"][2:4] == ["-    return 0.0", "+" + _RIGHT["mean_gap"].splitlines()[1]]
    assert report["variants"][0]["failures"] == {"no_code": 1, "wrong_answer": 1, "error": 0, "timeout": 0}

    again = _invoke(cli, *args, "--reuse", "--baseline", "cot")
    assert again.exit_code == 0, again.output
    assert stand_in == ["direct", "cot"]  # nothing ran again
    assert "reusing direct" in again.output and "reusing cot" in again.output
    assert json.loads((out / "report.json").read_text())["baseline"] == "cot"


def test_compare_stops_when_a_variant_fails_everywhere(
    cli: CliRunner, fixture_tasks: list[Task], stand_in: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amr_dspy.programs

    class Down(dspy.Module):
        def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
            raise ConnectionError("connection refused")

    monkeypatch.setattr(amr_dspy.programs, "build_program", lambda variant, **kw: Down())
    out = tmp_path / "cmp"
    args = ["compare", "--variants", "direct,cot", "-b", "humaneval+", "--workers", "1", "--out", str(out)]
    result = _invoke(cli, *args)
    assert isinstance(result.exception, AmrDspyError)
    assert str(result.exception).startswith("variant direct: the program failed on all 3 tasks")
    assert (out / "direct" / "results.json").is_file() and not (out / "cot").exists()


def test_an_interrupted_variant_resumes_from_its_checkpoint(
    cli: CliRunner, fixture_tasks: list[Task], stand_in: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amr_dspy.programs

    asked: list[str] = []
    armed = [True]

    class Interrupted(_Fixed):
        def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
            if entry_point == "mean_gap" and armed:
                armed.clear()
                raise KeyboardInterrupt  # Ctrl-C (or the end of a session) in the middle of the run
            asked.append(str(entry_point))
            return super().forward(instruction, entry_point)

    monkeypatch.setattr(amr_dspy.programs, "build_program", lambda variant, **kw: Interrupted(_ANSWERS[variant]))
    out = tmp_path / "cmp"
    args = ["compare", "--variants", "direct,cot", "-b", "humaneval+", "--workers", "1", "--threads", "1",
            "--out", str(out)]  # fmt: skip
    first = _invoke(cli, *args)
    assert first.exit_code != 0 and not (out / "direct" / "results.json").exists()
    progress = (out / "direct" / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["result"]["task_id"] for line in progress] == ["FixtureEval/0"]
    asked.clear()

    second = _invoke(cli, *args)
    assert second.exit_code == 0, second.output
    assert "resuming: 1 tasks finished earlier" in second.output
    # direct's finished task is not asked again; cot runs all three
    assert asked == ["mean_gap", "interleave", "digit_sum", "mean_gap", "interleave"]
    assert not (out / "direct" / "progress.jsonl").exists()  # results.json is written; the checkpoint is done
    assert (out / "direct" / "finished.jsonl").is_file()  # kept, so that a larger --limit runs only the new tasks
    results = json.loads((out / "direct" / "results.json").read_text())
    assert [t["task_id"] for t in results["tasks"]] == [t.task_id for t in fixture_tasks]

    assert _invoke(cli, *args, "--fresh").exit_code == 0


def test_select_samples_reaches_every_variant_and_a_run_with_other_samples_is_not_reused(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amr_dspy.programs

    without_teacher(monkeypatch)

    real_build = amr_dspy.programs.build_program
    asked: list[tuple[str, object]] = []

    def build(variant: str, **kwargs: object) -> dspy.Module:
        asked.append((variant, kwargs.get("samples")))
        stand_in = _Fixed(_ANSWERS["direct"])
        stand_in.config = real_build(variant, **kwargs).config  # what the run's settings are recorded from
        return stand_in

    monkeypatch.setattr(amr_dspy.programs, "build_program", build)
    out = tmp_path / "cmp"
    args = ["compare", "--variants", "direct-select,amr-select", "-b", "humaneval+", "--workers", "1",
            "--no-library", "--out", str(out)]  # fmt: skip
    result = _invoke(cli, *args, "--select-samples", "2")
    assert result.exit_code == 0, result.output
    assert asked == [("direct-select", 2), ("amr-select", 2)]
    for variant in ("direct-select", "amr-select"):
        assert json.loads((out / variant / "results.json").read_text())["program_config"]["samples"] == 2

    asked.clear()
    again = _invoke(cli, *args, "--select-samples", "2", "--reuse")
    assert again.exit_code == 0 and "reusing direct-select" in again.output and "reusing amr-select" in again.output
    other = _invoke(cli, *args, "--select-samples", "3", "--reuse")
    assert other.exit_code == 0, other.output
    assert "reusing" not in other.output
    assert json.loads((out / "amr-select" / "results.json").read_text())["program_config"]["samples"] == 3
