"""The run layer: every command opens teacher, sandbox, library and program the same way (``amr_dspy.run``).

The CLI tests here use no stand-in for the wiring: a real remote teacher (the fake OpenAI server), the real
sandbox and the bundled library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amr_dspy import resources
from amr_dspy.cli import app
from amr_dspy.errors import ConfigError
from amr_dspy.evaluation import bigcodebench_limits, evalplus_limits
from amr_dspy.run import load_program, open_resources, sandbox_limits
from amr_dspy.tasks import Task, load_tasks
from tests.evalplus_helpers import use_humaneval_fixture, use_mbpp_subset
from tests.fake_openai_server import FakeOpenAI


@pytest.fixture
def fixture_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Task]:
    use_humaneval_fixture(monkeypatch, tmp_path)
    return load_tasks("humaneval+")


def _remote(server: FakeOpenAI) -> list[str]:
    return ["--teacher", "openai/fake-teacher", "--api-base", server.api_base, "--api-key", "x", "--workers", "1",
            "--threads", "2"]  # fmt: skip


def test_eval_and_compare_run_on_a_real_remote_teacher_and_meter_used_and_paid_tokens(
    fixture_tasks: list[Task], tmp_path: Path
) -> None:
    runner = CliRunner()
    with FakeOpenAI() as server:
        evaluated = runner.invoke(app, ["eval", "--variant", "direct", "-b", "humaneval+", *_remote(server),
                                        "--no-cache", "--out", str(tmp_path / "eval")])  # fmt: skip
        asked = len(server.requests)
        compared = runner.invoke(app, ["compare", "--variants", "direct,cot", "-b", "humaneval+", *_remote(server),
                                       "--no-cache", "--out", str(tmp_path / "compare")])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert compared.exit_code == 0, compared.output
    data = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert data["teacher"] == "openai/fake-teacher" and data["library"] is None  # direct never opens one
    assert asked == len(fixture_tasks) == sum(t["uncached_lm_calls"] for t in data["tasks"])
    assert data["prompt_tokens"] > 0 and (data["paid_prompt_tokens"], data["paid_completion_tokens"]) == (
        data["prompt_tokens"], data["completion_tokens"])  # no cache: everything used was paid  # fmt: skip
    report = json.loads((tmp_path / "compare" / "report.json").read_text())
    assert [v["label"] for v in report["variants"]] == ["direct", "cot"]
    assert all(v["paid_tokens_per_task"] == v["tokens_per_task"] > 0 for v in report["variants"])
    assert "paid/task" in (tmp_path / "compare" / "report.md").read_text()


def test_one_set_of_sandbox_limits_per_kind_of_task(fixture_tasks: list[Task]) -> None:
    bcb = fixture_tasks[0].model_copy(update={"dataset": "bigcodebench"})
    assert sandbox_limits() == sandbox_limits(fixture_tasks) == evalplus_limits()  # synthesis checks as eval does
    assert sandbox_limits([*fixture_tasks, bcb]) == bigcodebench_limits()
    with open_resources(None, tasks=fixture_tasks, workers=1) as run:
        assert run.lm is None and run.library is None and run.sandbox.limits == evalplus_limits()


def test_retrieval_variants_get_the_bundled_library_unless_told_otherwise() -> None:
    with open_resources(None, workers=1, variants=["direct", "amr"]) as run:
        assert run.library is not None and run.library_id == resources.library_id(resources.default_library())
        assert run.library_id_for("amr") == run.library_id and run.library_id_for("direct") is None
        amr, direct = run.program("amr"), run.program("direct")
        assert amr.module._library.value is run.library and amr.sha256 is None
        assert direct.module is not None and direct.artifact is None
    with open_resources(None, workers=1, variants=["amr"], no_library=True) as run:
        assert run.library is None and run.library_id_for("amr") is None
    with open_resources(None, workers=1, variants=["direct"]) as run:
        assert run.library is None  # no variant retrieves: nothing is opened


def test_a_program_loads_its_artifact_once_with_its_digest(tmp_path: Path) -> None:
    artifact = resources.default_program("direct")
    assert artifact is not None
    loaded = load_program("direct", artifact)
    assert loaded.artifact == artifact and loaded.sha256 is not None and len(loaded.sha256) == 64
    with pytest.raises(ConfigError, match="no such file"):
        load_program("direct", tmp_path / "missing.json")


def test_compile_runs_on_a_real_remote_teacher_and_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_mbpp_subset(monkeypatch, tmp_path, [2, 3, 4, 6, 7, 8, 554, 555])
    out = tmp_path / "direct-bootstrap.json"
    with FakeOpenAI() as server:
        result = CliRunner().invoke(app, ["compile", "--variant", "direct", "--recipe", "bootstrap",
                                          "--set", "num_candidate_programs=1", "--set", "valset=dev",
                                          *_remote(server), "--no-cache", "--out", str(out)],
                                    terminal_width=160)  # fmt: skip
        asked = len(server.requests)
    assert result.exit_code == 0, result.output
    manifest = json.loads(out.with_name("direct-bootstrap.manifest.json").read_text())
    assert manifest["teacher"]["name"] == "openai/fake-teacher" and manifest["data"]["dev"]["n_tasks"] == 2
    # the toy answers fail MBPP's hidden tests in the real sandbox, so nothing passes and no demo is kept
    assert manifest["dev_before"]["pass_rate"] == manifest["dev_after"]["pass_rate"] == 0.0
    assert manifest["usage"]["total"]["uncached_lm_calls"] == asked > 0
    assert load_program("direct", out).module.respond.demos == []
