"""Compile end to end with a scripted teacher on tiny made-up tasks: artifacts, manifests, reloads, checkpoints."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dspy
import pytest
from typer.testing import CliRunner

import amr_dspy.cli.compile as compile_cli
import amr_dspy.run
from amr_dspy.cli import app
from amr_dspy.errors import ArtifactError, ConfigError, DataError
from amr_dspy.metric import ExecutionMetric, task_to_example
from amr_dspy.programs import AMRConfig, build_program
from amr_dspy.tasks import Task
from optimize.artifact import TeacherInfo, load_artifact, manifest_path
from optimize.compile import CompileEvent, CompileResult, check_split_specs, check_splits, compile_program
from optimize.recipes import load_recipe
from tests.compile_helpers import COMPLETION_TOKENS, PROMPT_TOKENS, ScriptedTeacher, fake_task

TRAIN = [fake_task(k) for k in (2, 4, 6, 1, 3, 5, 13, 15)]  # the teacher solves the even ones zero-shot
DEV = [fake_task(k, "dev") for k in (7, 12, 9, 11)]  # the scripted teacher gets only 12 right zero-shot
TEACHER = TeacherInfo(name="scripted", slug="scripted")


@pytest.fixture(scope="module")
def metric() -> Iterator[ExecutionMetric]:
    with ExecutionMetric(workers=1) as m:
        yield m


def run_compile(
    out: Path,
    metric: ExecutionMetric,
    recipe: str,
    variant: str = "direct",
    teacher: ScriptedTeacher | None = None,
    events: list[CompileEvent] | None = None,
    fresh: bool = False,
    **overrides: Any,
) -> CompileResult:
    with dspy.context(lm=teacher or ScriptedTeacher(), adapter=dspy.ChatAdapter()):
        return compile_program(variant, load_recipe(recipe, {"threads": 2, **overrides}), TRAIN, DEV, out,
                               metric=metric, teacher=TEACHER, train_spec="fake:train", dev_spec="fake:dev",
                               fresh=fresh, on_event=events.append if events is not None else None)  # fmt: skip


def predictions(program: dspy.Module, tasks: list[Task]) -> list[str]:
    with dspy.context(lm=ScriptedTeacher(), adapter=dspy.ChatAdapter()):
        return [program(**task_to_example(t).inputs()).response for t in tasks]


def test_bootstrap_compile_writes_artifact_and_manifest_and_reloads_identically(
    tmp_path: Path, metric: ExecutionMetric
) -> None:
    teacher, out = ScriptedTeacher(), tmp_path / "scripted" / "direct-bootstrap.json"
    result = run_compile(out, metric, "bootstrap", teacher=teacher, valset="dev", num_candidate_programs=2)

    manifest = json.loads(manifest_path(out).read_text())
    assert result.manifest_path == out.with_name("direct-bootstrap.manifest.json") and out.is_file()
    assert (manifest["variant"], manifest["recipe"], manifest["optimizer"]) == ("direct", "bootstrap", "bootstrap")
    assert manifest["recipe_config"]["num_candidate_programs"] == 2 and manifest["teacher"]["name"] == "scripted"
    assert manifest["dspy_version"] == dspy.__version__ and manifest["program_config"] is None
    assert manifest["dev_before"] == {"n": 4, "score": 0.25, "pass_rate": 0.25}
    assert manifest["dev_after"] == {"n": 4, "score": 1.0, "pass_rate": 1.0}
    assert {k: v["n_tasks"] for k, v in manifest["data"].items()} == {"train": 8, "val": 4, "dev": 4}
    assert manifest["valset"] == "dev"
    assert manifest["data"]["val"]["fingerprint"] == manifest["data"]["dev"]["fingerprint"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert manifest["git_commit"] == head.stdout.strip()

    total = result.manifest.usage["total"]
    assert total.lm_calls == len(teacher.prompts) == total.uncached_lm_calls > 0
    assert (total.prompt_tokens, total.completion_tokens) == (PROMPT_TOKENS * total.lm_calls,
                                                              COMPLETION_TOKENS * total.lm_calls)  # fmt: skip
    assert (total.paid_prompt_tokens, total.paid_completion_tokens) == (total.prompt_tokens, total.completion_tokens)
    assert result.manifest.usage["baseline"].lm_calls == result.manifest.usage["final"].lm_calls == len(DEV)
    metric_log = (out.parent / "direct-bootstrap.json.checkpoint" / "metric_log.jsonl").read_text().splitlines()
    assert total.metric_calls == len(metric_log) and {json.loads(r)["phase"] for r in metric_log} == {
        "baseline", "optimize", "final"}  # fmt: skip

    assert [(p.name, p.n_demos) for p in result.before] == [("respond", 0)]
    assert result.after[0].n_demos == 3  # bootstrapped from the training tasks the teacher solved
    text = out.read_text()
    assert '"task"' not in text and "entry_point" not in text and "base_0" not in text
    train_ids = {t.instruction for t in TRAIN}
    assert all(d["instruction"] in train_ids for d in json.loads(text)["respond"]["demos"])

    reloaded = load_artifact(out, "direct")
    assert predictions(reloaded, DEV + TRAIN) == predictions(result.program, DEV + TRAIN)
    assert predictions(reloaded, DEV) != predictions(build_program("direct"), DEV)


def test_a_rerun_resumes_phases_and_bootstrap_candidates_from_the_checkpoint(
    tmp_path: Path, metric: ExecutionMetric
) -> None:
    out = tmp_path / "direct-bootstrap.json"
    first = run_compile(out, metric, "bootstrap", num_candidate_programs=1)
    artifact = out.read_bytes()

    teacher = ScriptedTeacher()
    again = run_compile(out, metric, "bootstrap", teacher=teacher, num_candidate_programs=1)
    assert again.resumed == ["baseline", "optimize"] and len(teacher.prompts) == len(DEV)  # only the final score
    assert again.manifest.usage["optimize"] == first.manifest.usage["optimize"] and out.read_bytes() == artifact

    checkpoint = out.with_name("direct-bootstrap.json.checkpoint")
    state = json.loads((checkpoint / "state.json").read_text())
    (checkpoint / "state.json").write_text(json.dumps({**state, "optimize": None}))  # as if killed after candidates
    (checkpoint / "best.json").unlink()
    teacher, events = ScriptedTeacher(), []
    third = run_compile(out, metric, "bootstrap", teacher=teacher, events=events, num_candidate_programs=1)
    candidates = [e.message for e in events if e.kind == "candidate"]
    assert len(candidates) == 3 and all("from checkpoint" in m for m in candidates)
    assert third.manifest.usage["optimize"].lm_calls == 0 and out.read_bytes() == artifact

    with pytest.raises(ConfigError, match=r"checkpoint of a different compile .*rerun with --fresh"):
        run_compile(out, metric, "bootstrap", num_candidate_programs=2)
    fresh = run_compile(out, metric, "bootstrap", num_candidate_programs=2, fresh=True)
    assert fresh.resumed == [] and fresh.manifest.recipe_config["num_candidate_programs"] == 2


def test_labeled_demos_lose_their_task_in_every_saved_program(tmp_path: Path, metric: ExecutionMetric) -> None:
    out = tmp_path / "direct-bootstrap.json"
    run_compile(out, metric, "bootstrap", max_labeled_demos=2, num_candidate_programs=1)
    checkpoint = out.with_name("direct-bootstrap.json.checkpoint")
    labeled = json.loads((checkpoint / "bootstrap" / "candidate_-2.json").read_text())["respond"]["demos"]
    assert labeled and all(set(d) == {"instruction"} for d in labeled)
    for saved in [out, *checkpoint.rglob("*.json")]:
        assert '"task"' not in saved.read_text() and "entry_point" not in saved.read_text(), saved


def test_hidden_tests_reach_neither_prompts_nor_optimizer_logs(tmp_path: Path, metric: ExecutionMetric) -> None:
    out, teacher = tmp_path / "direct-mipro.json", ScriptedTeacher()
    run_compile(out, metric, "mipro", teacher=teacher, auto="off", num_candidates=2, num_trials=3, minibatch=False,
                max_labeled_demos=2, valset="dev")  # fmt: skip
    prompts = "\n".join(m["content"] for prompt in teacher.prompts for m in prompt)
    assert "Task('fake/1')" in prompts  # MIPRO's dataset summary printed the training examples...
    assert "time_limit_s" not in prompts and "expected" not in prompts  # ...but not their hidden tests
    logs = list((out.with_name(f"{out.name}.checkpoint") / "mipro").rglob("*.json"))
    assert logs and not any("time_limit_s" in log.read_text() for log in logs)


def test_gepa_rewrites_instructions_from_feedback_and_keeps_native_state(
    tmp_path: Path, metric: ExecutionMetric
) -> None:
    out, teacher = tmp_path / "direct-gepa.json", ScriptedTeacher()
    result = run_compile(out, metric, "gepa", teacher=teacher, auto="off", max_metric_calls=24,
                         reflection_minibatch_size=2)  # fmt: skip
    assert result.manifest.usage["total"].lm_calls == len(teacher.prompts)  # reflection and worker threads counted
    assert result.manifest.dev_after.pass_rate == 1.0 > result.manifest.dev_before.pass_rate
    assert result.after[0].instructions != result.before[0].instructions and result.after[0].n_demos == 0
    assert result.manifest.valset.startswith("train (held-out 2 of 8")
    assert result.manifest.data["val"].spec == "fake:train (held out)" and result.manifest.data["train"].n_tasks == 6
    assert (out.with_name("direct-gepa.json.checkpoint") / "gepa" / "gepa_state.bin").is_file()
    assert load_artifact(out, "direct").respond.signature.instructions == result.after[0].instructions

    checkpoint = out.with_name("direct-gepa.json.checkpoint")  # as if killed in GEPA's last step
    state = json.loads((checkpoint / "state.json").read_text())
    (checkpoint / "state.json").write_text(json.dumps({**state, "optimize": None}))
    (checkpoint / "best.json").unlink()
    again = run_compile(out, metric, "gepa", auto="off", max_metric_calls=24, reflection_minibatch_size=2)
    assert again.manifest.usage["optimize"].lm_calls < result.manifest.usage["optimize"].lm_calls / 2
    assert again.after[0].instructions == result.after[0].instructions


@pytest.mark.parametrize(
    ("recipe", "overrides", "native"),
    [
        ("mipro", {"auto": "off", "num_candidates": 2, "num_trials": 3, "minibatch": False, "valset": "dev"},
         "mipro/evaluated_programs"),
        ("simba", {"bsize": 4, "num_candidates": 2, "max_steps": 2}, None),
    ],
)  # fmt: skip
def test_mipro_and_simba_compile_to_loadable_artifacts(
    tmp_path: Path, metric: ExecutionMetric, recipe: str, overrides: dict[str, Any], native: str | None
) -> None:
    out = tmp_path / f"direct-{recipe}.json"
    result = run_compile(out, metric, recipe, **overrides)
    assert result.manifest.optimizer == recipe
    assert result.manifest.dev_after.pass_rate == 1.0 > result.manifest.dev_before.pass_rate
    assert result.manifest.usage["optimize"].lm_calls > 0 and result.manifest.usage["optimize"].metric_calls > 0
    loaded = load_artifact(out, "direct")
    assert predictions(loaded, DEV) == predictions(result.program, DEV)
    if native:
        assert any((out.with_name(f"{out.name}.checkpoint") / native).iterdir())


def test_amr_variant_records_its_config_and_refuses_another_variant(tmp_path: Path, metric: ExecutionMetric) -> None:
    out = tmp_path / "amr-bootstrap.json"
    result = run_compile(out, metric, "bootstrap", variant="amr", num_candidate_programs=1, valset="dev")
    assert result.manifest.program_config == AMRConfig().model_dump()
    assert set(result.manifest.signatures) == {"respond", "decompose", "generate", "evolve", "write_tests"}
    loaded = load_artifact(out, "amr")
    assert loaded.respond.demos == [dict(d.items()) for d in result.program.respond.demos] != []
    assert predictions(loaded, DEV) == predictions(result.program, DEV)
    with pytest.raises(ArtifactError, match="compiled for variant 'amr', not 'amr-paper'"):
        load_artifact(out, "amr-paper")


def test_held_out_and_overlapping_data_are_refused(tmp_path: Path, metric: ExecutionMetric) -> None:
    for train, dev, message in [
        ("humaneval+", "mbpp+:dev", "--train humaneval+: HumanEval+ is held out"),
        ("mbpp+:train", "humaneval+", "--dev humaneval+: HumanEval+ is held out"),
        ("mbpp+:test", "mbpp+:dev", "--train mbpp+:test: includes the held-out MBPP+ test split"),
        ("mbpp+", "mbpp+:dev", "--train mbpp+: includes the held-out MBPP+ test split"),
        ("mbpp+:train", "mbpp+:test", "--dev mbpp+:test: includes the held-out MBPP+ test split"),
        ("mbpp+:dev", "data.jsonl", "--train mbpp+:dev: demos must come from the train split"),
        ("mbpp+:train", "mbpp+:train", "--train and --dev are both mbpp+:train"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
            check_split_specs(train, dev)
    check_split_specs("mbpp+:train", "mbpp+:dev")

    heldout = fake_task(20).model_copy(update={"source": "humaneval+", "dataset": "humaneval", "split": "test"})
    with pytest.raises(ConfigError, match="--train: task fake/20 is from HumanEval\\+"):
        check_splits([heldout], DEV)
    with pytest.raises(ConfigError, match="--dev: task fake/21 is from a held-out test split"):
        check_splits(TRAIN, [fake_task(21, "test")])
    with pytest.raises(ConfigError, match="--train: task fake/22 is from the dev split"):
        check_splits([fake_task(22, "dev")], DEV)
    with pytest.raises(ConfigError, match=r"--train and --dev share 1 task\(s\), e.g. fake/7"):
        check_splits([*TRAIN, fake_task(7)], DEV)
    with pytest.raises(DataError, match="task fake/23 \\(fake\\) has no hidden tests"):
        check_splits([fake_task(23).model_copy(update={"tests": []})], DEV)

    teacher = ScriptedTeacher()
    with dspy.context(lm=teacher), pytest.raises(ConfigError):
        compile_program("direct", load_recipe("bootstrap"), [fake_task(24, "test")], DEV, tmp_path / "x.json",
                        metric=metric, teacher=TEACHER)  # fmt: skip
    assert teacher.prompts == [] and not (tmp_path / "x.json.checkpoint").exists()


def test_budgets_that_do_not_fit_the_data_are_config_errors(tmp_path: Path, metric: ExecutionMetric) -> None:
    with pytest.raises(ConfigError, match=r"recipe simba: bsize 16 exceeds --train \(8 tasks\)"):
        run_compile(tmp_path / "a.json", metric, "simba")
    with pytest.raises(ConfigError, match=r"recipe mipro: minibatch_size 25 exceeds the valset \(2 examples\)"):
        run_compile(tmp_path / "b.json", metric, "mipro", auto="off", num_candidates=2, num_trials=2)
    too_few = r"recipe bootstrap: --train has 1 task\(s\), too few to hold out a valset"
    with pytest.raises(ConfigError, match=too_few), dspy.context(lm=ScriptedTeacher()):
        compile_program("direct", load_recipe("bootstrap"), TRAIN[:1], DEV, tmp_path / "c.json", metric=metric,
                        teacher=TEACHER)  # fmt: skip


def test_compile_command_prints_the_summary_and_writes_the_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextmanager
    def scripted_session(spec: object) -> Iterator[dspy.LM]:
        lm = ScriptedTeacher()
        with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
            yield lm

    monkeypatch.setattr(amr_dspy.run, "teacher_session", scripted_session)
    splits = {"mbpp+:train": TRAIN, "mbpp+:dev": DEV}
    monkeypatch.setattr(compile_cli, "load_tasks", lambda spec, limit=None: splits[spec][:limit])
    out = tmp_path / "direct-bootstrap.json"
    args = ["compile", "--variant", "direct", "--recipe", "bootstrap", "--set", "num_candidate_programs=1",
            "--set", "valset=dev", "--threads", "2", "--workers", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args, terminal_width=160)
    assert result.exit_code == 0, result.output
    for text in ("compile summary", "dev before", "0.250", "dev after", "1.000", "predictors before → after",
                 "respond", "0 → 3", "unchanged", f"wrote {out}"):  # fmt: skip
        assert text in result.output, text
    assert load_artifact(out, "direct").respond.demos

    refused = CliRunner().invoke(app, ["compile", "--train", "humaneval+", "--out", str(tmp_path / "h.json")])
    assert isinstance(refused.exception, ConfigError) and "HumanEval+ is held out" in str(refused.exception)


def test_direct_plain_has_nothing_to_compile(tmp_path: Path, metric: ExecutionMetric,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = tmp_path / "direct-plain.json"
    with pytest.raises(ConfigError, match=r"^direct-plain has no predictors to compile$"):
        compile_program("direct-plain", load_recipe("bootstrap"), TRAIN, DEV, out, metric=metric, teacher=TEACHER)

    def no_teacher(spec: object) -> None:
        raise AssertionError("the refusal must come before any teacher starts")

    monkeypatch.setattr(amr_dspy.run, "teacher_session", no_teacher)
    refused = CliRunner().invoke(app, ["compile", "--variant", "direct-plain", "--out", str(out)])
    assert isinstance(refused.exception, ConfigError), refused.output
    assert str(refused.exception) == "direct-plain has no predictors to compile"
    assert not out.exists() and not out.with_name(f"{out.name}.checkpoint").exists()
