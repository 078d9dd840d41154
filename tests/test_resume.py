"""Checkpointed evaluations: finished tasks survive an interruption and a resumed run does not redo them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest

from amr_dspy.errors import ConfigError, DataError
from amr_dspy.evaluation import TaskResult, evaluate_program
from amr_dspy.resume import FINISHED_FILE, PROGRESS_FILE, EvalCheckpoint, lm_fingerprint, run_key
from amr_dspy.sandbox import Sandbox
from amr_dspy.tasks import Task, load_tasks
from amr_dspy.teacher import TeacherSpec
from tests.evalplus_helpers import use_humaneval_fixture


def _result(task_id: str, passed: bool = True) -> TaskResult:
    return TaskResult(task_id=task_id, base_passed=passed, plus_passed=passed, lm_calls=2, wall_s=1.5)


def test_a_reopened_checkpoint_holds_what_was_added(tmp_path: Path) -> None:
    first = EvalCheckpoint(tmp_path, "k1")
    first.add(_result("T/0"), {"code": "x = 1", "response": "r"}, elapsed_s=4.0)
    first.add(_result("T/1", passed=False), {"code": None, "response": ""}, elapsed_s=9.0)
    second = EvalCheckpoint(tmp_path, "k1")
    second.add(_result("T/2"), {"code": "y", "response": "r"}, elapsed_s=2.5)

    again = EvalCheckpoint(tmp_path, "k1")
    assert sorted(again.done) == ["T/0", "T/1", "T/2"]
    assert again.done["T/1"].result["plus_passed"] is False and again.done["T/0"].record["code"] == "x = 1"
    assert again.prior_wall_s == pytest.approx(9.0 + 2.5)  # each session's longest elapsed time, summed


def test_a_straggler_finishing_after_the_run_leaves_no_checkpoint(tmp_path: Path) -> None:
    checkpoint = EvalCheckpoint(tmp_path, "k1")
    checkpoint.add(_result("T/0"), {"code": "x"}, elapsed_s=1.0)
    checkpoint.finish()
    checkpoint.add(_result("T/1"), {"code": "y"}, elapsed_s=130.0)  # DSPy's resubmitted straggler, still running
    assert not (tmp_path / PROGRESS_FILE).exists()
    assert list(EvalCheckpoint(tmp_path, "k1").done) == ["T/0"]  # the finished run, without the straggler


def test_a_finished_run_over_more_tasks_takes_the_finished_ones_and_their_time(tmp_path: Path) -> None:
    first = EvalCheckpoint(tmp_path, "k1", tasks=["T/0", "T/1"])
    first.add(_result("T/0"), {"code": "x"}, elapsed_s=4.0)
    first.add(_result("T/1"), {"code": "y"}, elapsed_s=10.0)
    first.finish()
    assert (tmp_path / FINISHED_FILE).is_file() and not (tmp_path / PROGRESS_FILE).exists()

    grown = EvalCheckpoint(tmp_path, "k1", tasks=["T/0", "T/1", "T/2"])
    assert sorted(grown.done) == ["T/0", "T/1"] and grown.prior_wall_s == pytest.approx(10.0)
    assert (tmp_path / PROGRESS_FILE).is_file() and not (tmp_path / FINISHED_FILE).exists()  # being extended
    grown.add(_result("T/2"), {"code": "z"}, elapsed_s=3.0)
    grown.close()  # interrupted: the grown run resumes from progress.jsonl with all three

    fewer = EvalCheckpoint(tmp_path, "k1", tasks=["T/0"])
    assert list(fewer.done) == ["T/0"] and fewer.prior_wall_s == pytest.approx(4.0)  # T/0's session time only
    fewer.finish()
    assert sorted(EvalCheckpoint(tmp_path, "k1").done) == ["T/0", "T/1", "T/2"]  # the file keeps all it had


def test_a_finished_run_of_other_settings_is_set_aside_not_refused(tmp_path: Path) -> None:
    old = EvalCheckpoint(tmp_path, run_key(variant="direct"))
    old.add(_result("T/0"), {}, elapsed_s=1.0)
    old.finish()
    other = EvalCheckpoint(tmp_path, run_key(variant="cot"), tasks=["T/0"])
    assert other.done == {}
    other.add(_result("T/0", passed=False), {}, elapsed_s=2.0)
    other.finish()
    assert EvalCheckpoint(tmp_path, run_key(variant="direct")).done == {}  # replaced by the cot run
    assert not EvalCheckpoint(tmp_path, run_key(variant="cot")).done["T/0"].result["plus_passed"]


def test_lines_written_when_keys_named_the_tasks_resume_and_are_rewritten(tmp_path: Path) -> None:
    legacy = run_key(variant="direct", tasks=["T/0", "T/1"])
    EvalCheckpoint(tmp_path, legacy).add(_result("T/0"), {"code": "x"}, elapsed_s=1.0)
    key = run_key(variant="direct")
    resumed = EvalCheckpoint(tmp_path, key, tasks=["T/0", "T/1"], legacy_key=legacy)
    assert list(resumed.done) == ["T/0"]
    assert list(EvalCheckpoint(tmp_path, key, tasks=["T/0"]).done) == ["T/0"]  # now under the key without tasks
    with pytest.raises(ConfigError, match="checkpoint of a different run"):
        EvalCheckpoint(tmp_path, legacy)


def test_a_closed_checkpoint_keeps_its_file_and_takes_nothing_more(tmp_path: Path) -> None:
    checkpoint = EvalCheckpoint(tmp_path, "k1")
    checkpoint.add(_result("T/0"), {"code": "x"}, elapsed_s=1.0)
    checkpoint.close()  # the run was interrupted
    checkpoint.add(_result("T/1"), {"code": "y"}, elapsed_s=2.0)
    assert list(EvalCheckpoint(tmp_path, "k1").done) == ["T/0"]


def test_a_line_cut_short_by_a_kill_is_dropped(tmp_path: Path) -> None:
    EvalCheckpoint(tmp_path, "k1").add(_result("T/0"), {"code": "x"}, elapsed_s=1.0)
    with (tmp_path / PROGRESS_FILE).open("ab") as handle:
        handle.write(b'{"key": "k1", "session": "s", "elapsed_s": 2.0, "result": {"task_id": "T/1", "base_pa')
    assert list(EvalCheckpoint(tmp_path, "k1").done) == ["T/0"]


def test_a_corrupt_line_before_the_end_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / PROGRESS_FILE).write_text('not json\n{"also": "bad"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{PROGRESS_FILE}:1: not a checkpoint line"):
        EvalCheckpoint(tmp_path, "k1")


def test_a_checkpoint_of_another_run_is_refused_unless_fresh(tmp_path: Path) -> None:
    EvalCheckpoint(tmp_path, run_key(variant="direct")).add(_result("T/0"), {}, elapsed_s=1.0)
    with pytest.raises(ConfigError, match=r"progress\.jsonl:1: checkpoint of a different run.*--fresh"):
        EvalCheckpoint(tmp_path, run_key(variant="cot"))
    assert EvalCheckpoint(tmp_path, run_key(variant="cot"), fresh=True).done == {}
    assert not (tmp_path / PROGRESS_FILE).exists()


def test_the_fingerprint_ignores_the_local_servers_port() -> None:
    spec = TeacherSpec.parse("local")
    one, other = spec.make_lm(api_base="http://127.0.0.1:41001/v1"), spec.make_lm(api_base="http://127.0.0.1:41002/v1")
    assert lm_fingerprint(one) == lm_fingerprint(other)  # a new session's server must resume the same checkpoint
    hotter = TeacherSpec.parse("local", temperature=0.7).make_lm(api_base="http://127.0.0.1:41001/v1")
    assert run_key(lm=lm_fingerprint(hotter)) != run_key(lm=lm_fingerprint(one))


def test_a_checkpoint_made_on_one_server_kind_does_not_resume_on_another(tmp_path: Path) -> None:
    from amr_dspy.server import ServerSettings

    spec, base = TeacherSpec.parse("local"), "http://127.0.0.1:41001/v1"
    fallback = spec.make_lm(api_base=base, server=ServerSettings(kind="llama-cpp-python"))
    batching = spec.make_lm(api_base=base, server=ServerSettings(kind="llama-server", slots=8))
    fewer_slots = spec.make_lm(api_base=base, server=ServerSettings(kind="llama-server", slots=4))
    old = [fallback.model, {k: v for k, v in fallback.kwargs.items() if k not in ("api_base", "api_key", "timeout")}]
    assert lm_fingerprint(fallback) == old  # checkpoints from before the choice of server still resume
    assert len({run_key(lm=lm_fingerprint(lm)) for lm in (fallback, batching, fewer_slots)}) == 3
    EvalCheckpoint(tmp_path, run_key(lm=lm_fingerprint(fallback))).add(_result("T/0"), {}, elapsed_s=1.0)
    with pytest.raises(ConfigError, match="checkpoint of a different run"):
        EvalCheckpoint(tmp_path, run_key(lm=lm_fingerprint(batching)))


class _Counting(dspy.Module):
    """Answers every task with its canonical solution and counts which tasks it was asked about."""

    def __init__(self, tasks: list[Task]) -> None:
        super().__init__()
        self.solutions = {t.instruction: t.canonical_solution for t in tasks}
        self.asked: list[str] = []

    def forward(self, instruction: str, entry_point: str | None = None) -> dspy.Prediction:
        self.asked.append(str(entry_point))
        code = self.solutions[instruction]
        return dspy.Prediction(response=f"```python\n{code}\n```", code=code)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Task]:
    use_humaneval_fixture(monkeypatch, tmp_path)
    return load_tasks("humaneval+")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1) as box:
        yield box


def test_a_resumed_evaluation_runs_only_the_unfinished_tasks(tasks: list[Task], sandbox: Sandbox,
                                                             tmp_path: Path) -> None:  # fmt: skip
    first, rest = tasks[0], tasks[1:]
    interrupted = EvalCheckpoint(tmp_path, "run")
    evaluate_program(_Counting(tasks), [first], sandbox, benchmark="humaneval+", threads=1, checkpoint=interrupted)

    resumed = EvalCheckpoint(tmp_path, "run")
    assert list(resumed.done) == [first.task_id]
    program = _Counting(tasks)
    results, records = evaluate_program(program, tasks, sandbox, benchmark="humaneval+", threads=1, checkpoint=resumed)
    assert sorted(program.asked) == sorted(t.entry_point for t in rest)  # the finished task was not run again
    assert [r.task_id for r in results.tasks] == [t.task_id for t in tasks]
    assert records[first.task_id]["code"] == first.canonical_solution
    assert results.tasks[0].plus_passed and results.wall_s >= resumed.prior_wall_s > 0
    assert sorted(EvalCheckpoint(tmp_path, "run").done) == sorted(t.task_id for t in tasks)
