from __future__ import annotations

import _thread
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dspy
import pytest
from rich.console import Console
from typer.testing import CliRunner

import amr_dspy.run
from amr_dspy.agreement import CandidateRun, Selection
from amr_dspy.errors import ConfigError, DataError
from amr_dspy.evaluation import (
    EvalResults,
    TaskResult,
    check_solutions,
    evaluate_program,
    evaluate_samples,
    read_samples,
    results_table,
    summary_table,
    write_samples,
)
from amr_dspy.extract import extract_code
from amr_dspy.programs import ModuleCheck
from amr_dspy.resume import EvalCheckpoint
from amr_dspy.sandbox import Sandbox
from amr_dspy.tasks import Task, load_tasks
from tests.evalplus_helpers import use_humaneval_fixture, use_mbpp_subset
from tests.teacher_helpers import without_teacher

REMOVE_OCC_PLUS_WRONG = (  # right whenever ch occurs at least twice, as in every base input
    "def remove_Occ(s, ch):\n"
    "    if s.count(ch) < 2:\n"
    "        return s\n"
    "    s = s.replace(ch, '', 1)\n"
    "    return s[::-1].replace(ch, '', 1)[::-1]\n"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2) as box:
        yield box


@pytest.fixture
def fixture_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Task]:
    use_humaneval_fixture(monkeypatch, tmp_path)
    return load_tasks("humaneval+")


def test_check_solutions_follows_evalplus_base_then_plus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: Sandbox
) -> None:
    use_mbpp_subset(monkeypatch, tmp_path, [11])
    (task,) = load_tasks("mbpp+")
    head = "def remove_Occ(s, ch):\n"
    cases = {
        "correct": task.canonical_solution,
        "plus_wrong": REMOVE_OCC_PLUS_WRONG,
        "wrong": head + "    return s\n",
        "syntax": head[:-3] + "\n",
        "no_code": None,
        "blank": "  \n",
        "raises": head + "    raise ValueError('boom')\n",
        "timeout": head + "    while True:\n        pass\n",
    }
    checks = dict(zip(cases, check_solutions(sandbox, [(task, code) for code in cases.values()]), strict=True))
    verdicts = {name: (c.base_passed, c.plus_passed, c.failure) for name, c in checks.items()}
    assert verdicts == {
        "correct": (True, True, None),
        "plus_wrong": (True, False, "wrong_answer"),
        "wrong": (False, False, "wrong_answer"),
        "syntax": (False, False, "error"),
        "no_code": (False, False, "no_code"),
        "blank": (False, False, "no_code"),
        "raises": (False, False, "error"),
        "timeout": (False, False, "timeout"),
    }
    assert checks["plus_wrong"].failed_test is not None and checks["plus_wrong"].failed_test.startswith("plus_")
    assert checks["wrong"].failed_test == "base_0"
    assert "ValueError" in (checks["raises"].failure_message or "")
    assert checks["correct"].exec_s > 0


def test_check_solutions_refuses_tasks_without_tests(sandbox: Sandbox) -> None:
    with pytest.raises(DataError, match="no hidden tests"):
        check_solutions(sandbox, [(Task(task_id="p/0", instruction="x", source="p.jsonl"), "x = 1")])


def test_samples_round_trip_and_evaluate(fixture_tasks: list[Task], sandbox: Sandbox, tmp_path: Path) -> None:
    solutions = {t.task_id: t.canonical_solution for t in fixture_tasks}
    solutions["FixtureEval/1"] = "def mean_gap(xs):\n    return 1.5\n"  # right on base_0 only
    solutions["FixtureEval/2"] = None  # written as an empty solution
    path = tmp_path / "samples.jsonl"
    write_samples(path, [t.task_id for t in fixture_tasks], solutions)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [set(r) for r in rows] == [{"task_id", "solution"}] * 3 and rows[2]["solution"] == ""

    results = evaluate_samples(fixture_tasks, read_samples(path), sandbox, benchmark="humaneval+", samples=str(path))
    assert results.pass_at_1.base == pytest.approx(1 / 3) and results.pass_at_1.plus == pytest.approx(1 / 3)
    assert [(t.task_id, t.base_passed, t.plus_passed, t.failure) for t in results.tasks] == [
        ("FixtureEval/0", True, True, None),
        ("FixtureEval/1", False, False, "wrong_answer"),
        ("FixtureEval/2", False, False, "no_code"),
    ]
    assert results.failures == {"wrong_answer": 1, "no_code": 1}
    dumped = json.loads(results.model_dump_json())
    assert set(dumped["pass_at_1"]) == {"base", "plus"}
    assert {"task_id", "base_passed", "plus_passed", "failure"} <= set(dumped["tasks"][0])
    assert EvalResults.model_validate(dumped) == results

    del solutions["FixtureEval/0"]
    with pytest.raises(DataError, match="no solution for 1 task"):
        evaluate_samples(fixture_tasks, {k: v or "" for k, v in solutions.items()}, sandbox, benchmark="humaneval+")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"task_id": "A/1", "solution": "x"}\n{"task_id": "A/2", "solution": \n', r"samples\.jsonl:2: invalid JSON"),
        ('{"task_id": "A/1", "completion": "x"}\n', r"samples\.jsonl:1: expected a string 'solution'"),
        (
            '{"task_id": "A/1", "solution": "x"}\n{"task_id": "A/1", "solution": "y"}\n',
            r"samples\.jsonl:2: second sample",
        ),
        ("[1, 2]\n", r"samples\.jsonl:1: expected an object"),
    ],
)
def test_malformed_samples_name_file_and_line(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        read_samples(path)


class _Answer(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict("instruction -> response")

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        if entry_point == "interleave":
            raise RuntimeError("teacher went away")
        response = self.respond(instruction=instruction).response
        return dspy.Prediction(response=response, code=extract_code(response, entry_point))


def _dummy_lm() -> dspy.utils.DummyLM:
    return dspy.utils.DummyLM(
        {
            "digit_sum": {"response": "```python\ndef digit_sum(n):\n    return sum(map(int, str(n)))\n```"},
            "mean_gap": {"response": "I am not sure how to do that."},
        }
    )


def test_evaluate_program_records_each_task(fixture_tasks: list[Task], sandbox: Sandbox) -> None:
    seen: list[str] = []
    with dspy.context(lm=_dummy_lm()):
        results, records = evaluate_program(
            _Answer(),
            fixture_tasks,
            sandbox,
            benchmark="humaneval+",
            threads=2,
            on_result=lambda r: seen.append(r.task_id),
            variant="stand-in",
        )
    assert sorted(seen) == [t.task_id for t in fixture_tasks]
    by_id = {t.task_id: t for t in results.tasks}
    assert [t.task_id for t in results.tasks] == [t.task_id for t in fixture_tasks]
    assert (by_id["FixtureEval/0"].plus_passed, by_id["FixtureEval/0"].failure) == (True, None)
    assert by_id["FixtureEval/1"].failure == "no_code"
    assert by_id["FixtureEval/2"].failure == "program_error"
    assert "teacher went away" in (by_id["FixtureEval/2"].failure_message or "")
    assert [by_id[f"FixtureEval/{i}"].lm_calls for i in range(3)] == [1, 1, 0]
    assert all(t.wall_s > 0 for t in results.tasks)
    assert results.pass_at_1.plus == pytest.approx(1 / 3) and results.variant == "stand-in"
    assert results.lm_calls == 2
    assert "def digit_sum" in (records["FixtureEval/0"]["code"] or "")
    assert records["FixtureEval/1"]["response"] == "I am not sure how to do that."


class _InterruptedMidRun(dspy.Module):
    """digit_sum answers at once; interleave then presses Ctrl-C while mean_gap is still with the teacher, which
    answers only after the interrupt, when the sandbox and teacher are going away (as an interrupted eval's are)."""

    def __init__(self, checkpoint: EvalCheckpoint) -> None:
        super().__init__()
        self.checkpoint, self.release, self.answered = checkpoint, threading.Event(), threading.Event()

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        if entry_point == "mean_gap":
            self.release.wait(10)
            self.answered.set()
            return dspy.Prediction(response="", code="def mean_gap(xs):\n    return 0\n")
        if entry_point == "interleave":
            while "digit_sum" not in "".join(self.checkpoint.path.read_text() if self.checkpoint.path.exists() else ""):
                time.sleep(0.01)
            _thread.interrupt_main()
        return dspy.Prediction(response="", code="def digit_sum(n):\n    return sum(map(int, str(n)))\n")


class _ClosingSandbox:
    """The real sandbox until the CLI would close it; then what a closed sandbox's pool raises."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox, self.closed = sandbox, False

    def run_many(self, requests: list[Any]) -> list[Any]:
        if self.closed:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        return self.sandbox.run_many(requests)


def test_tasks_finishing_after_an_interrupt_are_not_checkpointed(fixture_tasks: list[Task], sandbox: Sandbox,
                                                                 tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 request: pytest.FixtureRequest) -> None:  # fmt: skip
    checkpoint = EvalCheckpoint(tmp_path, "k1")
    program = _InterruptedMidRun(checkpoint)
    closing = _ClosingSandbox(sandbox)
    dspy_logger = logging.getLogger("dspy")  # DSPy's loggers do not propagate to the root, where caplog listens
    dspy_logger.addHandler(caplog.handler)
    request.addfinalizer(lambda: dspy_logger.removeHandler(caplog.handler))
    before = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt):
        evaluate_program(program, fixture_tasks, closing, benchmark="humaneval+", threads=3,  # type: ignore[arg-type]
                         checkpoint=checkpoint)  # fmt: skip
    closing.closed = True
    program.release.set()
    assert program.answered.wait(10)
    for thread in set(threading.enumerate()) - before:
        if thread.ident is not None:  # enumerate lists a thread being started before it may be joined
            thread.join(10)
    resumed = EvalCheckpoint(tmp_path, "k1").done
    assert "FixtureEval/0" in resumed and "FixtureEval/1" not in resumed  # mean_gap runs again next session
    # what the task in flight raised once its sandbox went away is no error of the run's: no traceback under Ctrl-C
    assert "cannot schedule new futures" not in caplog.text


class _ServerGone(dspy.Module):
    """digit_sum answers; the teacher's server is gone for mean_gap (refused connection); interleave has no code."""

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        if entry_point == "mean_gap":
            from dspy.utils.exceptions import LMTransportError

            raise LMTransportError("failed to connect to 127.0.0.1:1: [Errno 111] Connection refused", model="m")
        if entry_point == "digit_sum":
            return dspy.Prediction(response="", code="def digit_sum(n):\n    return sum(map(int, str(n)))\n")
        return dspy.Prediction(response="no code", code=None)


def test_a_task_that_could_not_reach_the_teacher_is_reported_but_not_checkpointed(
    fixture_tasks: list[Task], sandbox: Sandbox, tmp_path: Path
) -> None:
    checkpoint = EvalCheckpoint(tmp_path, "k1")
    results, _ = evaluate_program(_ServerGone(), fixture_tasks, sandbox, benchmark="humaneval+", threads=1,
                                  checkpoint=checkpoint)  # fmt: skip
    by_id = {t.task_id: t for t in results.tasks}
    assert by_id["FixtureEval/1"].failure == "program_error"
    assert "Connection refused" in (by_id["FixtureEval/1"].failure_message or "")
    assert checkpoint.recorded == {"FixtureEval/0", "FixtureEval/2"}
    assert set(EvalCheckpoint(tmp_path, "k1").done) == {"FixtureEval/0", "FixtureEval/2"}  # the next run asks again


class _Kept(dspy.Module):
    """Stands in for an AMR program: says which answer its guard kept (none for the third task)."""

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        kept = {"digit_sum": "evolved", "mean_gap": "direct"}.get(entry_point or "")
        return dspy.Prediction(response="no code", code=None, kept=kept, notes=[f"kept {kept}"])


def test_which_answer_amr_kept_is_recorded_and_summarised(fixture_tasks: list[Task], sandbox: Sandbox) -> None:
    results, records = evaluate_program(_Kept(), fixture_tasks, sandbox, benchmark="humaneval+", threads=1)
    assert [t.kept for t in results.tasks] == ["evolved", "direct", None]
    assert records["FixtureEval/0"]["notes"] == ["kept evolved"]
    console = Console(record=True, width=200)
    console.print(summary_table(results))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "evolved answer kept on 1 of 3 tasks, direct on 1; 1 ended before evolving" in text


def test_tokens_count_cache_hits_and_uncached_calls_count_what_was_paid(fixture_tasks: list[Task],
                                                                         sandbox: Sandbox) -> None:  # fmt: skip
    from tests.fake_openai_server import FakeOpenAI

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    tasks = fixture_tasks[:2]
    with FakeOpenAI() as server, dspy.context(lm=server.lm(cache=True)):
        first, _ = evaluate_program(_Answer(), tasks, sandbox, benchmark="humaneval+", threads=2)
        again, _ = evaluate_program(_Answer(), tasks, sandbox, benchmark="humaneval+", threads=2)
    assert len(server.requests) == 2  # the second run was all cache hits
    assert [t.uncached_lm_calls for t in first.tasks] == [1, 1] and [t.uncached_lm_calls for t in again.tasks] == [0, 0]
    assert first.prompt_tokens > 0 and first.completion_tokens > 0
    assert (again.prompt_tokens, again.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    assert (first.paid_prompt_tokens, first.paid_completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    assert (again.paid_prompt_tokens, again.paid_completion_tokens) == (0, 0)  # used as much, paid nothing


def test_tables_render(fixture_tasks: list[Task], sandbox: Sandbox) -> None:
    results = evaluate_samples(
        fixture_tasks, {t.task_id: t.canonical_solution or "" for t in fixture_tasks}, sandbox, benchmark="humaneval+"
    )
    console = Console(record=True, width=160)
    console.print(summary_table(results))
    console.print(results_table(results))
    text = console.export_text()
    assert "100.0%" in text and "FixtureEval/2" in text


# --------------------------------------------------------------------------------------------
# the CLI


@pytest.fixture
def cli() -> CliRunner:
    import amr_dspy.cli.eval  # noqa: F401  (registers the command)

    return CliRunner()


def test_cli_eval_samples_writes_results(cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path) -> None:
    from amr_dspy.cli import app

    samples = tmp_path / "in.jsonl"
    write_samples(samples, [t.task_id for t in fixture_tasks], {"FixtureEval/0": fixture_tasks[0].canonical_solution})
    out = tmp_path / "run"
    result = cli.invoke(app, ["eval", "--benchmark", "humaneval+", "--samples", str(samples), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["pass_at_1"] == {"base": pytest.approx(1 / 3), "plus": pytest.approx(1 / 3)}
    assert [t["failure"] for t in data["tasks"]] == [None, "no_code", "no_code"]
    assert read_samples(out / "samples.jsonl")["FixtureEval/0"] == fixture_tasks[0].canonical_solution
    assert "33.3%" in result.output


@pytest.mark.parametrize(
    "args", [[], ["--variant", "direct", "--samples", "x.jsonl"], ["--samples", "x.jsonl", "--program", "p.json"]]
)
def test_cli_eval_rejects_conflicting_options(cli: CliRunner, args: list[str]) -> None:
    from amr_dspy.cli import app

    result = cli.invoke(app, ["eval", *args])
    assert result.exit_code != 0
    assert "--variant" in str(result.exception)


def test_cli_eval_runs_a_variant_with_a_stand_in_teacher(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amr_dspy.programs
    from amr_dspy.cli import app

    @contextmanager
    def fake_session(spec: object) -> Iterator[dspy.LM]:
        lm = _dummy_lm()
        with dspy.context(lm=lm):
            yield lm

    monkeypatch.setattr(amr_dspy.run, "teacher_session", fake_session)
    monkeypatch.setattr(amr_dspy.programs, "build_program", lambda variant, **kw: _Answer())
    out = tmp_path / "run"
    result = cli.invoke(
        app,
        [
            "eval",
            "--variant",
            "direct",
            "--benchmark",
            "humaneval+",
            "--teacher",
            "local",
            "--threads",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["variant"] == "direct" and data["pass_at_1"]["plus"] == pytest.approx(1 / 3)
    assert [t["failure"] for t in data["tasks"]] == [None, "no_code", "program_error"]
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert predictions[1]["response"] == "I am not sure how to do that."
    assert set(read_samples(out / "samples.jsonl")) == {t.task_id for t in fixture_tasks}


def test_cli_eval_runs_direct_plain_and_meters_its_calls(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amr_dspy.cli import app
    from tests.plain_teacher import COMPLETION_TOKENS, PROMPT_TOKENS, PlainTeacher

    teacher = PlainTeacher({"def digit_sum": f"```python\n{fixture_tasks[0].canonical_solution}```"})

    @contextmanager
    def fake_session(spec: object) -> Iterator[dspy.LM]:
        with dspy.context(lm=teacher):
            yield teacher

    monkeypatch.setattr(amr_dspy.run, "teacher_session", fake_session)
    out = tmp_path / "run"
    args = ["eval", "--variant", "direct-plain", "--benchmark", "humaneval+", "--teacher", "local", "--threads", "2",
            "--out", str(out)]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["variant"] == "direct-plain" and [t["failure"] for t in data["tasks"]] == [None, "no_code", "no_code"]
    assert [(t["lm_calls"], t["uncached_lm_calls"]) for t in data["tasks"]] == [(1, 1)] * 3
    assert (data["prompt_tokens"], data["completion_tokens"]) == (3 * PROMPT_TOKENS, 3 * COMPLETION_TOKENS)
    assert sorted(len(messages) for messages in teacher.sent) == [1, 1, 1]
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(p["framed_instruction"].startswith("Complete the following Python function `") for p in predictions)


def test_bench_sandbox_runs_the_same_tests_on_both_executors(fixture_tasks: list[Task], sandbox: Sandbox) -> None:
    from amr_dspy.evaluation import bench_sandbox, bench_table

    report = bench_sandbox(fixture_tasks, sandbox, benchmark="humaneval+", workers=2)
    total = sum(len(t.tests) for t in fixture_tasks)
    assert report.project.executions == report.evalplus.executions == total
    assert report.project.tasks_passed == report.evalplus.tasks_passed == len(fixture_tasks)
    assert report.ratio == pytest.approx(report.project.executions_per_s / report.evalplus.executions_per_s)
    console = Console(record=True, width=120)
    console.print(bench_table(report))
    assert "evalplus check_correctness" in console.export_text()
    with pytest.raises(DataError, match="canonical solutions"):
        bench_sandbox([Task(task_id="p/0", instruction="x", source="p.jsonl")], sandbox, benchmark="p.jsonl", workers=1)


def test_cli_eval_fails_loudly_when_the_program_fails_everywhere(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amr_dspy.programs
    from amr_dspy.cli import app

    class Down(dspy.Module):
        def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
            raise ConnectionError("connection refused")

    without_teacher(monkeypatch)
    monkeypatch.setattr(amr_dspy.programs, "build_program", lambda variant, **kw: Down())
    out = tmp_path / "run"
    result = cli.invoke(app, ["eval", "--variant", "direct", "--benchmark", "humaneval+", "--out", str(out)])
    assert result.exit_code != 0
    assert "failed on all 3 tasks" in str(result.exception) and "connection refused" in str(result.exception)
    assert json.loads((out / "results.json").read_text())["failures"] == {"program_error": 3}


# --------------------------------------------------------------------------------------------
# the selecting programs' records: selection, module checks, --select-samples


def _selection(kind: str) -> Selection:
    chosen = "sample_2" if kind == "sample" else kind
    runs = [CandidateRun(name="direct", kind="direct", code="x = 1", tests=["pass"], tests_passed=1)]
    return Selection(chosen=chosen, kind=kind, reason="by hand", tests=["assert x == 1"], candidates=runs)


class _Selected(dspy.Module):
    """Stands in for the selecting programs: a direct-select prediction (a selection, no ``kept``), an amr-verified
    one (``kept`` and module checks), and one with neither; ``interrupt`` stops the run at the third task."""

    def __init__(self, interrupt: bool = False) -> None:
        super().__init__()
        self.interrupt = interrupt

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        if entry_point == "digit_sum":
            return dspy.Prediction(response="no code", code=None, selection=_selection("sample"))
        if entry_point == "mean_gap":
            check = ModuleCheck(name="helper", tests=["assert helper() == 1"], outcome="failed", regenerated=True,
                                failure="assert helper() == 1\nAssertionError")  # fmt: skip
            return dspy.Prediction(response="no code", code=None, kept="direct", selection=_selection("direct"),
                                   module_checks=[check])  # fmt: skip
        if self.interrupt:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return dspy.Prediction(response="no code", code=None)


def _eval_with(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, module: dspy.Module, out: Path,
               *args: str) -> object:  # fmt: skip
    import amr_dspy.programs
    from amr_dspy.cli import app

    without_teacher(monkeypatch)
    monkeypatch.setattr(amr_dspy.programs, "build_program", lambda variant, **kw: module)
    return cli.invoke(app, ["eval", "--variant", "direct-select", "--benchmark", "humaneval+", "--threads", "1",
                            "--workers", "1", "--out", str(out), *args])  # fmt: skip


def _predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_selection_and_module_checks_are_written_to_predictions(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    result = _eval_with(cli, monkeypatch, _Selected(), out)
    assert result.exit_code == 0, result.output
    rows = _predictions(out)
    assert rows[0]["selection"] == _selection("sample").model_dump(mode="json")
    assert rows[0]["selection"]["candidates"][0]["tests"] == ["pass"] and rows[0]["module_checks"] is None
    assert rows[1]["module_checks"] == [{"name": "helper", "tests": ["assert helper() == 1"], "outcome": "failed",
                                         "regenerated": True, "failure": "assert helper() == 1\nAssertionError",
                                         "neighbours": []}]  # fmt: skip
    assert (rows[2]["selection"], rows[2]["module_checks"]) == (None, None)
    # direct-select says which kind it chose only in its selection; the kind is what the task result keeps
    assert [r["kept"] for r in rows] == ["sample", "direct", None]
    data = json.loads((out / "results.json").read_text())
    assert [t["kept"] for t in data["tasks"]] == ["sample", "direct", None]
    assert "answer chosen on 2 of 3 tasks: direct 1, sample 1; none on 1" in " ".join(result.output.split())


def test_an_old_checkpoint_and_old_results_without_the_new_fields_still_load(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    assert _eval_with(cli, monkeypatch, _Selected(interrupt=True), out).exit_code != 0
    progress = out / "progress.jsonl"
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [line["record"]["selection"]["kind"] for line in lines] == ["sample", "direct"]
    for line in lines:  # as a checkpoint written before the records had them
        del line["record"]["selection"], line["record"]["module_checks"]
    progress.write_text("".join(json.dumps(line) + "\n" for line in lines))

    result = _eval_with(cli, monkeypatch, _Selected(), out)
    assert result.exit_code == 0, result.output
    assert "resuming: 2 tasks finished earlier" in result.output
    rows = _predictions(out)
    assert [(r["selection"], r["module_checks"]) for r in rows] == [(None, None)] * 3
    assert [r["kept"] for r in rows] == ["sample", "direct", None]  # the resumed records kept theirs

    old = json.loads((out / "results.json").read_text())
    del old["program_config"]
    old["tasks"][0]["kept"] = "evolved"
    loaded = EvalResults.model_validate(old)
    assert loaded.program_config is None and loaded.tasks[0].kept == "evolved"


_SELECT_ANSWERS = {
    "digit_sum": {"response": "```python\ndef digit_sum(n):\n    return sum(map(int, str(n)))\n```",
                  "tests": ["assert digit_sum(123) == 6", "assert digit_sum(0) == 0"]},
    "mean_gap": {"response": "I am not sure how to do that.", "tests": []},
    "interleave": {"response": "```python\ndef interleave(a, b):\n    return ''.join(x + y for x, y in "
                               "zip(a, b)) + a[len(b):] + b[len(a):]\n```",
                   "tests": ["assert interleave('ab', 'cd') == 'acbd'"]},
}  # fmt: skip


class _SelectTeacher(dspy.utils.DummyLM):
    """Answers direct-select's calls by task; with ``interrupt``, Ctrl-C arrives while it works on interleave."""

    def __init__(self, interrupt: bool = False) -> None:
        super().__init__(_SELECT_ANSWERS)
        self.interrupt = interrupt

    def __call__(self, *args: object, **kwargs: object) -> object:
        if self.interrupt and "interleave" in str(kwargs.get("messages")):
            raise KeyboardInterrupt
        return super().__call__(*args, **kwargs)


def _eval_direct_select(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, out: Path, *args: str,
                        interrupt: bool = False) -> object:  # fmt: skip
    from amr_dspy.cli import app

    @contextmanager
    def fake_session(spec: object) -> Iterator[dspy.LM]:
        lm = _SelectTeacher(interrupt)
        with dspy.context(lm=lm):
            yield lm

    monkeypatch.setattr(amr_dspy.run, "teacher_session", fake_session)
    return cli.invoke(app, ["eval", "--variant", "direct-select", "--benchmark", "humaneval+", "--threads", "1",
                            "--workers", "1", "--out", str(out), *args])  # fmt: skip


def test_select_samples_sets_how_many_answers_direct_select_samples(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = _eval_direct_select(cli, monkeypatch, tmp_path / "one", "--select-samples", "1")
    assert one.exit_code == 0, one.output
    rows = _predictions(tmp_path / "one")
    # digit_sum and interleave pass everything and their one sample agrees: early exit; mean_gap has no code
    assert [[c["name"] for c in r["selection"]["candidates"]] for r in rows] == [["direct", "sample_1"]] * 3
    assert [r["selection"]["early_exit"] for r in rows] == [True, False, True]
    assert [r["kept"] for r in rows] == ["direct"] * 3 and all(r["module_checks"] is None for r in rows)
    data = json.loads((tmp_path / "one" / "results.json").read_text())
    assert data["program_config"]["samples"] == 1 and data["pass_at_1"]["plus"] == pytest.approx(2 / 3)

    default = _eval_direct_select(cli, monkeypatch, tmp_path / "default")
    assert default.exit_code == 0, default.output
    candidates = [len(r["selection"]["candidates"]) for r in _predictions(tmp_path / "default")]
    assert candidates == [3, 9, 3]  # SelectConfig: 8 samples, an early exit after 2 that agree
    assert json.loads((tmp_path / "default" / "results.json").read_text())["program_config"]["samples"] == 8


def test_a_checkpoint_made_with_other_select_samples_is_refused(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    first = _eval_direct_select(cli, monkeypatch, out, "--select-samples", "1", interrupt=True)
    assert first.exit_code != 0 and len((out / "progress.jsonl").read_text().splitlines()) == 2

    other = _eval_direct_select(cli, monkeypatch, out, "--select-samples", "2")
    assert isinstance(other.exception, ConfigError)
    assert "progress.jsonl:1: checkpoint of a different run" in str(other.exception)
    assert "\n" not in str(other.exception) and not (out / "results.json").exists()

    same = _eval_direct_select(cli, monkeypatch, out, "--select-samples", "1")
    assert same.exit_code == 0, same.output
    assert "resuming: 2 tasks finished earlier" in same.output


def test_cli_eval_refuses_a_negative_select_samples(cli: CliRunner) -> None:
    from amr_dspy.cli import app

    result = cli.invoke(app, ["eval", "--variant", "direct-select", "--select-samples", "-1"])
    assert result.exit_code == 2 and "Invalid value for '--select-samples'" in result.output


def test_cli_eval_select_samples_needs_a_variant(cli: CliRunner) -> None:
    from amr_dspy.cli import app

    result = cli.invoke(app, ["eval", "--canonical", "--select-samples", "2"])
    assert isinstance(result.exception, ConfigError)
    assert "--select-samples and --test-sets need --variant" in str(result.exception)


def test_eval_keeps_the_checkpoint_when_a_task_could_not_reach_the_teacher_and_the_rerun_asks_again(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ev"
    gone = _eval_with(cli, monkeypatch, _ServerGone(), out)
    assert gone.exit_code == 0, gone.output
    assert "could not reach the teacher" in " ".join(gone.output.split())
    assert _checkpoint_ids(out) == {"FixtureEval/0", "FixtureEval/2"}

    again = _eval_with(cli, monkeypatch, _Kept(), out)
    assert again.exit_code == 0, again.output
    assert not (out / "progress.jsonl").exists() and (out / "finished.jsonl").is_file()
    by_id = {t["task_id"]: t for t in json.loads((out / "results.json").read_text())["tasks"]}
    assert by_id["FixtureEval/1"]["failure"] != "program_error" and by_id["FixtureEval/0"]["plus_passed"]


def _checkpoint_ids(out: Path) -> set[str]:
    return {json.loads(line)["result"]["task_id"] for line in (out / "progress.jsonl").read_text().splitlines()}


def test_cli_eval_recheck_reads_stored_responses_again_and_keeps_the_teachers_numbers(
    cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path
) -> None:
    from amr_dspy.cli import app

    out = tmp_path / "run"
    out.mkdir()
    digit_sum = next(t for t in fixture_tasks if t.entry_point == "digit_sum")
    response = f"```\n{digit_sum.canonical_solution}\n```"
    stored = {  # digit_sum's code was lost by an older extractor; the others are read today as they were then
        t.task_id: {"task_id": t.task_id, "response": response if t is digit_sum else "no code here", "code": None}
        for t in fixture_tasks
    }
    results = EvalResults.collect(
        "humaneval+",
        [TaskResult(task_id=t.task_id, base_passed=False, plus_passed=False, failure="no_code", lm_calls=1,
                    prompt_tokens=40, completion_tokens=60, wall_s=3.0) for t in fixture_tasks],  # fmt: skip
        wall_s=12.5,
        variant="direct",
        teacher="local",
    )
    (out / "results.json").write_text(results.model_dump_json())
    (out / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in stored.values()))

    result = cli.invoke(app, ["eval", "--recheck", "-b", "humaneval+", "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "1 of 3 tasks' code read differently today" in " ".join(result.output.split())
    data = EvalResults.model_validate_json((out / "results.json").read_text())
    by_id = {t.task_id: t for t in data.tasks}
    assert by_id[digit_sum.task_id].plus_passed and by_id[digit_sum.task_id].failure is None
    assert data.pass_at_1.plus == pytest.approx(1 / 3) and data.wall_s == 12.5 and data.variant == "direct"
    assert (data.prompt_tokens, data.completion_tokens, data.lm_calls) == (120, 180, 3)
    rows = {r["task_id"]: r for r in _predictions(out)}
    fixed = rows[digit_sum.task_id]
    assert fixed["code"] == extract_code(response, "digit_sum") and fixed["failure"] is None


def test_cli_eval_recheck_needs_a_finished_run(cli: CliRunner, fixture_tasks: list[Task], tmp_path: Path) -> None:
    from amr_dspy.cli import app

    result = cli.invoke(app, ["eval", "--recheck", "-b", "humaneval+", "--out", str(tmp_path)])
    assert isinstance(result.exception, ConfigError) and "no results.json" in str(result.exception)
    nowhere = cli.invoke(app, ["eval", "--recheck", "-b", "humaneval+"])
    assert isinstance(nowhere.exception, ConfigError) and "--recheck needs --out" in str(nowhere.exception)
