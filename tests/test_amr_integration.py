"""AMR-Evol end to end: the real embedded teacher, the real module library and the real sandbox, on two tasks."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest

from amr_dspy.evaluation import evaluate_program
from amr_dspy.library import HashingEmbedder, Library, seed_from_tasks
from amr_dspy.programs import build_program
from amr_dspy.sandbox import Sandbox
from amr_dspy.tasks import load_tasks
from amr_dspy.testcases import ExecutionRequest
from tests.evalplus_helpers import use_mbpp_subset

pytestmark = pytest.mark.teacher

SEED = [2, 3, 4, 6, 602, 603, 605]  # train tasks: they seed the library
TASKS = [7, 604]  # train tasks too, so nothing from dev or test is touched


def test_amr_runs_end_to_end_on_two_tasks(local_teacher: dspy.LM, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:  # fmt: skip
    use_mbpp_subset(monkeypatch, tmp_path, SEED + TASKS)
    tasks = {int(t.task_id.split("/")[1]): t for t in load_tasks("mbpp+:train")}
    with Sandbox(workers=1) as sandbox:
        library = Library.create(tmp_path / "lib", HashingEmbedder(128))
        report = seed_from_tasks([tasks[n] for n in SEED], lambda task, code: sandbox.run(
            _request(task, code)).passed, None, library)  # fmt: skip
        assert report.verified == len(SEED) and len(library) >= len(SEED)

        program = build_program("amr", library=library, executor=sandbox)
        with dspy.context(lm=local_teacher, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
            results, records = evaluate_program(program, [tasks[n] for n in TASKS], sandbox,
                                                benchmark="mbpp+:train", threads=1)  # fmt: skip
    assert [r.task_id for r in results.tasks] == ["Mbpp/7", "Mbpp/604"]
    for result in results.tasks:
        record = records[result.task_id]
        assert result.failure != "program_error"  # the program never raises on a teacher's output
        assert result.lm_calls >= 2  # direct answer plus at least the decomposition
        assert record["notes"]  # every run says what it kept and why
        known = {m.id for m in library.records}
        assert all(r["id"] in known for r in record["retrieved"])
        if record["kept"] is not None:
            assert record["kept"] in ("direct", "evolved")


def _request(task, code: str) -> ExecutionRequest:
    return ExecutionRequest(code=code, entry_point=task.entry_point, tests=task.tests, task_id=task.task_id,
                            dataset=task.dataset)  # fmt: skip
